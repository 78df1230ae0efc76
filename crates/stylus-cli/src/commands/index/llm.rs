//! The optional LLM refiner pass of `stylus index build --llm-refiner`: each kept card is sent to an
//! OpenAI-compatible chat-completions endpoint (STYLUS_LLM_BASE_URL, STYLUS_LLM_MODEL, optional
//! STYLUS_LLM_API_KEY) and its description, weight and category are replaced by the validated reply;
//! replies are cached by card content hash. Any failure (HTTP error, timeout, invalid reply) keeps
//! the local refiner's card; the fallbacks are counted by reason and printed. Request bodies,
//! validation and the cache format are `stylus_core::llm_refine`'s; this file does the HTTP and files.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
use stylus_core::llm_refine::{self, LlmCache, LlmOutput};
use stylus_core::Card;

use crate::commands::catalog::{agent, send, write_atomic, HttpFailure};

/// Settings of the pass (from `index build`'s flags).
pub struct Settings {
    pub cache: Option<PathBuf>,
    pub timeout_ms: u64,
    /// Stop asking after this many failures in a row (0: never).
    pub max_failures: u32,
}

/// New replies are written to the cache file every this many (and at the end).
const SAVE_EVERY: usize = 20;
/// Fallbacks printed one by one (the rest are only counted).
const SHOW_FALLBACKS: usize = 20;

struct Endpoint {
    url: String,
    model: String,
    key: Option<String>,
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().map(|v| v.trim().to_string()).filter(|v| !v.is_empty())
}

fn endpoint() -> anyhow::Result<Endpoint> {
    let base = env("STYLUS_LLM_BASE_URL").context("--llm-refiner needs STYLUS_LLM_BASE_URL (an OpenAI-compatible base URL, e.g. https://api.openai.com/v1)")?;
    let model = env("STYLUS_LLM_MODEL").context("--llm-refiner needs STYLUS_LLM_MODEL (the model name the endpoint serves)")?;
    Ok(Endpoint { url: llm_refine::endpoint_url(&base), model, key: env("STYLUS_LLM_API_KEY") })
}

/// `$XDG_CACHE_HOME/stylus/llm-refiner-cache.json`, else `~/.cache/stylus/llm-refiner-cache.json`.
fn default_cache() -> Option<PathBuf> {
    let base = env("XDG_CACHE_HOME").map(PathBuf::from).or_else(|| env("HOME").map(|h| Path::new(&h).join(".cache")))?;
    Some(base.join("stylus").join("llm-refiner-cache.json"))
}

fn load_cache(path: &Path) -> anyhow::Result<LlmCache> {
    match std::fs::read(path) {
        Ok(bytes) => LlmCache::from_bytes(&bytes).with_context(|| format!("{}: delete it to start a new cache", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(LlmCache::default()),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

fn save_cache(path: &Path, cache: &LlmCache) -> anyhow::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    write_atomic(path, &cache.to_bytes())
}

/// Asks the endpoint about one card: the validated output, or (reason kind, details).
fn ask(agent: &ureq::Agent, ep: &Endpoint, card: &Card) -> Result<LlmOutput, (String, String)> {
    let mut req = agent.post(&ep.url).set("Accept", "application/json");
    if let Some(k) = &ep.key {
        req = req.set("Authorization", &format!("Bearer {k}"));
    }
    let body = send(req, Some(&llm_refine::request_body(&ep.model, card))).map_err(|f| {
        let kind = match &f {
            HttpFailure::Status { code, .. } => format!("HTTP {code}"),
            HttpFailure::Timeout(_) => "timeout".to_string(),
            HttpFailure::Transport(_) => "connection error".to_string(),
        };
        (kind, f.to_string())
    })?;
    llm_refine::parse_reply(&body).map_err(|e| ("invalid reply".to_string(), e.to_string()))
}

/// Refines `cards` in place (see the module doc). Fails only on configuration and cache-file errors.
pub fn refine_cards(cards: &mut [Card], s: &Settings) -> anyhow::Result<()> {
    let ep = endpoint()?;
    let cache_path = s.cache.clone().or_else(default_cache).context("no LLM cache path: pass --llm-cache (HOME is not set)")?;
    let mut cache = load_cache(&cache_path)?;
    let agent = agent(s.timeout_ms);
    let (mut refined, mut cached, mut unsaved, mut in_a_row) = (0usize, 0usize, 0usize, 0u32);
    let mut fallbacks: BTreeMap<String, usize> = BTreeMap::new();
    let bar = ProgressBar::new(cards.len() as u64);
    bar.set_style(ProgressStyle::with_template("llm refiner [{bar:30}] {pos}/{len} {elapsed_precise}").unwrap_or_else(|_| ProgressStyle::default_bar()));
    for card in cards.iter_mut() {
        bar.inc(1);
        let key = llm_refine::cache_key(&ep.model, card);
        if let Some(out) = cache.get(&key) {
            out.apply(card);
            cached += 1;
            continue;
        }
        let result = if s.max_failures > 0 && in_a_row >= s.max_failures {
            Err(("skipped".to_string(), format!("the endpoint failed {in_a_row} times in a row")))
        } else {
            ask(&agent, &ep, card)
        };
        match result {
            Ok(out) => {
                out.apply(card);
                cache.insert(key, out);
                (refined, unsaved, in_a_row) = (refined + 1, unsaved + 1, 0);
                if unsaved >= SAVE_EVERY {
                    save_cache(&cache_path, &cache)?;
                    unsaved = 0;
                }
            }
            Err((kind, detail)) => {
                if kind != "skipped" {
                    in_a_row += 1;
                }
                let n: usize = fallbacks.values().sum();
                if n < SHOW_FALLBACKS {
                    bar.suspend(|| eprintln!("llm refiner: card {} ({}): {detail}; kept the local refiner's card", card.id, card.name));
                }
                *fallbacks.entry(kind).or_default() += 1;
            }
        }
    }
    bar.finish_and_clear();
    if unsaved > 0 {
        save_cache(&cache_path, &cache)?;
    }
    let fell: usize = fallbacks.values().sum();
    let why = if fell == 0 { String::new() } else { format!(" ({})", fallbacks.iter().map(|(k, n)| format!("{k}: {n}")).collect::<Vec<_>>().join(", ")) };
    eprintln!(
        "llm refiner ({}): {} cards: {refined} refined, {cached} from cache, {fell} fell back to the local refiner{why}; cache {}",
        ep.model,
        cards.len(),
        cache_path.display()
    );
    Ok(())
}
