//! `stylus`: the thin native binary over the project's libraries; it does the file I/O and
//! prints results. Subcommands live in `commands/`.

mod commands;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "stylus", version, about = "Stylus: automatic LoRA adapter selection for Stable Diffusion 1.5")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Check an SD1.5 checkpoint (single .safetensors file or diffusers folder) and list its parts.
    Inspect(commands::inspect::Args),
    /// Compose adapters for a prompt: topics, chosen LoRAs, per-image masks and weights.
    Compose(commands::compose::Args),
    /// Fetch adapter catalogs from Civitai (REST v1, resumable).
    #[command(subcommand)]
    Catalog(commands::catalog::Cmd),
    /// Build or query an adapter index bundle.
    #[command(subcommand)]
    Index(commands::index::Cmd),
    /// Convert an SD1.5 checkpoint to a sharded f16/q8/f32 model folder (manifest + shards).
    Convert(commands::convert::Args),
    /// Generate images with an SD1.5 checkpoint on the CPU (PNG output).
    Generate(commands::generate::Args),
    /// Inspect LoRA adapter files.
    #[command(subcommand)]
    Lora(commands::lora::Cmd),
    /// Tokenize a prompt with SD1.5's CLIP tokenizer (77-token window, truncation reported).
    Tokenize(commands::tokenize::Args),
    /// Sentence embeddings with all-MiniLM-L6-v2 (burn port of sentence-transformers).
    Embed(commands::embed::Args),
    /// Sentence-embedder tools: distill the all-MiniLM-L6-v2 token table.
    #[command(subcommand)]
    Embedder(commands::embedder::Cmd),
}

/// Prints errors as one readable chain (no backtrace, even with RUST_BACKTRACE set) and exits 1.
fn main() -> std::process::ExitCode {
    // Like other Unix tools, end quietly when the reader of stdout goes away (`stylus … | head`)
    // instead of panicking on EPIPE: restore the default SIGPIPE action Rust's runtime ignores.
    #[cfg(unix)]
    // SAFETY: called first thing in main, before any thread exists; SIG_DFL is a valid action.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    match run(Cli::parse()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.cmd {
        Cmd::Catalog(c) => commands::catalog::run(c),
        Cmd::Compose(a) => commands::compose::run(a),
        Cmd::Convert(a) => commands::convert::run(a),
        Cmd::Embed(a) => commands::embed::run(a),
        Cmd::Embedder(c) => commands::embedder::run(c),
        Cmd::Generate(a) => commands::generate::run(a),
        Cmd::Index(c) => commands::index::run(c),
        Cmd::Inspect(a) => commands::inspect::run(a),
        Cmd::Lora(c) => commands::lora::run(c),
        Cmd::Tokenize(a) => commands::tokenize::run(a),
    }
}
