//! Pure logic of the optional LLM refiner (`stylus index build --llm-refiner`): the request body in
//! the OpenAI chat-completions schema, the reply's parsing and validation, the cache key and the
//! cache file's (de)serialization. The HTTP call and the files are the binary's; any failure there
//! or here makes the binary keep the local refiner's card ([`crate::refine`]).
//!
//! # What the model sees
//! One user message holding [`LlmInput`] as JSON: the card's content fields as the local refiner left
//! them (name, tags, trigger words, base model, cleaned description) plus the local refiner's weight
//! and category as hints (the weight may come from example prompts the model does not see).
//!
//! # What the model answers ([`LlmOutput`], the local refiner's output schema)
//! ```json
//! {"description": "Soft watercolor look with visible paper texture.", "weight": 0.7, "category": "style"}
//! ```
//! * `description`: string, what the adapter adds to an image; cleaned like a card description
//!   (HTML, URLs, `<lora:…>` tags, install / donation sentences removed) and cut to
//!   [`crate::refine::MAX_DESCRIPTION_CHARS`] characters; empty means none.
//! * `weight`: finite number (a numeric string is accepted), clamped to [`WEIGHT_RANGE`].
//! * `category`: one of `style`, `character`, `clothing`, `background`, `concept`, `pose`, `object`,
//!   `other` (any case); anything else rejects the reply.
//!
//! The reply may wrap the object in a Markdown code fence or surrounding prose.
//!
//! # Cache
//! Accepted outputs are cached under [`cache_key`]: the sha256 of the prompt version, the model name
//! and the [`LlmInput`] JSON, so an unchanged card is never sent twice to the same model. The cache
//! file is `{"version": 1, "entries": {"<sha256 hex>": LlmOutput, …}}`.

use crate::card::{Card, Category, WEIGHT_RANGE};
use crate::refine::clean_description;
use crate::text::strip_network_tags;
use crate::Error;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

/// Version of the prompt and input schema; part of every cache key.
pub const PROMPT_VERSION: u32 = 1;
/// Version of the cache file this build reads and writes.
pub const CACHE_VERSION: u32 = 1;

/// The system message: the task and the reply schema.
pub const SYSTEM_PROMPT: &str = "You refine catalog cards of LoRA adapters for Stable Diffusion 1.5. \
The user sends one card as JSON (name, tags, trigger_words, base_model, description, and rule_weight / \
rule_category found by simple rules). Reply with one JSON object and nothing else: \
{\"description\": string, \"weight\": number, \"category\": string}. \
description: one to three plain sentences on what the adapter adds to an image (subject, style, look); \
no installation or usage instructions, links, prices or praise; empty string if the card says nothing useful. \
weight: the recommended LoRA weight between 0.1 and 1.5; keep rule_weight unless the card clearly states another. \
category: exactly one of style, character, clothing, background, concept, pose, object, other.";

/// The card content the model is shown (and that the cache key covers).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LlmInput<'a> {
    pub name: &'a str,
    pub tags: &'a [String],
    pub trigger_words: &'a [String],
    pub base_model: &'a str,
    pub description: &'a str,
    pub rule_weight: f32,
    pub rule_category: &'static str,
}

impl<'a> LlmInput<'a> {
    /// The input for a card as the local refiner produced it.
    pub fn of(card: &'a Card) -> Self {
        LlmInput {
            name: &card.name,
            tags: &card.tags,
            trigger_words: &card.trigger_words,
            base_model: &card.base_model,
            description: card.description.as_deref().unwrap_or(""),
            rule_weight: card.weight,
            rule_category: card.category.as_str(),
        }
    }

    fn to_json(&self) -> String {
        // Strings, string lists and a finite-or-not f32 (non-finite becomes null): always serializes.
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// The refiner's output for one card (same fields as the local refiner's).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LlmOutput {
    pub description: String,
    pub weight: f32,
    pub category: Category,
}

impl LlmOutput {
    /// Cleans and checks an output (description cleaned and capped, weight finite and clamped).
    pub fn validated(mut self) -> Result<Self, Error> {
        if !self.weight.is_finite() {
            return Err(Error::LlmReply(format!(
                "weight {} is not a finite number",
                self.weight
            )));
        }
        self.weight = self.weight.clamp(WEIGHT_RANGE.0, WEIGHT_RANGE.1);
        self.description = clean_description(&strip_network_tags(&self.description));
        Ok(self)
    }

    /// Puts this output into a card (an empty description clears it).
    pub fn apply(&self, card: &mut Card) {
        card.description = (!self.description.is_empty()).then(|| self.description.clone());
        card.weight = self.weight;
        card.category = self.category;
    }
}

/// The cache key of a card for a model: lowercase hex sha256 (see the module doc).
pub fn cache_key(model: &str, card: &Card) -> String {
    let mut h = Sha256::new();
    h.update(format!("stylus-llm-refiner/v{PROMPT_VERSION}\n{model}\n").as_bytes());
    h.update(LlmInput::of(card).to_json().as_bytes());
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// The chat-completions URL under an OpenAI-compatible base URL (`https://api.openai.com/v1`,
/// `http://127.0.0.1:11434/v1`, …); a base that already ends in `/chat/completions` is kept.
pub fn endpoint_url(base: &str) -> String {
    let base = base.trim().trim_end_matches('/');
    if base.ends_with("/chat/completions") {
        base.to_string()
    } else {
        format!("{base}/chat/completions")
    }
}

/// The request body (`POST …/chat/completions`) refining `card` with `model`.
pub fn request_body(model: &str, card: &Card) -> Vec<u8> {
    let body = json!({
        "model": model,
        "temperature": 0,
        "response_format": {"type": "json_object"},
        "messages": [
            {"role": "system", "content": SYSTEM_PROMPT},
            {"role": "user", "content": LlmInput::of(card).to_json()},
        ],
    });
    serde_json::to_vec(&body).unwrap_or_default()
}

/// Parses and validates a chat-completions response body (see the module doc for the schema).
pub fn parse_reply(bytes: &[u8]) -> Result<LlmOutput, Error> {
    let bad = |m: String| Error::LlmReply(m);
    let v: Value =
        serde_json::from_slice(bytes).map_err(|e| bad(format!("response is not JSON: {e}")))?;
    if let Some(err) = v.get("error").filter(|e| !e.is_null()) {
        let msg = err
            .get("message")
            .and_then(Value::as_str)
            .map_or_else(|| err.to_string(), str::to_string);
        return Err(bad(format!(
            "endpoint error: {}",
            crate::text::truncate_chars(&msg, 200)
        )));
    }
    let content = v
        .pointer("/choices/0/message/content")
        .and_then(Value::as_str)
        .ok_or_else(|| bad("no choices[0].message.content string".into()))?;
    let object =
        json_object_in(content).ok_or_else(|| bad("the reply holds no JSON object".into()))?;
    let o: Value = serde_json::from_str(object)
        .map_err(|e| bad(format!("the reply's JSON is invalid: {e}")))?;
    let description = match o.get("description") {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => return Err(bad("no `description` string".into())),
        Some(x) => return Err(bad(format!("`description` is not a string: {x}"))),
    };
    let weight = match o.get("weight") {
        Some(Value::Number(n)) => n.as_f64().unwrap_or(f64::NAN),
        Some(Value::String(s)) => s
            .trim()
            .parse::<f64>()
            .map_err(|_| bad(format!("weight {s:?} is not a number")))?,
        _ => return Err(bad("no numeric `weight`".into())),
    };
    let category = match o.get("category").and_then(Value::as_str) {
        Some(s) => {
            let s = s.trim().to_ascii_lowercase();
            Category::ALL
                .into_iter()
                .find(|c| c.as_str() == s)
                .ok_or_else(|| bad(format!("category {s:?} is not one of the known categories")))?
        }
        None => return Err(bad("no `category` string".into())),
    };
    LlmOutput {
        description,
        weight: weight as f32,
        category,
    }
    .validated()
}

/// The outermost `{ … }` of a model's text (code fences and prose around it ignored).
fn json_object_in(text: &str) -> Option<&str> {
    let start = text.find('{')?;
    let end = text.rfind('}')?;
    (end > start).then(|| &text[start..=end])
}

/// Accepted outputs by [`cache_key`] (see the module doc for the file format).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct LlmCache {
    pub entries: BTreeMap<String, LlmOutput>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct CacheFile {
    version: u32,
    entries: BTreeMap<String, LlmOutput>,
}

impl LlmCache {
    /// Reads a cache file; empty bytes are an empty cache. Fails on another version, a key that is
    /// not a sha256 hex digest or an invalid entry.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, Error> {
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(LlmCache::default());
        }
        let f: CacheFile = serde_json::from_slice(bytes)
            .map_err(|e| Error::LlmCache(format!("not a cache file: {e}")))?;
        if f.version != CACHE_VERSION {
            return Err(Error::LlmCache(format!(
                "cache version {} is not supported (this build reads {CACHE_VERSION})",
                f.version
            )));
        }
        let mut entries = BTreeMap::new();
        for (k, v) in f.entries {
            if k.len() != 64
                || !k
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
            {
                return Err(Error::LlmCache(format!(
                    "key {k:?} is not a sha256 hex digest"
                )));
            }
            let v = v
                .validated()
                .map_err(|e| Error::LlmCache(format!("entry {k}: {e}")))?;
            entries.insert(k, v);
        }
        Ok(LlmCache { entries })
    }

    /// The cache file (deterministic: keys sorted).
    pub fn to_bytes(&self) -> Vec<u8> {
        let f = CacheFile {
            version: CACHE_VERSION,
            entries: self.entries.clone(),
        };
        serde_json::to_vec_pretty(&f).unwrap_or_default()
    }

    pub fn get(&self, key: &str) -> Option<&LlmOutput> {
        self.entries.get(key)
    }

    pub fn insert(&mut self, key: String, out: LlmOutput) {
        self.entries.insert(key, out);
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn card() -> Card {
        let mut c = Card::new(5, "Watercolor Style");
        c.tags = vec!["style".into()];
        c.description = Some("Soft watercolor.".into());
        c.weight = 0.6;
        c.category = Category::Style;
        c
    }

    fn reply(content: &str) -> Vec<u8> {
        serde_json::to_vec(&json!({"choices": [{"index": 0, "message": {"role": "assistant", "content": content}}]})).unwrap()
    }

    #[test]
    fn request_body_schema() {
        let v: Value = serde_json::from_slice(&request_body("gpt-x", &card())).unwrap();
        assert_eq!(v["model"], "gpt-x");
        assert_eq!(v["messages"][0]["role"], "system");
        assert!(v["messages"][0]["content"]
            .as_str()
            .unwrap()
            .contains("JSON"));
        let user: Value =
            serde_json::from_str(v["messages"][1]["content"].as_str().unwrap()).unwrap();
        assert_eq!(
            user,
            json!({"name": "Watercolor Style", "tags": ["style"], "trigger_words": [], "base_model": "",
                                "description": "Soft watercolor.", "rule_weight": 0.6, "rule_category": "style"})
        );
        assert_eq!(
            endpoint_url("http://h:1/v1/"),
            "http://h:1/v1/chat/completions"
        );
        assert_eq!(
            endpoint_url("http://h/v1/chat/completions"),
            "http://h/v1/chat/completions"
        );
    }

    #[test]
    fn cache_keys_cover_content_and_model() {
        let c = card();
        let k = cache_key("m", &c);
        assert_eq!(k.len(), 64);
        assert_eq!(k, cache_key("m", &c.clone()));
        let mut other_id = c.clone();
        other_id.id = 99;
        other_id.stats.downloads = 7;
        assert_eq!(cache_key("m", &other_id), k, "id and stats are not content");
        assert_ne!(cache_key("m2", &c), k);
        let mut d = c.clone();
        d.description = Some("Hard watercolor.".into());
        assert_ne!(cache_key("m", &d), k);
        d = c.clone();
        d.tags.push("x".into());
        assert_ne!(cache_key("m", &d), k);
    }

    #[test]
    fn replies_are_validated() {
        let ok = parse_reply(&reply(r#"{"description": "Soft <b>washes</b> of colour. <lora:w:1> Download at https://x.y", "weight": 0.7, "category": "Style"}"#)).unwrap();
        assert_eq!(
            ok,
            LlmOutput {
                description: "Soft washes of colour.".into(),
                weight: 0.7,
                category: Category::Style
            }
        );
        let fenced = parse_reply(&reply("Sure!\n```json\n{\"description\": \"\", \"weight\": \"3\", \"category\": \"pose\"}\n```")).unwrap();
        assert_eq!(
            (fenced.weight, fenced.category, fenced.description.as_str()),
            (1.5, Category::Pose, "")
        );
        assert_eq!(
            parse_reply(&reply(
                r#"{"description":"x","weight":-2,"category":"other"}"#
            ))
            .unwrap()
            .weight,
            0.1
        );
        let long = format!(
            r#"{{"description":"{}","weight":1,"category":"other"}}"#,
            "word ".repeat(1000)
        );
        assert!(
            parse_reply(&reply(&long))
                .unwrap()
                .description
                .chars()
                .count()
                <= crate::refine::MAX_DESCRIPTION_CHARS
        );
        for (body, want) in [
            (
                reply(r#"{"description":"x","weight":1e999,"category":"style"}"#),
                "invalid",
            ),
            (
                reply(r#"{"description":"x","weight":"NaN","category":"style"}"#),
                "finite",
            ),
            (
                reply(r#"{"description":"x","weight":"lots","category":"style"}"#),
                "not a number",
            ),
            (
                reply(r#"{"description":"x","weight":0.5,"category":"vibes"}"#),
                "known categories",
            ),
            (reply(r#"{"description":"x","category":"style"}"#), "weight"),
            (
                reply(r#"{"description":3,"weight":0.5,"category":"style"}"#),
                "not a string",
            ),
            (reply(r#"{"weight":0.5,"category":"style"}"#), "description"),
            (reply(r#"{"description":"x","weight":0.5}"#), "category"),
            (reply("I cannot help with that."), "no JSON object"),
            (reply("} {"), "no JSON object"),
            (b"garbage".to_vec(), "not JSON"),
            (br#"{"choices": []}"#.to_vec(), "choices"),
            (
                br#"{"error": {"message": "rate limited"}}"#.to_vec(),
                "rate limited",
            ),
        ] {
            let e = parse_reply(&body).unwrap_err();
            assert_eq!(e.code(), "llm_reply");
            assert!(e.to_string().contains(want), "{e} lacks {want}");
        }
    }

    #[test]
    fn cache_roundtrip_and_apply() {
        let mut cache = LlmCache::from_bytes(b"").unwrap();
        assert!(cache.is_empty());
        let out = LlmOutput {
            description: "Soft.".into(),
            weight: 0.7,
            category: Category::Concept,
        };
        let key = cache_key("m", &card());
        cache.insert(key.clone(), out.clone());
        let back = LlmCache::from_bytes(&cache.to_bytes()).unwrap();
        assert_eq!((back.len(), back.get(&key)), (1, Some(&out)));
        let mut c = card();
        out.apply(&mut c);
        assert_eq!(
            (c.weight, c.category, c.description.as_deref()),
            (0.7, Category::Concept, Some("Soft."))
        );
        LlmOutput {
            description: String::new(),
            ..out
        }
        .apply(&mut c);
        assert_eq!(c.description, None);
        for bad in [
            &br#"{"version":2,"entries":{}}"#[..],
            br#"{"version":1,"entries":{"abc":{"description":"","weight":1,"category":"style"}}}"#,
            b"[",
            br#"{"version":1}"#,
        ] {
            assert_eq!(LlmCache::from_bytes(bad).unwrap_err().code(), "llm_cache");
        }
        let big = format!(
            r#"{{"version":1,"entries":{{"{key}":{{"description":"","weight":9,"category":"style"}}}}}}"#
        );
        assert_eq!(
            LlmCache::from_bytes(big.as_bytes())
                .unwrap()
                .get(&key)
                .unwrap()
                .weight,
            1.5
        );
    }
}
