//! Local, deterministic refiner: turns a raw model card into a [`Card`] (clean description,
//! recommended weight, category). It stands in for the reference's LLM refiner (Stylus, Luo et al.
//! 2024, stylus-diffusion/stylus, MIT): same outputs (description, weight with default 0.8, a range
//! giving its mean, explicit `<lora:NAME:W>` in example prompts winning), rules instead of a model.
//!
//! Weight rules, first that applies: (1) the median of the weights of this card's `<lora:NAME:W>`
//! tags in its example prompts and trigger words (a tag is this card's when NAME matches the file
//! stem, a trigger word or the card name; a prompt with a single tag counts it); (2) a weight or
//! range stated next to "weight" / "strength" / "multiplier" / "recommend" in the description
//! ("weight 0.7", "0.6-0.8", "0.6~0.8", "strength: 0.5"; a range gives its mean); (3) 0.8. The result
//! is clamped to [0.1, 1.5].

use crate::card::{model_page, Card, Category, Stats, DEFAULT_WEIGHT, WEIGHT_RANGE};
use crate::text::{clean_line, strip_network_tags, truncate_chars};

/// Longest description kept, in characters.
pub const MAX_DESCRIPTION_CHARS: usize = 2000;

/// A model card as a source gives it, before refinement.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RawCard {
    pub id: u64,
    pub name: String,
    pub nsfw: bool,
    pub tags: Vec<String>,
    /// Description as published (may hold HTML).
    pub description: String,
    pub base_model: String,
    pub trained_words: Vec<String>,
    pub file_name: String,
    pub size_kb: f64,
    pub sha256: String,
    pub download_url: String,
    pub example_prompts: Vec<String>,
    pub stats: Stats,
}

/// Refines a raw card. Fails (with the reason) only when the card has no usable name.
pub fn refine(raw: RawCard) -> Result<Card, String> {
    let mut card = Card::new(raw.id, clean_line(truncate_chars(&raw.name, 300)));
    if card.name.is_empty() {
        return Err(format!("model {} has no name", raw.id));
    }
    card.tags = dedup(raw.tags.iter().map(|t| clean_line(truncate_chars(t, 100)).to_lowercase()));
    card.trigger_words = dedup(raw.trained_words.iter().map(|t| clean_line(&strip_network_tags(truncate_chars(t, 300)))));
    card.category = category(&card.name, &card.tags);
    let desc = clean_description(&raw.description);
    card.weight = recommended_weight(&raw, &desc);
    card.description = (!desc.is_empty()).then_some(desc);
    card.base_model = clean_line(&raw.base_model);
    card.nsfw = raw.nsfw;
    card.file_name = clean_line(&raw.file_name);
    card.download_url = clean_line(&raw.download_url);
    card.sha256 = clean_line(&raw.sha256).to_uppercase();
    card.size_bytes = if raw.size_kb.is_finite() && raw.size_kb > 0.0 { (raw.size_kb * 1024.0).round() as u64 } else { 0 };
    card.model_page = model_page(raw.id);
    card.stats = raw.stats;
    card.n_example_prompts = raw.example_prompts.iter().filter(|p| !p.trim().is_empty()).count() as u32;
    card.example_prompts = raw
        .example_prompts
        .iter()
        .map(|p| clean_line(&strip_network_tags(truncate_chars(p, 2000))))
        .filter(|p| !p.is_empty())
        .take(crate::card::MAX_EXAMPLES)
        .collect();
    Ok(card)
}

/// Non-empty values, first spelling kept, case-insensitive duplicates and overlong lists cut.
fn dedup(items: impl Iterator<Item = String>) -> Vec<String> {
    let mut seen = std::collections::HashSet::new();
    items.filter(|s| !s.is_empty() && seen.insert(s.to_lowercase())).take(64).collect()
}

const BLOCK_TAGS: &[&str] = &["p", "br", "li", "div", "ul", "ol", "h1", "h2", "h3", "h4", "h5", "h6", "tr", "hr", "blockquote", "pre"];
const BOILERPLATE: &[&str] = &[
    "how to use", "install", "models/lora", "models\\lora", "models/lycoris", "models\\lycoris",
    "put it in", "place it in", "put the file", "put this file", "download", "patreon", "ko-fi", "kofi",
    "buy me a coffee", "discord", "support me", "follow me", "twitter", "instagram", "extension",
];

/// Cleans a published description: HTML tags and entities, URLs and boilerplate sentences (how to
/// install / use, links to donation pages) removed, whitespace collapsed, at most 2000 characters.
pub fn clean_description(raw: &str) -> String {
    let mut text = String::with_capacity(raw.len());
    let mut rest = raw;
    while let Some(i) = rest.find(['<', '&']) {
        text.push_str(&rest[..i]);
        rest = &rest[i..];
        if rest.starts_with('<') {
            let is_tag = rest[1..].starts_with(|c: char| c.is_ascii_alphabetic() || c == '/' || c == '!');
            match rest.find('>') {
                Some(j) if is_tag => {
                    let name: String = rest[1..j].trim_start_matches('/').chars().take_while(|c| c.is_ascii_alphanumeric()).collect();
                    text.push(if BLOCK_TAGS.contains(&name.to_ascii_lowercase().as_str()) { '\n' } else { ' ' });
                    rest = &rest[j + 1..];
                }
                _ => {
                    text.push('<');
                    rest = &rest[1..];
                }
            }
        } else {
            let (c, used) = entity(rest);
            text.push(c);
            rest = &rest[used..];
        }
    }
    text.push_str(rest);
    let mut out = String::new();
    for sentence in sentences(&text) {
        let kept: Vec<&str> = sentence
            .split_whitespace()
            .filter(|w| !(w.starts_with("http://") || w.starts_with("https://") || w.starts_with("www.")))
            .collect();
        let s = clean_line(&kept.join(" "));
        let lower = s.to_lowercase();
        if s.chars().any(char::is_alphanumeric) && !BOILERPLATE.iter().any(|b| lower.contains(b)) {
            if !out.is_empty() {
                out.push(' ');
            }
            out.push_str(&s);
        }
    }
    truncate_chars(&out, MAX_DESCRIPTION_CHARS).trim_end().to_string()
}

/// Decodes the HTML entity at the start of `s` (which starts with `&`): (character, bytes used).
fn entity(s: &str) -> (char, usize) {
    let Some(end) = s.bytes().take(12).position(|b| b == b';') else { return ('&', 1) };
    let body = &s[1..end];
    let c = match body {
        "amp" => Some('&'),
        "lt" => Some('<'),
        "gt" => Some('>'),
        "quot" => Some('"'),
        "apos" => Some('\''),
        "nbsp" => Some(' '),
        _ => body.strip_prefix('#').and_then(|n| {
            let v = match n.strip_prefix(['x', 'X']) {
                Some(h) => u32::from_str_radix(h, 16).ok(),
                None => n.parse().ok(),
            };
            v.and_then(char::from_u32)
        }),
    };
    c.map_or(('&', 1), |c| (c, end + 1))
}

/// Splits text at line breaks and sentence ends (`.`, `!`, `?` followed by whitespace).
fn sentences(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut prev_end = false;
    for (i, c) in text.char_indices() {
        if c == '\n' || (prev_end && c.is_whitespace()) {
            out.push(&text[start..i]);
            start = i;
        }
        prev_end = matches!(c, '.' | '!' | '?');
    }
    out.push(&text[start..]);
    out
}

/// The `<lora:NAME:W>` (also `lyco`, `locon`) tags of a text: (NAME, W) for each parseable one.
pub fn lora_tags(text: &str) -> Vec<(&str, f32)> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find('<') {
        rest = &rest[i + 1..];
        let Some(end) = rest.find('>') else { break };
        let mut parts = rest[..end].split(':');
        let kind = parts.next().unwrap_or("").trim().to_ascii_lowercase();
        if matches!(kind.as_str(), "lora" | "lyco" | "locon") {
            if let (Some(name), Some(w)) = (parts.next(), parts.next()) {
                if let Ok(w) = w.trim().parse::<f32>() {
                    if w.is_finite() && !name.trim().is_empty() {
                        out.push((name.trim(), w));
                    }
                }
            }
        }
    }
    out
}

fn norm(s: &str) -> String {
    s.chars().filter(char::is_ascii_alphanumeric).map(|c| c.to_ascii_lowercase()).collect()
}

fn common_prefix(a: &str, b: &str) -> usize {
    a.bytes().zip(b.bytes()).take_while(|(x, y)| x == y).count()
}

/// Whether a `<lora:NAME:..>` tag names this card.
fn names_card(tag: &str, stem: &str, name: &str, trained: &[String]) -> bool {
    let x = norm(tag);
    x.len() >= 3
        && (x == stem
            || (stem.len() >= 3 && x.starts_with(stem))
            || stem.starts_with(&x)
            || common_prefix(&x, stem) >= 6
            || trained.contains(&x)
            || (x.len() >= 5 && name.contains(&x)))
}

/// The recommended weight of a card (rules in the module doc); `description` is the cleaned one.
pub fn recommended_weight(raw: &RawCard, description: &str) -> f32 {
    let stem = norm(raw.file_name.rsplit_once('.').map_or(raw.file_name.as_str(), |(s, _)| s));
    let name = norm(&raw.name);
    let trained: Vec<String> = raw.trained_words.iter().map(|t| norm(t)).collect();
    let mut found: Vec<f32> = raw.trained_words.iter().flat_map(|t| lora_tags(t)).map(|(_, w)| w).collect();
    for p in &raw.example_prompts {
        let tags = lora_tags(p);
        let mine: Vec<f32> = tags.iter().filter(|(n, _)| names_card(n, &stem, &name, &trained)).map(|t| t.1).collect();
        match (mine.is_empty(), tags.len()) {
            (false, _) => found.extend(mine),
            (true, 1) => found.push(tags[0].1),
            _ => {}
        }
    }
    found.retain(|w| *w > 0.0 && *w <= 3.0);
    let w = if found.is_empty() {
        description_weight(description).unwrap_or(DEFAULT_WEIGHT)
    } else {
        found.sort_by(f32::total_cmp);
        let n = found.len();
        if n % 2 == 1 { found[n / 2] } else { mean(found[n / 2 - 1], found[n / 2]) }
    };
    w.clamp(WEIGHT_RANGE.0, WEIGHT_RANGE.1)
}

/// Mean of two weights, rounded to 0.001 (so 0.6 and 0.8 give 0.7 exactly).
fn mean(a: f32, b: f32) -> f32 {
    ((a as f64 + b as f64) * 500.0).round() as f32 / 1000.0
}

/// Numbers of a text that could be weights: (start, end, value), excluding versions (`v1.5`, `SD 1.5`).
fn numbers(s: &str) -> Vec<(usize, usize, f32, bool)> {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let starts = b[i].is_ascii_digit() || (b[i] == b'.' && b.get(i + 1).is_some_and(u8::is_ascii_digit));
        if !starts || (i > 0 && (b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'.')) {
            i += 1;
            continue;
        }
        let st = i;
        while i < b.len() && (b[i].is_ascii_digit() || (b[i] == b'.' && b.get(i + 1).is_some_and(u8::is_ascii_digit))) {
            i += 1;
        }
        let before = s[..st].trim_end();
        let versioned = ["sd", "v", "version", "skip", "epoch", "step", "steps"].iter().any(|p| before.ends_with(p));
        let unit = b.get(i).is_some_and(|c| c.is_ascii_alphabetic() || *c == b'%');
        if let (Ok(v), false, false) = (s[st..i].parse::<f32>(), versioned, unit) {
            if v > 0.0 && v <= 2.0 {
                out.push((st, i, v, s[st..i].contains('.')));
            }
        }
    }
    out
}

/// A weight or range stated in a description near a weight keyword ("weight 0.7", "0.6~0.8 strength").
pub fn description_weight(description: &str) -> Option<f32> {
    let lc = description.to_lowercase();
    let nums = numbers(&lc);
    let value = |k: usize| -> Option<(f32, usize)> {
        let (s0, e0, v0, d0) = nums[k];
        if let Some(&(s1, _, v1, d1)) = nums.get(k + 1) {
            let sep = lc[e0..s1].trim();
            if matches!(sep, "-" | "~" | "～" | "to" | "–" | "—" | "and" | "or") && (d0 || d1) && v0 != v1 {
                return Some((mean(v0, v1), s1));
            }
        }
        d0.then_some((v0, s0))
    };
    for kw in ["weight", "strength", "multiplier", "recommend"] {
        for (p, _) in lc.match_indices(kw) {
            if lc[..p].trim_end().ends_with("denoising") {
                continue; // a generation parameter, not the LoRA's weight
            }
            let after = p + kw.len();
            let ahead = nums.iter().position(|n| n.0 >= after && n.0 - after <= 40 && !lc[after..n.0].contains(['.', '!', '?']));
            if let Some(v) = ahead.and_then(value) {
                return Some(v.0);
            }
            let behind = nums.iter().rposition(|n| n.1 <= p && p - n.1 <= 25);
            // A range ending just before the keyword counts from its first number.
            let behind = behind.map(|k| if k > 0 && value(k - 1).is_some_and(|(_, s1)| s1 == nums[k].0) { k - 1 } else { k });
            if let Some(v) = behind.and_then(value) {
                return Some(v.0);
            }
        }
    }
    None
}

const CATEGORY_TAGS: &[(Category, &[&str])] = &[
    (Category::Character, &["character", "anime character", "game character", "video game character", "celebrity", "real person", "vtuber", "actress", "actor", "characters"]),
    (Category::Style, &["style", "art style", "artstyle", "artist", "style lora", "styles", "style art", "painting style"]),
    (Category::Clothing, &["clothing", "clothes", "outfit", "costume", "dress", "uniform", "fashion"]),
    (Category::Pose, &["pose", "poses"]),
    (Category::Background, &["background", "scenery", "landscape", "environment", "backgrounds"]),
    (Category::Object, &["object", "objects", "tool", "vehicle", "vehicles", "buildings", "building", "architecture", "weapon", "food", "car", "item"]),
    (Category::Concept, &["concept", "concepts"]),
];
const NAME_KEYWORDS: &[(Category, &[&str])] = &[
    (Category::Style, &["style", "artstyle"]),
    (Category::Clothing, &["outfit", "dress", "clothes", "clothing", "uniform", "costume", "kimono", "armor", "bikini", "swimsuit"]),
    (Category::Pose, &["pose"]),
    (Category::Background, &["background", "scenery", "landscape"]),
    (Category::Concept, &["concept"]),
];

/// Category from the card's name keywords (an explicit "... Style" / "... Outfit" wins), else its
/// tags (first of Character, Style, Clothing, Pose, Background, Object, Concept found), else Other.
pub fn category(name: &str, tags: &[String]) -> Category {
    let words: Vec<String> = crate::text::words(name).iter().map(|w| w.text.to_lowercase()).collect();
    for (cat, kws) in NAME_KEYWORDS {
        if words.iter().any(|w| kws.contains(&w.as_str())) {
            return *cat;
        }
    }
    for (cat, list) in CATEGORY_TAGS {
        if tags.iter().any(|t| list.contains(&t.as_str())) {
            return *cat;
        }
    }
    Category::Other
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(name: &str, file: &str, prompts: &[&str], desc: &str) -> RawCard {
        RawCard {
            id: 1,
            name: name.into(),
            file_name: file.into(),
            example_prompts: prompts.iter().map(|s| s.to_string()).collect(),
            description: desc.into(),
            ..Default::default()
        }
    }

    #[test]
    fn weight_from_example_prompts_median() {
        let r = raw("breastInClass", "breastinclassBetter.safetensors", &["x <lora:koreanDoll:0.3>, <lora:breastinClass:0.7>", "<lora:breastinclassBetter:0.5>", "<lora:o:1> <lora:p:1>"], "weight 0.2");
        assert_eq!(recommended_weight(&r, "weight 0.2"), 0.6);
        let r = raw("Mix", "mix4.safetensors", &["<lora:mix4:0.5>,mix4"], "");
        assert_eq!(recommended_weight(&r, ""), 0.5);
        let r = raw("Mix", "mix4.safetensors", &["<lora:a:0.5> <lora:b:0.3>"], "");
        assert_eq!(recommended_weight(&r, ""), DEFAULT_WEIGHT);
        let r = raw("Mix", "mix4.safetensors", &["<lora:mix4:7>"], "");
        assert_eq!(recommended_weight(&r, ""), DEFAULT_WEIGHT);
        let r = raw("Mix", "mix4.safetensors", &["<lora:mix4:1.4>"], "");
        assert_eq!(recommended_weight(&r, ""), 1.4);
    }

    #[test]
    fn weight_from_description() {
        assert_eq!(description_weight("Use weight 0.7 for best results"), Some(0.7));
        assert_eq!(description_weight("Recommended: 0.6-0.8."), Some(0.7));
        assert_eq!(description_weight("recommended weight 0.6~0.8"), Some(0.7));
        assert_eq!(description_weight("Strength: .5"), Some(0.5));
        assert_eq!(description_weight("0.3 - 0.5 weight is pretty good"), Some(0.4));
        assert_eq!(description_weight("trained on SD 1.5, weight works"), None);
        assert_eq!(description_weight("use v1.5 weight"), None);
        assert_eq!(description_weight("no numbers here, 0.5 elsewhere"), None);
        assert_eq!(description_weight("weight between 0.4 and 1"), Some(0.7));
        assert_eq!(description_weight("weight 512x512"), None);
        assert_eq!(description_weight("best weight is around: 0.7-0.5 ."), Some(0.6));
        assert_eq!(description_weight("denoising strength: 0.4, lora weight 0.9"), Some(0.9));
    }

    #[test]
    fn clean_description_strips_html_urls_boilerplate() {
        let d = "<p>A <b>watercolor</b> style &amp; more&#33;</p><p>How to use: put it in models/Lora</p>\
                 See https://example.com/x now. Support me on Patreon! <lora:x:1> a &lt; b &bogus; \u{0}";
        assert_eq!(clean_description(d), "A watercolor style & more! See now. a < b &bogus;");
        assert_eq!(clean_description(""), "");
        assert_eq!(clean_description("<<<>>>&&&;"), "");
        assert!(clean_description(&"é".repeat(5000)).chars().count() <= MAX_DESCRIPTION_CHARS);
    }

    #[test]
    fn lora_tag_parsing() {
        assert_eq!(lora_tags("<lora:a:0.5> <LyCo:b:.7:lbw=x> <lora:c> <lora::1> <lora:d:x> <lora:e:1"), [("a", 0.5), ("b", 0.7)]);
    }

    #[test]
    fn categories() {
        let t = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(category("Ghibli Style", &t(&["anime"])), Category::Style);
        assert_eq!(category("Suit Outfit", &t(&["character"])), Category::Clothing);
        assert_eq!(category("Asuka", &t(&["anime", "character", "style"])), Category::Character);
        assert_eq!(category("Gun aiming - Concept", &t(&["poses"])), Category::Concept);
        assert_eq!(category("Castle", &t(&["buildings"])), Category::Object);
        assert_eq!(category("X", &t(&["anime"])), Category::Other);
    }

    #[test]
    fn refine_card() {
        let mut r = raw("  Fox\u{7} LoRA ", "fox.safetensors", &["<lora:fox:0.6> fox", " "], "Weight 0.9. <p>cute fox</p>");
        r.tags = vec!["Animal".into(), "animal".into(), "".into()];
        r.trained_words = vec!["<lora:fox:0.6>".into(), "foxy".into()];
        r.size_kb = 2.0;
        r.sha256 = "ab12".into();
        let c = refine(r).unwrap();
        assert_eq!((c.name.as_str(), c.weight, c.size_bytes, c.n_example_prompts), ("Fox LoRA", 0.6, 2048, 1));
        assert_eq!((c.tags, c.trigger_words, c.sha256), (vec!["animal".to_string()], vec!["foxy".to_string()], "AB12".to_string()));
        assert_eq!(c.description.as_deref(), Some("Weight 0.9. cute fox"));
        assert!(refine(raw(" ", "", &[], "")).is_err());
    }
}
