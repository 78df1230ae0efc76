//! The worker's settings, read from its wrangler vars and secrets (runtime-free, tested natively):
//! where the index bundle comes from (static assets or an R2 bucket, the manifest's path) and the
//! optional LLM composer (endpoint, model, timeout; the API key is a secret). Also the checks on a
//! manifest's shard names before anything is fetched with them.
//!
//! | var | default | meaning |
//! |---|---|---|
//! | `INDEX_SOURCE` | `assets` | `assets` (the `ASSETS` binding) or `r2` (the `INDEX_BUCKET` binding) |
//! | `INDEX_MANIFEST` | `index/index.stylusix.json` | the manifest (`stylus index build`'s `OUT.json`): asset path or R2 key; its shards sit beside it |
//! | `LLM_BASE_URL` | unset | OpenAI-compatible base URL (e.g. `https://api.openai.com/v1`); set with `LLM_MODEL` to offer `composer: "llm"` |
//! | `LLM_MODEL` | unset | the model name the endpoint serves |
//! | `LLM_TIMEOUT_MS` | 10000 | the whole LLM request (connect, reply, body), clamped to 100..=60000 |
//! | `LLM_API_KEY` (secret) | unset | sent as `Authorization: Bearer …` when set |

use stylus_core::llm_refine::endpoint_url;

/// Binding name of the static assets (wrangler.toml `[assets]`).
pub const ASSETS_BINDING: &str = "ASSETS";
/// Binding name of the R2 bucket holding the index (wrangler.toml `[[r2_buckets]]`).
pub const BUCKET_BINDING: &str = "INDEX_BUCKET";
pub const DEFAULT_MANIFEST: &str = "index/index.stylusix.json";
pub const DEFAULT_LLM_TIMEOUT_MS: u32 = 10_000;
const LLM_TIMEOUT_RANGE: (u32, u32) = (100, 60_000);

/// Where the index bundle is read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Assets,
    R2,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Assets => "assets",
            Source::R2 => "r2",
        }
    }
}

/// The index source and the manifest's path (asset path without the leading `/`, or R2 key).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexConfig {
    pub source: Source,
    pub manifest: String,
}

impl IndexConfig {
    /// Reads `INDEX_SOURCE` and `INDEX_MANIFEST` through `var`; the error names the bad setting.
    pub fn from_vars(var: &dyn Fn(&str) -> Option<String>) -> Result<Self, String> {
        let source = match var("INDEX_SOURCE").as_deref().map(str::trim) {
            None | Some("") | Some("assets") => Source::Assets,
            Some("r2") => Source::R2,
            Some(other) => return Err(format!("INDEX_SOURCE is {other:?}; use \"assets\" or \"r2\"")),
        };
        let manifest = var("INDEX_MANIFEST").map(|m| m.trim().trim_start_matches('/').to_string()).filter(|m| !m.is_empty());
        let manifest = manifest.unwrap_or_else(|| DEFAULT_MANIFEST.to_string());
        if manifest.split('/').any(|p| p.is_empty() || p == "." || p == "..") {
            return Err(format!("INDEX_MANIFEST {manifest:?} is not a plain path"));
        }
        Ok(IndexConfig { source, manifest })
    }

    /// The path / key of a file the manifest lists (it sits beside the manifest). Shard names must
    /// be plain file names: a manifest can never point the worker elsewhere.
    pub fn shard_path(&self, shard: &str) -> Result<String, String> {
        let plain = !shard.is_empty() && shard != "." && shard != ".." && !shard.contains(['/', '\\', '?', '#', '%']) && !shard.chars().any(char::is_control);
        if !plain {
            return Err(format!("manifest names shard {shard:?}, which is not a plain file name"));
        }
        Ok(match self.manifest.rsplit_once('/') {
            Some((dir, _)) => format!("{dir}/{shard}"),
            None => shard.to_string(),
        })
    }
}

/// The optional LLM composer's endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LlmConfig {
    /// The chat-completions URL.
    pub url: String,
    pub model: String,
    pub api_key: Option<String>,
    pub timeout_ms: u32,
}

impl LlmConfig {
    /// `None` unless both `LLM_BASE_URL` (http or https) and `LLM_MODEL` are set.
    pub fn from_vars(var: &dyn Fn(&str) -> Option<String>) -> Option<Self> {
        let get = |k: &str| var(k).map(|v| v.trim().to_string()).filter(|v| !v.is_empty());
        let base = get("LLM_BASE_URL").filter(|b| b.starts_with("https://") || b.starts_with("http://"))?;
        let model = get("LLM_MODEL")?;
        let timeout_ms = get("LLM_TIMEOUT_MS").and_then(|t| t.parse::<u32>().ok()).unwrap_or(DEFAULT_LLM_TIMEOUT_MS);
        Some(LlmConfig { url: endpoint_url(&base), model, api_key: get("LLM_API_KEY"), timeout_ms: timeout_ms.clamp(LLM_TIMEOUT_RANGE.0, LLM_TIMEOUT_RANGE.1) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let owned: Vec<(String, String)> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        move |k: &str| owned.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone())
    }

    #[test]
    fn index_source_and_manifest() {
        let c = IndexConfig::from_vars(&vars(&[])).unwrap();
        assert_eq!((c.source, c.manifest.as_str()), (Source::Assets, DEFAULT_MANIFEST));
        assert_eq!(c.shard_path("index.stylusix.0").unwrap(), "index/index.stylusix.0");
        let c = IndexConfig::from_vars(&vars(&[("INDEX_SOURCE", "r2"), ("INDEX_MANIFEST", "/v2/my.index.json")])).unwrap();
        assert_eq!((c.source, c.manifest.as_str()), (Source::R2, "v2/my.index.json"));
        assert_eq!(c.shard_path("my.index").unwrap(), "v2/my.index");
        let top = IndexConfig::from_vars(&vars(&[("INDEX_MANIFEST", "x.json")])).unwrap();
        assert_eq!(top.shard_path("x").unwrap(), "x");
        assert!(IndexConfig::from_vars(&vars(&[("INDEX_SOURCE", "kv")])).unwrap_err().contains("INDEX_SOURCE"));
        for bad in ["a/../b.json", "a//b.json", "./a.json"] {
            assert!(IndexConfig::from_vars(&vars(&[("INDEX_MANIFEST", bad)])).is_err(), "{bad}");
        }
        for bad in ["", "..", "../secret", "a/b", "a\\b", "x?y", "%2e%2e", "a\nb"] {
            assert!(c.shard_path(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn llm_only_when_configured() {
        assert_eq!(LlmConfig::from_vars(&vars(&[])), None);
        assert_eq!(LlmConfig::from_vars(&vars(&[("LLM_BASE_URL", "http://127.0.0.1:9/v1")])), None, "no model");
        assert_eq!(LlmConfig::from_vars(&vars(&[("LLM_BASE_URL", "ftp://x"), ("LLM_MODEL", "m")])), None, "not http");
        let c = LlmConfig::from_vars(&vars(&[("LLM_BASE_URL", " http://127.0.0.1:9/v1/ "), ("LLM_MODEL", "m"), ("LLM_API_KEY", "k")])).unwrap();
        assert_eq!(c, LlmConfig { url: "http://127.0.0.1:9/v1/chat/completions".into(), model: "m".into(), api_key: Some("k".into()), timeout_ms: 10_000 });
        let t = |v: &str| LlmConfig::from_vars(&vars(&[("LLM_BASE_URL", "https://x/v1"), ("LLM_MODEL", "m"), ("LLM_TIMEOUT_MS", v)])).unwrap().timeout_ms;
        assert_eq!((t("5"), t("2500"), t("999999"), t("soon")), (100, 2500, 60_000, 10_000));
    }
}
