//! `stylus tokenize`: SD1.5 CLIP token ids for a prompt.

use std::path::PathBuf;

use anyhow::Context;
use stylus_sd::ClipTokenizer;

/// The CLIP BPE tokenizer (vocabulary MIT, from OpenAI CLIP via open_clip), built by
/// `tests/reference/make_fixtures.py`; embedded so the CLI works without any download.
pub const EMBEDDED_TOKENIZER: &[u8] = include_bytes!("../../../../tests/fixtures/tokenizer/tokenizer.json");

#[derive(clap::Args)]
pub struct Args {
    /// The prompt.
    prompt: String,
    /// A tokenizer.json to use instead of the embedded SD1.5 one.
    #[arg(long)]
    tokenizer: Option<PathBuf>,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

pub fn run(a: Args) -> anyhow::Result<()> {
    let bytes = match &a.tokenizer {
        Some(p) => std::fs::read(p).with_context(|| format!("reading {}", p.display()))?,
        None => EMBEDDED_TOKENIZER.to_vec(),
    };
    let tok = ClipTokenizer::from_json_bytes(&bytes)?;
    let w = tok.encode(&a.prompt)?;
    if a.json {
        let v = serde_json::json!({"ids": w.ids, "prompt_tokens": w.prompt_tokens, "truncated": w.truncated});
        println!("{v}");
    } else {
        println!("{} prompt tokens{}", w.prompt_tokens, if w.truncated > 0 { format!(", {} truncated (77-token window)", w.truncated) } else { String::new() });
        println!("{:?}", w.ids);
    }
    Ok(())
}
