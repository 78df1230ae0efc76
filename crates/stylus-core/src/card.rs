//! The adapter card: everything the composer, the worker and the browser need to know about one LoRA.
//!
//! # Card JSONL (the project's own catalog format)
//! One [`Card`] per line, serialized with serde as a JSON object:
//!
//! ```json
//! {"id":58390,"name":"Detail Tweaker LoRA","category":"concept","weight":0.8,
//!  "tags":["detail","concept"],"trigger_words":[],"base_model":"SD 1.5","nsfw":false,
//!  "file_name":"add_detail.safetensors","download_url":"https://civitai.com/api/download/models/62833",
//!  "sha256":"7C6BAD76…","size_bytes":37861176,"model_page":"https://civitai.com/models/58390",
//!  "stats":{"downloads":1,"favorites":2,"rating":4.9,"rating_count":3},"n_example_prompts":3}
//! ```
//!
//! `id` and `name` are required; every other field has a default (`category` "other", `weight` 0.8,
//! empty strings/lists, zero stats, `model_page` derived from `id`). `description` (the refiner's
//! cleaned text) is optional and left out of demo bundles. `category` is one of `style`, `character`,
//! `clothing`, `background`, `concept`, `pose`, `object`, `other`. `sha256` is upper-case hex as
//! Civitai publishes it; `file_name` is the adapter file's name, whose stem is the `<lora:NAME:w>` name
//! A1111 resolves.

use serde::{Deserialize, Serialize};

/// Default recommended weight of an adapter (the reference refiner's default).
pub const DEFAULT_WEIGHT: f32 = 0.8;
/// Recommended weights are clamped to this range.
pub const WEIGHT_RANGE: (f32, f32) = (0.1, 1.5);

/// What kind of thing an adapter adds to an image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Category {
    Style,
    Character,
    Clothing,
    Background,
    Concept,
    Pose,
    Object,
    #[default]
    Other,
}

impl Category {
    /// Every category, in declaration order.
    pub const ALL: [Category; 8] = [
        Category::Style,
        Category::Character,
        Category::Clothing,
        Category::Background,
        Category::Concept,
        Category::Pose,
        Category::Object,
        Category::Other,
    ];

    /// The lowercase name used in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Category::Style => "style",
            Category::Character => "character",
            Category::Clothing => "clothing",
            Category::Background => "background",
            Category::Concept => "concept",
            Category::Pose => "pose",
            Category::Object => "object",
            Category::Other => "other",
        }
    }
}

/// Popularity figures from the model page.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Stats {
    pub downloads: u64,
    pub favorites: u64,
    pub rating: f32,
    pub rating_count: u64,
}

/// One LoRA adapter as the product knows it (refined, factual fields plus an optional description).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Card {
    /// Civitai model id.
    pub id: u64,
    pub name: String,
    #[serde(default)]
    pub category: Category,
    /// Recommended weight (refiner output), in [`WEIGHT_RANGE`].
    #[serde(default = "default_weight")]
    pub weight: f32,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub trigger_words: Vec<String>,
    #[serde(default)]
    pub base_model: String,
    #[serde(default)]
    pub nsfw: bool,
    /// Adapter file name (e.g. `add_detail.safetensors`); may be empty.
    #[serde(default)]
    pub file_name: String,
    #[serde(default)]
    pub download_url: String,
    #[serde(default)]
    pub sha256: String,
    #[serde(default)]
    pub size_bytes: u64,
    /// `https://civitai.com/models/{id}` unless the source said otherwise.
    #[serde(default)]
    pub model_page: String,
    #[serde(default)]
    pub stats: Stats,
    #[serde(default)]
    pub n_example_prompts: u32,
    /// Cleaned description (refiner output); not shipped in demo bundles.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Example prompts, network tags removed (at most [`MAX_EXAMPLES`]); indexed for retrieval, not
    /// shipped in demo bundles (the card authors' text).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub example_prompts: Vec<String>,
}

/// Example prompts kept per card.
pub const MAX_EXAMPLES: usize = 3;

fn default_weight() -> f32 {
    DEFAULT_WEIGHT
}

/// The Civitai model page of a model id.
pub fn model_page(id: u64) -> String {
    format!("https://civitai.com/models/{id}")
}

impl Card {
    /// A card with the given id and name and defaults everywhere else.
    pub fn new(id: u64, name: impl Into<String>) -> Self {
        Card {
            id,
            name: name.into(),
            category: Category::Other,
            weight: DEFAULT_WEIGHT,
            tags: Vec::new(),
            trigger_words: Vec::new(),
            base_model: String::new(),
            nsfw: false,
            file_name: String::new(),
            download_url: String::new(),
            sha256: String::new(),
            size_bytes: 0,
            model_page: model_page(id),
            stats: Stats::default(),
            n_example_prompts: 0,
            description: None,
            example_prompts: Vec::new(),
        }
    }

    /// Checks a card read from outside and repairs what can be repaired: fills `model_page`, clamps a
    /// finite weight into range. Returns the reason when the card is unusable (no name, bad weight).
    pub fn normalize(&mut self) -> Result<(), String> {
        self.name = crate::text::clean_line(&self.name);
        if self.name.is_empty() {
            return Err("card has an empty name".into());
        }
        if !self.weight.is_finite() {
            return Err(format!("card {} has a non-finite weight", self.id));
        }
        self.weight = self.weight.clamp(WEIGHT_RANGE.0, WEIGHT_RANGE.1);
        if self.model_page.is_empty() {
            self.model_page = model_page(self.id);
        }
        Ok(())
    }

    /// The name used in an A1111 `<lora:NAME:w>` tag: the file's stem when known, else the card name,
    /// with the characters that break the tag syntax (`<`, `>`, `:`, control characters) replaced.
    pub fn a1111_name(&self) -> String {
        a1111_name(self.id, &self.name, self.file_name.rsplit_once('.').map_or(self.file_name.as_str(), |(s, _)| s))
    }

    /// This card without its free text, description and example prompts (what demo bundles carry).
    pub fn without_description(mut self) -> Self {
        self.description = None;
        self.example_prompts = Vec::new();
        self
    }
}

/// [`Card::a1111_name`] from the card's id, name and file stem (the file name before its last '.').
pub fn a1111_name(id: u64, name: &str, stem: &str) -> String {
    let raw = if stem.trim().is_empty() { name } else { stem };
    let s: String = crate::text::clean_line(raw).chars().map(|c| if matches!(c, '<' | '>' | ':' | '\\' | '/') { '_' } else { c }).collect();
    if s.is_empty() {
        format!("lora_{id}")
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_roundtrip_and_defaults() {
        let c: Card = serde_json::from_str(r#"{"id":7,"name":"Fox"}"#).unwrap();
        assert_eq!(c.weight, DEFAULT_WEIGHT);
        assert_eq!(c.category, Category::Other);
        let mut c2 = c.clone();
        c2.normalize().unwrap();
        assert_eq!(c2.model_page, "https://civitai.com/models/7");
        let line = serde_json::to_string(&c2).unwrap();
        assert!(!line.contains("description"));
        assert_eq!(serde_json::from_str::<Card>(&line).unwrap(), c2);
        let cat: Category = serde_json::from_str("\"style\"").unwrap();
        assert_eq!(cat, Category::Style);
        for c in Category::ALL {
            assert_eq!(serde_json::to_string(&c).unwrap(), format!("\"{}\"", c.as_str()));
        }
    }

    #[test]
    fn normalize_rejects_and_clamps() {
        let mut c = Card::new(1, " \u{0} ");
        assert!(c.normalize().is_err());
        let mut c = Card::new(1, "x");
        c.weight = 9.0;
        c.normalize().unwrap();
        assert_eq!(c.weight, 1.5);
        c.weight = f32::NAN;
        assert!(c.normalize().is_err());
    }

    #[test]
    fn a1111_names_are_sanitized() {
        let mut c = Card::new(3, "My <Style>: v2");
        assert_eq!(c.a1111_name(), "My _Style__ v2");
        c.file_name = "add_detail.safetensors".into();
        assert_eq!(c.a1111_name(), "add_detail");
        c.file_name = ".safetensors".into();
        c.name = "\n\t".into();
        assert_eq!(c.a1111_name(), "lora_3");
    }
}
