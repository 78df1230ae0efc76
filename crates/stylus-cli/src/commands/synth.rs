//! `stylus catalog synth`: a synthetic card JSONL of any size derived from a real catalog, for scale
//! tests and benchmarks (e.g. the worker's 75K-adapter latency bench, the 1M-card scale bench). The
//! source is read and filtered by the default policy once; then cards are generated and written one
//! at a time (`stylus_core::synth`), so memory stays that of the source whatever N is. The output is
//! the project's card JSONL, which `stylus index build --catalog` reads.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use stylus_core::{ingest, synth::Synth, Policy};

#[derive(clap::Args)]
pub struct Args {
    /// Source catalog (any format `index build` reads, e.g. the compact Civitai JSONL).
    #[arg(long)]
    from: PathBuf,
    /// Cards to generate.
    #[arg(long)]
    n: u64,
    /// Seed: the same source, seed and N give the same file.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Output card JSONL ("-" for stdout).
    #[arg(long)]
    out: PathBuf,
    /// Derive from every readable source card, not only those the default policy keeps (the output
    /// then holds cards that `index build` filters out again).
    #[arg(long)]
    no_policy: bool,
}

pub fn run(a: Args) -> anyhow::Result<()> {
    let t = Instant::now();
    let bytes = std::fs::read(&a.from).with_context(|| format!("reading {}", a.from.display()))?;
    let (cards, issues) = ingest::auto(&bytes);
    drop(bytes);
    eprintln!("{}: {} cards read, {} records skipped", a.from.display(), cards.len(), issues.len());
    let cards = if a.no_policy {
        cards
    } else {
        let (kept, report) = Policy::default().apply(cards)?;
        eprintln!("policy: {report}");
        kept
    };
    let synth = Synth::new(cards, a.seed)?;
    let sink: Box<dyn Write> = if a.out.as_os_str() == "-" {
        Box::new(std::io::stdout().lock())
    } else {
        if let Some(dir) = a.out.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        Box::new(File::create(&a.out).with_context(|| format!("creating {}", a.out.display()))?)
    };
    let mut w = BufWriter::with_capacity(1 << 20, sink);
    for card in synth.cards(a.n) {
        serde_json::to_writer(&mut w, &card)?;
        w.write_all(b"\n").with_context(|| format!("writing {}", a.out.display()))?;
    }
    w.flush().with_context(|| format!("writing {}", a.out.display()))?;
    eprintln!(
        "wrote {} synthetic cards from {} sources (seed {}) to {} in {:.1} s",
        a.n,
        synth.sources().len(),
        a.seed,
        a.out.display(),
        t.elapsed().as_secs_f64()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use stylus_core::{synth::ID_BASE, Card};

    fn line(id: u64, name: &str, tags: &str) -> String {
        format!(
            r#"{{"id": {id}, "name": "{name}", "type": "LORA", "nsfw": false, "tags": [{tags}], "example_prompts": ["x"], "latest_version": {{"baseModel": "SD 1.5", "trainedWords": ["{name}"]}}}}"#
        )
    }

    fn args(from: &std::path::Path, n: u64, out: PathBuf) -> Args {
        Args { from: from.to_path_buf(), n, seed: 4, out, no_policy: false }
    }

    #[test]
    fn writes_n_deterministic_cards_that_pass_the_policy() {
        let dir = std::env::temp_dir().join(format!("stylus-synth-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let src = dir.join("src.jsonl");
        let nsfw = r#"{"id": 9, "name": "x", "type": "LORA", "nsfw": true, "tags": [], "example_prompts": ["x"], "latest_version": {"baseModel": "SD 1.5"}}"#;
        let lines = [line(1, "Watercolor Style", r#""style", "watercolor""#), line(2, "Misty Forest", r#""background", "forest""#), nsfw.to_string()];
        std::fs::write(&src, lines.join("\n")).unwrap();
        let (a, b) = (dir.join("a/out.jsonl"), dir.join("b.jsonl"));
        run(args(&src, 200, a.clone())).unwrap();
        run(args(&src, 200, b.clone())).unwrap();
        let text = std::fs::read_to_string(&a).unwrap();
        assert_eq!(text, std::fs::read_to_string(&b).unwrap(), "same seed, same file");
        let cards: Vec<Card> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(cards.len(), 200);
        assert!(cards.iter().enumerate().all(|(i, c)| c.id == ID_BASE + i as u64 && !c.nsfw && Policy::default().rejects(c).is_none()));
        run(args(&src, 0, b.clone())).unwrap();
        assert_eq!(std::fs::read_to_string(&b).unwrap(), "");
        assert!(run(args(&dir.join("missing.jsonl"), 1, b)).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
