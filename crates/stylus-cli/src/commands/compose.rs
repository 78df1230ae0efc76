//! `stylus compose`: which adapters, masks and weights for a prompt (embedded demo index by default),
//! by the local composer or, with `--llm`, by an OpenAI-compatible chat endpoint (STYLUS_LLM_BASE_URL,
//! STYLUS_LLM_MODEL, optional STYLUS_LLM_API_KEY) choosing among the local retrieval's candidates; any
//! failure of the LLM path (HTTP error, timeout, invalid reply) prints the reason to stderr and uses
//! the local composer. Request, validation and response are `stylus_core::llm_compose`'s; this file
//! does the HTTP (helpers of `catalog.rs`) and the printing.

use std::path::PathBuf;

use anyhow::Context;
use stylus_core::{llm_compose, llm_refine, ComposeRequest, ComposeResponse, Index, MaskMode};

use crate::commands::catalog::{agent, send};

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
    /// Let an OpenAI-compatible chat endpoint choose topics and adapters among the retrieved candidates:
    /// STYLUS_LLM_BASE_URL (e.g. https://api.openai.com/v1), STYLUS_LLM_MODEL and, when it needs one,
    /// STYLUS_LLM_API_KEY. On any failure (HTTP error, timeout, invalid reply) the local composer answers
    /// and the reason is printed to stderr.
    #[arg(long)]
    llm: bool,
    /// Timeout of the LLM request (connect, reply and body), ms.
    #[arg(long, default_value_t = 60_000, requires = "llm")]
    llm_timeout_ms: u64,
}

/// Validation drops printed one by one (the rest are counted).
const SHOW_DROPPED: usize = 20;

/// The endpoint of `--llm`: (chat-completions URL, model, API key).
fn endpoint() -> anyhow::Result<(String, String, Option<String>)> {
    let env = |name: &str| std::env::var(name).ok().map(|v| v.trim().to_string()).filter(|v| !v.is_empty());
    let base = env("STYLUS_LLM_BASE_URL").context("--llm needs STYLUS_LLM_BASE_URL (an OpenAI-compatible base URL, e.g. https://api.openai.com/v1)")?;
    let model = env("STYLUS_LLM_MODEL").context("--llm needs STYLUS_LLM_MODEL (the model name the endpoint serves)")?;
    Ok((llm_refine::endpoint_url(&base), model, env("STYLUS_LLM_API_KEY")))
}

/// Asks the endpoint to compose `req`: the response, or why not.
fn compose_llm(index: &Index, req: &ComposeRequest, (url, model, key): &(String, String, Option<String>), timeout_ms: u64) -> Result<ComposeResponse, String> {
    let cands = llm_compose::candidates(index, req).map_err(|e| e.to_string())?;
    let mut http = agent(timeout_ms).post(url).set("Accept", "application/json");
    if let Some(k) = key {
        http = http.set("Authorization", &format!("Bearer {k}"));
    }
    let body = send(http, Some(&llm_compose::request_body(model, req, &cands))).map_err(|f| f.to_string())?;
    let composition = llm_compose::parse_reply(&body, req, &cands).map_err(|e| e.to_string())?;
    let dropped = composition.dropped();
    for d in dropped.iter().take(SHOW_DROPPED) {
        eprintln!("llm composer: dropped {d}");
    }
    if dropped.len() > SHOW_DROPPED {
        eprintln!("llm composer: dropped {} more", dropped.len() - SHOW_DROPPED);
    }
    llm_compose::compose(index, req, &composition).map_err(|e| e.to_string())
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
    req.validate()?;
    let llm = if a.llm { Some(endpoint()?) } else { None };
    let t = std::time::Instant::now();
    let (res, by) = match &llm {
        Some(ep) => match compose_llm(&index, &req, ep, a.llm_timeout_ms) {
            Ok(res) => (res, format!(" by the LLM composer ({})", ep.1)),
            Err(why) => {
                eprintln!("llm composer ({}): {why}; used the local composer", ep.1);
                (index.compose(&req)?, " by the local composer (LLM fallback)".to_string())
            }
        },
        None => (index.compose(&req)?, String::new()),
    };
    let us = t.elapsed().as_micros();
    if a.json {
        let _ = std::io::Write::write_all(&mut std::io::stdout().lock(), serde_json::to_string_pretty(&res)?.as_bytes());
    } else {
        print_human(&res, index.len(), us, &by);
    }
    Ok(())
}

fn print_human(res: &ComposeResponse, n_cards: usize, us: u128, by: &str) {
    use std::fmt::Write as _;
    let mut o = String::new();
    let _ = writeln!(o, "composed over {n_cards} adapters in {:.2} ms{by}", us as f64 / 1000.0);
    for t in &res.topics {
        let _ = writeln!(o, "\ntopic \"{}\" (prompt bytes {}..{})", t.name, t.span[0], t.span[1]);
        if t.adapters.is_empty() {
            let _ = writeln!(o, "  (no adapter fits this topic)");
        }
        for c in &t.adapters {
            let _ = writeln!(o, "  {:>8}  {}  [{}]  score {:.2}  weight {:.2}", c.id, c.name, c.category.as_str(), c.score, c.weight);
            let why = if c.why.is_empty() { "no prompt term in its card".to_string() } else { format!("matched {}", c.why.join(", ")) };
            let _ = writeln!(o, "            why: {why}");
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
