//! `stylus embedder …`: tools around sentence embedders. `distill` runs all-MiniLM-L6-v2
//! (`stylus_minilm`) over `[CLS] t [SEP]` for every WordPiece token `t` and writes the un-normalised
//! mean-pooled outputs as one safetensors tensor `token_embeddings` `[vocab, 384]` — the
//! model2vec-style input of a static embedder. `static` turns that table into the static embedder the
//! index, the worker and the browser query with (`stylus_core::embed::StaticEmbedder`: PCA, token
//! weights counted over a catalog, int8).

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;

use super::embed::{bar, load_model, model_dir};

#[derive(clap::Subcommand)]
pub enum Cmd {
    /// Distill the token table of all-MiniLM-L6-v2 (`[CLS] t [SEP]` mean-pooled, every vocabulary id).
    Distill(DistillArgs),
    /// Build the static embedder from a distilled token table and a catalog (token weights).
    Static(StaticArgs),
}

#[derive(clap::Args)]
pub struct StaticArgs {
    /// Token table from `stylus embedder distill`.
    #[arg(long)]
    teacher: PathBuf,
    /// Model folder holding vocab.txt (default: $STYLUS_MINILM_DIR, else ~/.cache/stylus/minilm).
    #[arg(long)]
    model: Option<PathBuf>,
    /// Catalog files whose cards' texts weight the tokens (any format `index build` reads).
    #[arg(long = "catalog", required = true)]
    catalogs: Vec<PathBuf>,
    /// Output dimension (PCA).
    #[arg(long, default_value_t = 256)]
    dim: usize,
    /// Token weighting: idf, sif or uniform.
    #[arg(long, default_value = "idf")]
    weighting: String,
    /// Output file (the embedder table, `STYLUSEM` format).
    #[arg(long)]
    out: PathBuf,
}

#[derive(clap::Args)]
pub struct DistillArgs {
    /// Model folder with config.json, tokenizer.json and model.safetensors (default: $STYLUS_MINILM_DIR,
    /// else ~/.cache/stylus/minilm).
    #[arg(long)]
    model: Option<PathBuf>,
    /// Output .safetensors file.
    #[arg(long)]
    out: PathBuf,
    /// `cpu` (burn flex) or `wgpu` (the default GPU adapter).
    #[arg(long, default_value = "cpu")]
    device: String,
    /// Vocabulary ids per forward pass.
    #[arg(long, default_value_t = 256)]
    batch: usize,
    /// Only the first N vocabulary ids (quick checks; the tensor is then `[N, 384]`).
    #[arg(long)]
    limit: Option<usize>,
    /// No progress bar.
    #[arg(long)]
    quiet: bool,
}

pub fn run(cmd: Cmd) -> anyhow::Result<()> {
    match cmd {
        Cmd::Distill(a) => distill(a),
        Cmd::Static(a) => build_static(a),
    }
}

fn build_static(a: StaticArgs) -> anyhow::Result<()> {
    use stylus_core::embed::{card_text, DistillOptions, StaticEmbedder, Weighting};
    let weighting = match a.weighting.as_str() {
        "idf" => Weighting::Idf,
        "sif" => Weighting::Sif { a: 1e-3 },
        "uniform" => Weighting::Uniform,
        w => anyhow::bail!("--weighting {w:?}: expected idf, sif or uniform"),
    };
    let dir = model_dir(&a.model);
    let vocab_path = dir.join("vocab.txt");
    let vocab_text = std::fs::read_to_string(&vocab_path).with_context(|| format!("reading {}", vocab_path.display()))?;
    let vocab: Vec<String> = vocab_text.lines().map(|l| l.trim_end_matches('\r').to_string()).collect();
    let tbytes = std::fs::read(&a.teacher).with_context(|| format!("reading {}", a.teacher.display()))?;
    let st = safetensors::SafeTensors::deserialize(&tbytes).with_context(|| format!("{}: not a safetensors file", a.teacher.display()))?;
    let t = st.tensor("token_embeddings").with_context(|| format!("{}: no tensor token_embeddings", a.teacher.display()))?;
    anyhow::ensure!(t.dtype() == safetensors::Dtype::F32 && t.shape().len() == 2, "{}: token_embeddings must be f32 [vocab, dim]", a.teacher.display());
    let (rows, tdim) = (t.shape()[0], t.shape()[1]);
    anyhow::ensure!(
        rows == vocab.len(),
        "{}: {rows} rows but {} has {} tokens (distill without --limit)",
        a.teacher.display(),
        vocab_path.display(),
        vocab.len()
    );
    let teacher = stylus_sd::checkpoint::to_f32(&t).with_context(|| format!("{}: token_embeddings", a.teacher.display()))?;
    let mut corpus = Vec::new();
    for path in &a.catalogs {
        let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        let (cards, issues) = stylus_core::ingest::auto(&bytes);
        eprintln!("{}: {} cards read, {} records skipped", path.display(), cards.len(), issues.len());
        corpus.extend(cards.iter().map(card_text));
    }
    let t0 = Instant::now();
    let e = StaticEmbedder::distill(vocab, &teacher, tdim, &corpus, DistillOptions { dim: a.dim, weighting })?;
    let bytes = e.to_bytes();
    std::fs::write(&a.out, &bytes).with_context(|| format!("writing {}", a.out.display()))?;
    println!(
        "{} ({} tokens × {}, sha256 {}) in {:.1} s → {} ({:.1} MB)",
        e.id(),
        e.tokenizer().len(),
        e.dim(),
        e.hash(),
        t0.elapsed().as_secs_f64(),
        a.out.display(),
        bytes.len() as f64 / 1e6
    );
    Ok(())
}

fn distill(a: DistillArgs) -> anyhow::Result<()> {
    let dir = model_dir(&a.model);
    let m = load_model(&dir, &a.device)?;
    let dim = m.dim();
    let vocab = a.limit.map_or(m.vocab().len(), |n| n.min(m.vocab().len()));
    let bar = bar(vocab, "tokens", a.quiet);
    let t0 = Instant::now();
    let table = m.token_rows(0..vocab, a.batch, &mut |done, _| bar.set_position(done as u64))?;
    let took = t0.elapsed();
    bar.finish_and_clear();
    let bytes = stylus_minilm::token_table_safetensors(&table, vocab, dim)?;
    let mut tmp = a.out.clone().into_os_string();
    tmp.push(".tmp");
    std::fs::write(&tmp, &bytes).with_context(|| format!("writing {}", a.out.display()))?;
    std::fs::rename(&tmp, &a.out).with_context(|| format!("writing {}", a.out.display()))?;
    println!("distilled {vocab} tokens × {dim} in {:.1} s on {} → {} ({:.1} MB)", took.as_secs_f64(), a.device, a.out.display(), bytes.len() as f64 / 1e6);
    Ok(())
}
