//! The local, deterministic composer (Stylus, Luo et al. 2024, stylus-diffusion/stylus, MIT; topics
//! and assignment by rules and BM25 instead of an LLM): request / response types, validation, and
//! `compose` = topics → retrieval → assignment → masks → merge.
//!
//! Assignment: the top-K cards for the prompt's topic terms are each scored (BM25) against every
//! topic. A card may join a topic when it covers at least `min_coverage` of the topic's idf mass (the
//! summed idf of the topic terms it contains over that of all topic terms): the "no foreign concepts"
//! rule, e.g. "oil painting" does not join "watercolor painting". It joins its best-scoring such
//! topic, or is dropped. Cards are then taken greedily by score (ties: more downloads, then lower
//! id): at most `max_per_topic` per topic, each card once, at most `max_styles` Style cards.
//!
//! The LLM composer ([`crate::llm_compose`]) shares the retrieval, the adapter records and the masks
//! and merge below.
//!
//! Merge: in each image an active adapter gets `weight · scale / n_active_in_its_topic`; the image
//! prompt is the request prompt (control characters and whitespace runs collapsed to one space) plus
//! the debias suffix (control characters blanked); the A1111 string appends ` <lora:NAME:w>` tags, w with two decimals.

use crate::card::Category;
use crate::masks::{self, MaskMode};
use crate::store::CardView;
use crate::text::{clean_line, strip_network_tags};
use crate::topics::{phrases, Phrase};
use crate::{Error, Index};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

pub const MAX_PROMPT_CHARS: usize = 10_000;
pub const MAX_SUFFIX_CHARS: usize = 1_000;
pub const MAX_TOP_K: u32 = 1000;
pub const MAX_IMAGES: u32 = 64;
pub const MAX_PER_TOPIC: u32 = 8;

/// A compose request (JSON: unknown fields are rejected, missing ones take their defaults).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ComposeRequest {
    pub prompt: String,
    #[serde(default)]
    pub negative_prompt: String,
    /// Images to compose masks for (1..=64, default 1).
    #[serde(default = "one")]
    pub num_images: u32,
    /// Seed of the mask PRNG (default 0).
    #[serde(default)]
    pub seed: u64,
    #[serde(default)]
    pub options: ComposeOptions,
}

fn one() -> u32 {
    1
}

/// Composer settings; the defaults are the reference's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ComposeOptions {
    /// Cards retrieved for the prompt (1..=1000, default 150).
    pub top_k: u32,
    /// Adapters per topic (0..=8, default 3).
    pub max_per_topic: u32,
    /// Style adapters in all (default 2).
    pub max_styles: u32,
    pub mask_mode: MaskMode,
    /// Global LoRA scale in [0, 2] (default 0.8).
    pub scale: f32,
    /// Appended to every image prompt (default ", realistic, best quality").
    pub debias_suffix: String,
    /// Share of a topic's idf mass a card must cover to join it, in [0, 1] (default 0.5).
    pub min_coverage: f32,
}

impl Default for ComposeOptions {
    fn default() -> Self {
        ComposeOptions {
            top_k: 150,
            max_per_topic: 3,
            max_styles: 2,
            mask_mode: MaskMode::OneHotLoras,
            scale: 0.8,
            debias_suffix: ", realistic, best quality".into(),
            min_coverage: 0.5,
        }
    }
}

impl ComposeRequest {
    /// A request for one image with default options.
    pub fn new(prompt: impl Into<String>) -> Self {
        ComposeRequest { prompt: prompt.into(), negative_prompt: String::new(), num_images: 1, seed: 0, options: ComposeOptions::default() }
    }

    /// Parses and validates a JSON request.
    pub fn from_json(bytes: &[u8]) -> Result<Self, Error> {
        let req: Self = serde_json::from_slice(bytes).map_err(|e| Error::InvalidRequest(e.to_string()))?;
        req.validate()?;
        Ok(req)
    }

    /// Checks every limit; the error names the first field out of range.
    pub fn validate(&self) -> Result<(), Error> {
        let o = &self.options;
        if self.prompt.trim().is_empty() {
            return Err(Error::PromptEmpty);
        }
        let chars = self.prompt.chars().count();
        if chars > MAX_PROMPT_CHARS {
            return Err(Error::PromptTooLong { chars, max: MAX_PROMPT_CHARS });
        }
        let chars = self.negative_prompt.chars().count();
        if chars > MAX_PROMPT_CHARS {
            return Err(Error::NegativePromptTooLong { chars, max: MAX_PROMPT_CHARS });
        }
        let chars = o.debias_suffix.chars().count();
        if chars > MAX_SUFFIX_CHARS {
            return Err(Error::DebiasSuffixTooLong { chars, max: MAX_SUFFIX_CHARS });
        }
        if o.top_k == 0 || o.top_k > MAX_TOP_K {
            return Err(Error::TopKOutOfRange(o.top_k));
        }
        if self.num_images == 0 || self.num_images > MAX_IMAGES {
            return Err(Error::NumImagesOutOfRange(self.num_images));
        }
        if !(o.scale.is_finite() && (0.0..=2.0).contains(&o.scale)) {
            return Err(Error::ScaleOutOfRange(o.scale));
        }
        if o.max_per_topic > MAX_PER_TOPIC {
            return Err(Error::MaxPerTopicOutOfRange(o.max_per_topic));
        }
        if !(o.min_coverage.is_finite() && (0.0..=1.0).contains(&o.min_coverage)) {
            return Err(Error::MinCoverageOutOfRange(o.min_coverage));
        }
        Ok(())
    }
}

/// The composer's answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ComposeResponse {
    pub topics: Vec<Topic>,
    pub images: Vec<ComposedImage>,
    /// Per-stage durations, present when the caller supplied a clock.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timings_us: Option<Timings>,
}

/// A topic of the prompt and the adapters chosen for it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Topic {
    pub name: String,
    /// Byte span `[start, end)` of the topic in the request prompt.
    pub span: [usize; 2],
    pub adapters: Vec<ChosenAdapter>,
}

/// An adapter chosen for a topic.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChosenAdapter {
    pub id: u64,
    pub name: String,
    pub category: Category,
    /// BM25 of the topic against the card.
    pub score: f32,
    /// Recommended weight (before scale and sharing).
    pub weight: f32,
    pub download_url: String,
    pub sha256: String,
    pub size_bytes: u64,
    pub model_page: String,
    /// Topic terms the card matched.
    pub why: Vec<String>,
}

/// One image's mask and merged prompt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ComposedImage {
    /// Every chosen adapter id → on / off.
    pub mask: BTreeMap<u64, bool>,
    pub active: Vec<ActiveAdapter>,
    pub prompt: String,
    pub negative_prompt: String,
    /// `prompt` followed by ` <lora:NAME:w>` tags.
    pub a1111: String,
}

/// An adapter switched on in an image, with its final weight.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActiveAdapter {
    pub id: u64,
    pub name: String,
    pub weight: f32,
}

/// Stage durations in microseconds.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct Timings {
    pub topics: u64,
    pub retrieve: u64,
    pub assign: u64,
    pub masks: u64,
    pub total: u64,
}

/// Runs the composer over a catalog (`cards[i]` is document `i` of `lex`). `now` is an optional
/// millisecond clock for [`Timings`] (the library itself reads no clock).
pub fn compose(index: &Index, req: &ComposeRequest, now: Option<&dyn Fn() -> f64>) -> Result<ComposeResponse, Error> {
    let (cards, lex) = (index.store(), index.lexical());
    let clock = || now.map_or(0.0, |f| f());
    let us = |a: f64, b: f64| ((b - a) * 1000.0).max(0.0).round() as u64;
    let t0 = clock();
    req.validate()?;
    let o = &req.options;
    let topics = phrases(&req.prompt);
    let t1 = clock();

    let hits = retrieve(index, &req.prompt, &topics, o.top_k as usize);
    let t2 = clock();

    // (topic, doc, score, matched terms) for each retrieved card with a qualifying topic; each topic's
    // terms are resolved against the vocabulary once.
    let queries: Vec<_> = topics.iter().map(|t| lex.query(&t.terms)).collect();
    let mass: Vec<f32> = queries.iter().map(|q| (0..q.len()).map(|i| lex.query_idf(q, i)).sum()).collect();
    let mut cands: Vec<(usize, u32, f32, Vec<String>)> = Vec::new();
    let (mut matched, mut best_matched) = (Vec::new(), Vec::new());
    for &(doc, _) in &hits {
        let mut best: Option<(usize, f32)> = None;
        for (ti, q) in queries.iter().enumerate() {
            let s = lex.score_matches(q, doc, &mut matched);
            let covered: f32 = matched.iter().map(|&i| lex.query_idf(q, i)).sum();
            if s > 0.0 && covered >= o.min_coverage * mass[ti] && best.is_none_or(|b| s > b.1) {
                best = Some((ti, s));
                std::mem::swap(&mut matched, &mut best_matched);
            }
        }
        if let Some((ti, s)) = best {
            cands.push((ti, doc, s, best_matched.iter().map(|&i| queries[ti].term(i).to_string()).collect()));
        }
    }
    // best score first; ties go to more downloads, then the lower id (read from the card store only
    // for the candidates that tie)
    cands.sort_by(|a, b| b.2.total_cmp(&a.2));
    let mut i = 0;
    while i < cands.len() {
        let n = cands[i..].iter().take_while(|c| c.2.total_cmp(&cands[i].2).is_eq()).count();
        if n > 1 {
            cands[i..i + n].sort_by_cached_key(|c| (std::cmp::Reverse(cards.downloads(c.1)), cards.id(c.1)));
        }
        i += n;
    }
    let mut out: Vec<Topic> = topics.iter().map(|t| Topic { name: t.name.clone(), span: t.span, adapters: Vec::new() }).collect();
    let mut styles = 0;
    let mut a1111_names = BTreeMap::new();
    for (ti, doc, score, why) in cands {
        let style = cards.category(doc) == Category::Style;
        if out[ti].adapters.len() >= o.max_per_topic as usize || (style && styles >= o.max_styles) {
            continue;
        }
        styles += style as u32;
        let c = cards.card(doc);
        a1111_names.insert(c.id(), c.a1111_name());
        out[ti].adapters.push(chosen(&c, score, why));
    }
    let t3 = clock();
    let images = images(&out, &a1111_names, req);
    let t4 = clock();
    let timings_us = now.map(|_| Timings { topics: us(t0, t1), retrieve: us(t1, t2), assign: us(t2, t3), masks: us(t3, t4), total: us(t0, t4) });
    Ok(ComposeResponse { topics: out, images, timings_us })
}

/// The local composer's retrieval: the `k` best cards (document, score) for the terms of all topics
/// (BM25), fused with the prompt's embedding when the index has vectors.
pub(crate) fn retrieve(index: &Index, prompt: &str, topics: &[Phrase], k: usize) -> Vec<(u32, f32)> {
    let mut query: Vec<String> = topics.iter().flat_map(|t| t.terms.iter().cloned()).collect();
    query.dedup();
    index.retrieve_with_terms(prompt, &query, k)
}

/// A card as chosen for a topic.
pub(crate) fn chosen(c: &CardView<'_>, score: f32, why: Vec<String>) -> ChosenAdapter {
    ChosenAdapter {
        id: c.id(),
        name: c.name().to_string(),
        category: c.category(),
        score,
        weight: c.weight(),
        download_url: c.download_url(),
        sha256: c.sha256(),
        size_bytes: c.size_bytes(),
        model_page: c.model_page(),
        why,
    }
}

/// Masks and merge (module doc) for topics whose adapters are chosen; `a1111_names` maps every chosen
/// id to its `<lora:NAME:w>` name. Shared by the local and the LLM composer.
pub(crate) fn images(out: &[Topic], a1111_names: &BTreeMap<u64, String>, req: &ComposeRequest) -> Vec<ComposedImage> {
    let o = &req.options;
    let groups: Vec<usize> = out.iter().map(|t| t.adapters.len()).collect();
    let drawn = masks::draw(&groups, o.mask_mode, req.num_images as usize, req.seed);
    // Adapters come only from the composer: tags typed into the prompt, suffix or negative are removed.
    let suffix = strip_network_tags(&o.debias_suffix).replace(char::is_control, " ");
    let prompt = format!("{}{suffix}", clean_line(&strip_network_tags(&req.prompt)));
    let negative = clean_line(&strip_network_tags(&req.negative_prompt));
    drawn
        .iter()
        .map(|bits| {
            let mut it = bits.iter();
            let mut mask = BTreeMap::new();
            let mut active = Vec::new();
            for t in out {
                let on: Vec<bool> = t.adapters.iter().map(|_| *it.next().unwrap_or(&false)).collect();
                let n_on = on.iter().filter(|b| **b).count();
                for (a, on) in t.adapters.iter().zip(on) {
                    mask.insert(a.id, on);
                    if on {
                        active.push(ActiveAdapter { id: a.id, name: a.name.clone(), weight: a.weight * o.scale / n_on as f32 });
                    }
                }
            }
            let mut a1111 = prompt.clone();
            for a in &active {
                let name = a1111_names.get(&a.id).map_or("", String::as_str);
                a1111.push_str(&format!(" <lora:{name}:{:.2}>", a.weight));
            }
            ComposedImage { mask, active, prompt: prompt.clone(), negative_prompt: negative.clone(), a1111 }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Card, Index};

    fn card(id: u64, name: &str, cat: Category, tags: &[&str], weight: f32, downloads: u64) -> Card {
        let mut c = Card::new(id, name);
        c.category = cat;
        c.tags = tags.iter().map(|s| s.to_string()).collect();
        c.weight = weight;
        c.stats.downloads = downloads;
        c.file_name = format!("{}.safetensors", name.replace(' ', "_"));
        c
    }

    fn index() -> Index {
        Index::build(vec![
            card(1, "Watercolor Style", Category::Style, &["style", "watercolor"], 0.7, 10),
            card(2, "Watercolor painting", Category::Style, &["watercolor", "painting"], 0.8, 20),
            card(3, "Oil painting", Category::Style, &["oil", "painting"], 0.8, 99),
            card(4, "Fox girl", Category::Concept, &["fox", "animal"], 0.6, 5),
            card(5, "Forest background", Category::Background, &["forest", "scenery"], 1.0, 7),
            card(6, "Watercolor fox", Category::Style, &["watercolor", "fox"], 0.9, 1),
            card(7, "Deep forest", Category::Background, &["forest", "tree"], 0.5, 3),
            card(8, "Pine forest", Category::Background, &["forest", "pine"], 0.5, 4),
            card(9, "Misty forest", Category::Background, &["forest", "mist"], 0.5, 2),
            card(10, "Ink painting", Category::Style, &["ink", "painting"], 0.8, 2),
            card(11, "Digital painting", Category::Style, &["digital", "painting"], 0.8, 2),
        ])
        .unwrap()
    }

    fn req(prompt: &str) -> ComposeRequest {
        ComposeRequest { num_images: 8, seed: 3, ..ComposeRequest::new(prompt) }
    }

    #[test]
    fn composes_with_rules() {
        let ix = index();
        let r = ix.compose(&req("a watercolor painting of a fox in a forest")).unwrap();
        let names: Vec<_> = r.topics.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["watercolor painting", "fox", "forest"]);
        let ids: Vec<Vec<u64>> = r.topics.iter().map(|t| t.adapters.iter().map(|a| a.id).collect()).collect();
        let all: Vec<u64> = ids.concat();
        assert!(!all.contains(&3), "oil painting is a foreign concept: {ids:?}");
        let styles = r.topics.iter().flat_map(|t| &t.adapters).filter(|a| a.category == Category::Style).count();
        assert!(styles <= 2 && ids.iter().all(|t| t.len() <= 3), "{ids:?}");
        let mut dedup = all.clone();
        dedup.sort();
        dedup.dedup();
        assert_eq!(dedup.len(), all.len());
        assert_eq!(ids[2].len(), 3);
        assert!(r.topics[0].adapters[0].why.contains(&"watercolor".to_string()));
        assert!(r.timings_us.is_none());
        for img in &r.images {
            assert!(!img.active.is_empty());
            assert_eq!(img.prompt, "a watercolor painting of a fox in a forest, realistic, best quality");
            for t in &r.topics {
                let on: Vec<_> = t.adapters.iter().filter(|a| img.mask[&a.id]).collect();
                for a in &on {
                    let act = img.active.iter().find(|x| x.id == a.id).unwrap();
                    assert_eq!(act.weight, a.weight * 0.8 / on.len() as f32);
                    assert!(img.a1111.contains(&format!(":{:.2}>", act.weight)));
                }
            }
        }
        assert!(r.images[0].a1111.contains("<lora:"));
    }

    #[test]
    fn seeds_modes_and_timings() {
        let ix = index();
        let a = ix.compose(&req("watercolor fox, forest")).unwrap();
        assert_eq!(a, ix.compose(&req("watercolor fox, forest")).unwrap());
        let b = ix.compose(&ComposeRequest { seed: 4, ..req("watercolor fox, forest") }).unwrap();
        assert_ne!(a.images, b.images);
        let mut all = req("fox in a forest");
        all.options.mask_mode = MaskMode::All;
        let r = ix.compose(&all).unwrap();
        assert!(r.images.iter().all(|i| i.mask.values().all(|b| *b)));
        let t = std::cell::Cell::new(0.0);
        let clock = || {
            t.set(t.get() + 0.5);
            t.get()
        };
        let r = ix.compose_timed(&all, &clock).unwrap();
        assert_eq!(r.timings_us.map(|t| (t.topics, t.total)), Some((500, 2000)));
        let none = ix.compose(&req("zebra on the moon")).unwrap();
        assert!(none.topics.iter().all(|t| t.adapters.is_empty()));
        assert!(none.images.iter().all(|i| i.active.is_empty() && i.a1111 == "zebra on the moon, realistic, best quality"));
        let json = serde_json::to_string(&r).unwrap();
        assert_eq!(serde_json::from_str::<ComposeResponse>(&json).unwrap(), r);
    }

    #[test]
    fn validation_codes() {
        let ix = index();
        let code = |f: &dyn Fn(&mut ComposeRequest)| {
            let mut r = ComposeRequest::new("fox");
            f(&mut r);
            ix.compose(&r).unwrap_err().code()
        };
        assert_eq!(code(&|r| r.prompt = " \n\t".into()), "prompt_empty");
        assert_eq!(code(&|r| r.prompt = "x".repeat(100_000)), "prompt_too_long");
        assert_eq!(code(&|r| r.negative_prompt = "é".repeat(10_001)), "negative_prompt_too_long");
        assert_eq!(code(&|r| r.options.debias_suffix = "x".repeat(1001)), "debias_suffix_too_long");
        assert_eq!(code(&|r| r.options.top_k = 0), "top_k_out_of_range");
        assert_eq!(code(&|r| r.options.top_k = 1001), "top_k_out_of_range");
        assert_eq!(code(&|r| r.num_images = 0), "num_images_out_of_range");
        assert_eq!(code(&|r| r.num_images = 65), "num_images_out_of_range");
        assert_eq!(code(&|r| r.options.scale = f32::NAN), "scale_out_of_range");
        assert_eq!(code(&|r| r.options.scale = 2.5), "scale_out_of_range");
        assert_eq!(code(&|r| r.options.max_per_topic = 9), "max_per_topic_out_of_range");
        assert_eq!(code(&|r| r.options.min_coverage = -0.1), "min_coverage_out_of_range");
        assert_eq!(ComposeRequest::from_json(br#"{"prompt":"x","bogus":1}"#).unwrap_err().code(), "invalid_request");
        assert_eq!(ComposeRequest::from_json(br#"{"prompt":"x","options":{"topk":3}}"#).unwrap_err().code(), "invalid_request");
        assert_eq!(ComposeRequest::from_json(b"\xff").unwrap_err().code(), "invalid_request");
        assert_eq!(ComposeRequest::from_json(br#"{"prompt":""}"#).unwrap_err().code(), "prompt_empty");
        let r = ComposeRequest::from_json(br#"{"prompt":"fox","options":{"mask_mode":"one_hot_concepts"}}"#).unwrap();
        assert_eq!((r.num_images, r.seed, r.options.top_k, r.options.mask_mode), (1, 0, 150, MaskMode::OneHotConcepts));
    }

    #[test]
    fn hostile_prompts() {
        let ix = index();
        let r = ix.compose(&req("fox\u{0}\u{1b}[2J <lora:evil:9> forest\r\n")).unwrap();
        assert!(r.images.iter().all(|i| !i.prompt.chars().any(char::is_control) && !i.a1111.chars().any(char::is_control)));
        // user-typed network tags never reach the output: only composed adapters are tagged
        for i in &r.images {
            assert!(!i.prompt.contains("evil") && !i.a1111.contains("evil"));
            assert_eq!(i.a1111.matches("<lora:").count(), i.active.len());
        }
        let r = ix.compose(&req("лиса, 狐狸, Fuchs, fox 🦊, forêt")).unwrap();
        assert!(r.topics.iter().any(|t| t.name == "fox 🦊" || t.name == "fox"));
        for t in &r.topics {
            assert!(t.span[0] < t.span[1] && "лиса, 狐狸, Fuchs, fox 🦊, forêt".get(t.span[0]..t.span[1]) == Some(t.name.as_str()));
        }
        let r = ix.compose(&req("!!! ??? ...")).unwrap();
        assert!(r.topics.is_empty() && r.images.len() == 8 && r.images.iter().all(|i| i.mask.is_empty()));
        let long = "fox forest ".repeat(900);
        assert!(ix.compose(&req(&long)).is_ok());
    }
}
