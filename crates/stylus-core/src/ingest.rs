//! Parsers from catalog sources (bytes) to refined [`Card`]s: the compact Civitai JSONL
//! (`civitai_lora_top10k_*.jsonl`), the project's own card JSONL (see [`crate::card`]) and one raw
//! Civitai REST v1 `/models` page. Bad records are reported as [`IngestIssue`]s (1-based line, or
//! item number for a REST page, and the reason) and skipped; one bad line never aborts the rest.
//! Within one input a repeated id keeps its first card. Only LoRA-like model types (LORA, LoCon,
//! LyCORIS, DoRA) are kept from sources that say a type.

use crate::card::{Card, Stats};
use crate::refine::{refine, RawCard};
use serde::Serialize;
use serde_json::Value;
use std::collections::HashMap;

/// One record that was skipped while reading a source.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IngestIssue {
    /// 1-based line of a JSONL source, or 1-based item of a REST page; 0 = the whole input.
    pub line: usize,
    /// The model id, when it could be read.
    pub id: Option<u64>,
    pub reason: String,
}

/// Reads the compact Civitai JSONL (one model per line, `latest_version` holding the newest version).
pub fn civitai_jsonl(bytes: &[u8]) -> (Vec<Card>, Vec<IngestIssue>) {
    jsonl(bytes, |line| civitai_line(&serde_json::from_str(line).map_err(|e| format!("invalid JSON: {e}"))?))
}

/// Reads the project's own card JSONL (one serialized [`Card`] per line).
pub fn cards_jsonl(bytes: &[u8]) -> (Vec<Card>, Vec<IngestIssue>) {
    jsonl(bytes, card_line)
}

/// Reads any JSONL whose lines are compact Civitai records, REST items or cards (sniffed per line),
/// or a whole REST page when the input is one JSON object with `items`.
pub fn auto(bytes: &[u8]) -> (Vec<Card>, Vec<IngestIssue>) {
    if let Ok(v) = serde_json::from_slice::<Value>(bytes) {
        if v.get("items").is_some() {
            let (cards, issues, _) = civitai_rest_page(bytes);
            return (cards, issues);
        }
    }
    jsonl(bytes, |line| {
        let v: Value = serde_json::from_str(line).map_err(|e| format!("invalid JSON: {e}"))?;
        if v.get("latest_version").is_some() {
            civitai_line(&v)
        } else if v.get("modelVersions").is_some() {
            rest_item(&v)
        } else {
            card_line(line)
        }
    })
}

/// Reads one Civitai REST v1 `/models` page: (cards, issues, next cursor as [`crate::fetch::next_cursor`]
/// reads it).
pub fn civitai_rest_page(bytes: &[u8]) -> (Vec<Card>, Vec<IngestIssue>, Option<String>) {
    let whole = |reason: String| vec![IngestIssue { line: 0, id: None, reason }];
    let v: Value = match serde_json::from_slice(bytes) {
        Ok(v) => v,
        Err(e) => return (Vec::new(), whole(format!("not a JSON document: {e}")), None),
    };
    let cursor = crate::fetch::next_cursor(&v);
    let Some(items) = v.get("items").and_then(Value::as_array) else {
        return (Vec::new(), whole("no `items` array: not a Civitai /models page".into()), cursor);
    };
    let mut out = Collector::default();
    for (i, item) in items.iter().enumerate() {
        out.add(i + 1, rest_item(item), item.get("id").and_then(Value::as_u64));
    }
    (out.cards, out.issues, cursor)
}

#[derive(Default)]
struct Collector {
    cards: Vec<Card>,
    issues: Vec<IngestIssue>,
    seen: HashMap<u64, usize>,
}

impl Collector {
    fn add(&mut self, line: usize, card: Result<Card, String>, id: Option<u64>) {
        let issue = |id, reason| IngestIssue { line, id, reason };
        match card {
            Err(reason) => self.issues.push(issue(id, reason)),
            Ok(c) => match self.seen.get(&c.id) {
                Some(first) => self.issues.push(issue(Some(c.id), format!("duplicate id {} (first on line {first})", c.id))),
                None => {
                    self.seen.insert(c.id, line);
                    self.cards.push(c);
                }
            },
        }
    }
}

fn jsonl(bytes: &[u8], parse: impl Fn(&str) -> Result<Card, String>) -> (Vec<Card>, Vec<IngestIssue>) {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let mut out = Collector::default();
    for (i, raw) in bytes.split(|b| *b == b'\n').enumerate() {
        let line = match std::str::from_utf8(raw) {
            Ok(s) => s.trim(),
            Err(e) => {
                out.add(i + 1, Err(format!("invalid UTF-8: {e}")), None);
                continue;
            }
        };
        if !line.is_empty() {
            let id = sniff_id(line);
            out.add(i + 1, parse(line), id);
        }
    }
    (out.cards, out.issues)
}

/// The `"id": N` of a line that failed to parse, for the report.
fn sniff_id(line: &str) -> Option<u64> {
    let rest = &line[line.find("\"id\"")? + 4..];
    let rest = rest.trim_start().strip_prefix(':')?.trim_start();
    rest[..rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len())].parse().ok()
}

fn card_line(line: &str) -> Result<Card, String> {
    let mut c: Card = serde_json::from_str(line).map_err(|e| format!("not a card: {e}"))?;
    c.normalize()?;
    Ok(c)
}

fn string(v: &Value, key: &str) -> String {
    match v.get(key) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => String::new(),
    }
}

fn float(v: &Value, key: &str) -> f64 {
    v.get(key).and_then(Value::as_f64).filter(|f| f.is_finite() && *f >= 0.0).unwrap_or(0.0)
}

fn count(v: &Value, key: &str) -> u64 {
    v.get(key).and_then(|x| x.as_u64().or_else(|| x.as_f64().filter(|f| *f >= 0.0).map(|f| f as u64))).unwrap_or(0)
}

/// A list of strings; objects count by their `name` (older API versions send tags that way).
fn strings(v: &Value, key: &str) -> Vec<String> {
    let Some(items) = v.get(key).and_then(Value::as_array) else { return Vec::new() };
    items
        .iter()
        .filter_map(|x| match x {
            Value::String(s) => Some(s.clone()),
            Value::Object(_) => x.get("name").and_then(Value::as_str).map(str::to_string),
            _ => None,
        })
        .collect()
}

fn id_of(v: &Value) -> Result<u64, String> {
    match v.get("id") {
        Some(x) => x.as_u64().filter(|i| *i > 0).ok_or_else(|| format!("id {x} is not a positive integer")),
        None => Err(if v.is_object() { "missing id".into() } else { "record is not a JSON object".into() }),
    }
}

fn check_type(v: &Value) -> Result<(), String> {
    match v.get("type").and_then(Value::as_str) {
        Some(t) if !["lora", "locon", "lycoris", "dora"].contains(&t.to_ascii_lowercase().as_str()) => {
            Err(format!("model type {t:?} is not a LoRA"))
        }
        _ => Ok(()),
    }
}

fn stats(v: &Value) -> Stats {
    let s = v.get("stats").unwrap_or(&Value::Null);
    Stats {
        downloads: count(s, "downloadCount"),
        favorites: count(s, "favoriteCount"),
        rating: float(s, "rating") as f32,
        rating_count: count(s, "ratingCount"),
    }
}

fn raw_common(v: &Value) -> Result<RawCard, String> {
    check_type(v)?;
    let level = count(v, "nsfwLevel");
    Ok(RawCard {
        id: id_of(v)?,
        name: string(v, "name"),
        nsfw: v.get("nsfw").and_then(Value::as_bool).unwrap_or(level >= 4),
        tags: strings(v, "tags"),
        description: string(v, "description"),
        stats: stats(v),
        ..Default::default()
    })
}

fn civitai_line(v: &Value) -> Result<Card, String> {
    let mut raw = raw_common(v)?;
    let ver = v.get("latest_version").unwrap_or(&Value::Null);
    let file = ver.get("file").unwrap_or(&Value::Null);
    raw.base_model = string(ver, "baseModel");
    raw.trained_words = strings(ver, "trainedWords");
    raw.file_name = string(file, "name");
    raw.size_kb = float(file, "sizeKB");
    raw.sha256 = string(file, "sha256");
    raw.download_url = string(file, "downloadUrl");
    raw.example_prompts = strings(v, "example_prompts");
    refine(raw)
}

fn rest_item(v: &Value) -> Result<Card, String> {
    let mut raw = raw_common(v)?;
    let ver = v.get("modelVersions").and_then(|m| m.get(0)).unwrap_or(&Value::Null);
    let files = ver.get("files").and_then(Value::as_array).map(Vec::as_slice).unwrap_or(&[]);
    let file = files
        .iter()
        .find(|f| f.get("primary").and_then(Value::as_bool) == Some(true))
        .or_else(|| files.iter().find(|f| f.get("type").and_then(Value::as_str) == Some("Model")))
        .or(files.first())
        .unwrap_or(&Value::Null);
    let hashes = file.get("hashes").and_then(Value::as_object);
    raw.base_model = string(ver, "baseModel");
    raw.trained_words = strings(ver, "trainedWords");
    raw.file_name = string(file, "name");
    raw.size_kb = float(file, "sizeKB");
    raw.sha256 = hashes
        .and_then(|h| h.iter().find(|(k, _)| k.eq_ignore_ascii_case("sha256")))
        .and_then(|(_, x)| x.as_str())
        .unwrap_or("")
        .to_string();
    raw.download_url = match string(file, "downloadUrl") {
        u if u.is_empty() => string(ver, "downloadUrl"),
        u => u,
    };
    raw.example_prompts = ver
        .get("images")
        .and_then(Value::as_array)
        .map(|imgs| imgs.iter().filter_map(|i| i.pointer("/meta/prompt")?.as_str().map(str::to_string)).collect())
        .unwrap_or_default();
    refine(raw)
}

#[cfg(test)]
mod tests {
    use super::*;

    const COMPACT: &str = r#"{"id": 5, "name": "Watercolor Style", "type": "LORA", "nsfw": false, "tags": ["style", "watercolor"], "description": "<p>Soft watercolor.</p> Use weight 0.7", "creator": "x", "stats": {"downloadCount": 1200, "favoriteCount": 10, "commentCount": 1, "ratingCount": 3, "rating": 4.5}, "latest_version": {"id": 9, "name": "v1", "baseModel": "SD 1.5", "trainedWords": ["wtrcolor"], "createdAt": "2023", "file": {"name": "watercolor.safetensors", "sizeKB": 1.5, "metadata": {}, "sha256": "abc", "downloadUrl": "https://civitai.com/api/download/models/9"}}, "num_versions": 1, "example_prompts": ["a fox <lora:watercolor:0.6>"], "license": {}}"#;

    #[test]
    fn compact_lines_with_bad_ones() {
        let input = format!("{COMPACT}\n\n{{\"id\": 6, \"name\": \n[1,2]\n{{\"name\":\"no id\"}}\n\u{0}\u{1}garbage\n{COMPACT}\n{{\"id\":7,\"name\":\"Ckpt\",\"type\":\"Checkpoint\"}}\n{{\"id\":8,\"name\":\"\"}}\n{{\"id\":-3,\"name\":\"n\"}}\n");
        let mut bytes = input.into_bytes();
        bytes.extend_from_slice(b"{\"id\":9,\"name\":\"\xff\"}\n");
        let (cards, issues) = civitai_jsonl(&bytes);
        assert_eq!(cards.len(), 1);
        let c = &cards[0];
        assert_eq!((c.id, c.weight, c.size_bytes, c.stats.downloads), (5, 0.6, 1536, 1200));
        assert_eq!((c.base_model.as_str(), c.sha256.as_str(), c.n_example_prompts), ("SD 1.5", "ABC", 1));
        assert_eq!(c.description.as_deref(), Some("Soft watercolor. Use weight 0.7"));
        let lines: Vec<_> = issues.iter().map(|i| i.line).collect();
        assert_eq!(lines, [3, 4, 5, 6, 7, 8, 9, 10, 11]);
        assert!(issues.iter().all(|i| !i.reason.is_empty()));
        assert_eq!(issues[0].id, Some(6));
        assert!(issues[4].reason.contains("duplicate"));
        assert!(issues[5].reason.contains("not a LoRA"));
        assert!(issues[8].reason.contains("UTF-8"));
    }

    #[test]
    fn own_cards_roundtrip_and_auto() {
        let (cards, _) = civitai_jsonl(COMPACT.as_bytes());
        let mut text: String = cards.iter().map(|c| serde_json::to_string(c).unwrap() + "\r\n").collect();
        text.push_str("{\"id\":1}\n{\"id\":2,\"name\":\"ok\",\"bogus\":1}\n");
        let (back, issues) = cards_jsonl(text.as_bytes());
        assert_eq!(back[0], cards[0]);
        assert_eq!(back.len(), 2);
        assert_eq!(issues.len(), 1);
        let mixed = format!("{}\n{COMPACT}", serde_json::to_string(&Card::new(77, "Mine")).unwrap());
        let (cards, issues) = auto(mixed.as_bytes());
        assert_eq!((cards.len(), issues.len()), (2, 0));
        assert_eq!(cards[0].model_page, "https://civitai.com/models/77");
    }

    #[test]
    fn rest_page() {
        let page = r#"{"items":[
          {"id": 11, "name": "Neon", "type": "LORA", "nsfw": false, "tags": [{"name":"style"}], "description": "<b>neon</b>",
           "stats": {"downloadCount": 5.0}, "modelVersions": [{"baseModel": "SD 1.5", "trainedWords": ["neon"],
           "files": [{"name": "a.pt", "type": "Training Data"}, {"name": "neon.safetensors", "sizeKB": 2, "primary": true,
           "hashes": {"SHA256": "FF00"}, "downloadUrl": "https://x/1"}], "images": [{"meta": {"prompt": "<lora:neon:0.5>"}}, {"meta": null}]}]},
          {"id": 12, "name": "Model", "type": "Checkpoint"},
          {"name": "no id"},
          {"id": 13, "name": "Bare"}],
          "metadata": {"nextCursor": "abc"}}"#;
        let (cards, issues, cursor) = civitai_rest_page(page.as_bytes());
        assert_eq!(cursor.as_deref(), Some("abc"));
        assert_eq!(cards.len(), 2);
        let c = &cards[0];
        assert_eq!((c.file_name.as_str(), c.sha256.as_str(), c.size_bytes, c.weight), ("neon.safetensors", "FF00", 2048, 0.5));
        assert_eq!((c.tags.clone(), c.n_example_prompts, c.stats.downloads), (vec!["style".to_string()], 1, 5));
        assert_eq!(issues.iter().map(|i| i.line).collect::<Vec<_>>(), [2, 3]);
        assert_eq!(auto(page.as_bytes()).0.len(), 2);
        let (c, i, n) = civitai_rest_page(b"{\"items\": 3}");
        assert!(c.is_empty() && n.is_none() && i[0].line == 0);
        assert!(civitai_rest_page(b"\x00not json").1[0].reason.contains("JSON"));
    }
}
