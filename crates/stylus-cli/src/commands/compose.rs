//! `stylus compose`: which adapters, masks and weights for a prompt (embedded demo index by default).

use std::path::PathBuf;

use stylus_core::{ComposeRequest, ComposeResponse, Index, MaskMode};

/// Demo index built from public Civitai catalog facts (see data/demo/ATTRIBUTION.md).
pub const DEMO_INDEX: &[u8] = include_bytes!("../../../../data/demo/index.stylusix");

#[derive(clap::Args)]
pub struct Args {
    /// The prompt.
    prompt: String,
    /// Index bundle (OUT, or its manifest OUT.json); default: the embedded demo index.
    #[arg(long)]
    index: Option<PathBuf>,
    #[arg(long, default_value = "")]
    negative: String,
    /// Images (one mask each).
    #[arg(long, default_value_t = 4)]
    images: u32,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Mask mode: one_hot_loras (reference default), all, one_hot_concepts.
    #[arg(long, default_value = "one_hot_loras")]
    mask_mode: String,
    /// Candidates retrieved before composing.
    #[arg(long, default_value_t = 150)]
    top_k: u32,
    /// Print the full JSON response (what the worker returns).
    #[arg(long)]
    json: bool,
}

pub fn run(a: Args) -> anyhow::Result<()> {
    let bytes = match &a.index {
        Some(p) => super::index::read_bundle(p)?,
        None => DEMO_INDEX.to_vec(),
    };
    let index = Index::from_bundle(&bytes)?;
    let mut req = ComposeRequest::new(a.prompt);
    req.negative_prompt = a.negative;
    req.num_images = a.images;
    req.seed = a.seed;
    req.options.top_k = a.top_k;
    req.options.mask_mode = serde_json::from_value::<MaskMode>(serde_json::Value::String(a.mask_mode.clone()))
        .map_err(|_| anyhow::anyhow!("unknown mask mode `{}` (one_hot_loras, all, one_hot_concepts)", a.mask_mode))?;
    let t = std::time::Instant::now();
    let res = index.compose(&req)?;
    let us = t.elapsed().as_micros();
    if a.json {
        let _ = std::io::Write::write_all(&mut std::io::stdout().lock(), serde_json::to_string_pretty(&res)?.as_bytes());
    } else {
        print_human(&res, index.len(), us);
    }
    Ok(())
}

fn print_human(res: &ComposeResponse, n_cards: usize, us: u128) {
    use std::fmt::Write as _;
    let mut o = String::new();
    let _ = writeln!(o, "composed over {n_cards} adapters in {:.2} ms", us as f64 / 1000.0);
    for t in &res.topics {
        let _ = writeln!(o, "\ntopic \"{}\" (prompt bytes {}..{})", t.name, t.span[0], t.span[1]);
        if t.adapters.is_empty() {
            let _ = writeln!(o, "  (no adapter fits this topic)");
        }
        for c in &t.adapters {
            let _ = writeln!(o, "  {:>8}  {}  [{}]  score {:.2}  weight {:.2}", c.id, c.name, c.category.as_str(), c.score, c.weight);
            let _ = writeln!(o, "            why: matched {}", c.why.join(", "));
            let sha = if c.sha256.is_empty() { "-" } else { &c.sha256 };
            let _ = writeln!(o, "            {}  sha256 {sha}", c.download_url);
        }
    }
    for (i, img) in res.images.iter().enumerate() {
        let _ = writeln!(o, "\nimage {i}: {}", img.a1111);
    }
    // A closed pipe (`| head`) is not an error worth a panic.
    let _ = std::io::Write::write_all(&mut std::io::stdout().lock(), o.as_bytes());
}
