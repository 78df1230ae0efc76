//! Synthetic catalogs for scale tests and benchmarks (`stylus catalog synth`): any number of cards
//! derived from a real catalog, deterministically from a seed, so a 75K or 1M-adapter index can be
//! built from the 10K Civitai snapshot and its retrieval statistics stay close to the real ones.
//!
//! Card `i` is a pure function of (sources, seed, i) — random access, nothing accumulated — so a
//! catalog streams card by card in constant memory and any slice of it can be produced alone. Each
//! card takes a *base* source card (category, base model, weight, size, evidence count, most tags and
//! trigger words) and a *donor* of the same category (a word of its name, up to two tags, maybe a
//! trigger word), gets a version suffix now and then, scaled popularity figures, and fresh identity:
//! id [`ID_BASE`]` + i`, sha256 from (seed, i), its own file name and `example.invalid` URLs (never a
//! real download). Descriptions are left out. When every source passes a [`crate::Policy`], every
//! synthetic card passes it too: names, tags and trigger words are made of whole words, tags and
//! trigger words of passing cards, and the flags and evidence are the base card's.

use crate::card::{Card, Category, Stats};
use crate::Error;
use sha2::{Digest, Sha256};

/// Id of synthetic card 0 (far above Civitai's model ids, so a synthetic card never shadows a real one).
pub const ID_BASE: u64 = 1_000_000_000_000;
/// Most tags kept per synthetic card.
const MAX_TAGS: usize = 12;
/// Most trigger words kept per synthetic card.
const MAX_TRIGGERS: usize = 8;
/// Most whitespace-separated words of a synthetic name.
const MAX_NAME_WORDS: usize = 12;

/// A synthetic catalog over source cards (see the module doc).
#[derive(Debug, Clone)]
pub struct Synth {
    sources: Vec<Card>,
    /// Source indices per category (`Category as usize`), for donors.
    by_category: Vec<Vec<u32>>,
    seed: u64,
}

/// splitmix64: a small, well-mixed generator; one stream per synthetic card (the card store's
/// property tests draw from it too).
pub(crate) struct Rng(pub(crate) u64);

impl Rng {
    pub(crate) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in `0..n` (n > 0; the modulo bias is irrelevant here).
    pub(crate) fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    /// True with probability `p`.
    fn chance(&mut self, p: f64) -> bool {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64 <= p
    }
    /// Uniform in `[lo, hi)`.
    fn range(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

impl Synth {
    /// A synthetic catalog over `sources` (descriptions are dropped). Fails on an empty source.
    pub fn new(sources: Vec<Card>, seed: u64) -> Result<Self, Error> {
        if sources.is_empty() {
            return Err(Error::EmptyCatalog("no source cards to derive synthetic cards from".into()));
        }
        let sources: Vec<Card> = sources.into_iter().map(Card::without_description).collect();
        let mut by_category = vec![Vec::new(); Category::ALL.len()];
        for (i, c) in sources.iter().enumerate() {
            by_category[c.category as usize].push(i as u32);
        }
        Ok(Synth { sources, by_category, seed })
    }

    pub fn sources(&self) -> &[Card] {
        &self.sources
    }

    /// Synthetic card `i` (same seed and sources: same card).
    pub fn card(&self, i: u64) -> Card {
        let mut rng = Rng(self.seed ^ i.wrapping_mul(0xD1B5_4A32_D192_ED03));
        rng.next();
        let base = &self.sources[rng.below(self.sources.len())];
        let peers = &self.by_category[base.category as usize];
        let donor = &self.sources[peers[rng.below(peers.len())] as usize];
        let id = ID_BASE + i;

        let mut name_words: Vec<&str> = base.name.split_whitespace().collect();
        let donor_words: Vec<&str> = donor.name.split_whitespace().filter(|w| w.chars().any(char::is_alphanumeric)).collect();
        if !donor_words.is_empty() && rng.chance(0.7) {
            let w = donor_words[rng.below(donor_words.len())];
            if rng.chance(0.5) {
                name_words.insert(0, w);
            } else {
                name_words.push(w);
            }
        }
        name_words.truncate(MAX_NAME_WORDS);
        let mut name = name_words.join(" ");
        if rng.chance(0.5) {
            name.push_str(&format!(" v{}", 1 + rng.below(9)));
        }

        let mut tags = base.tags.clone();
        if !donor.tags.is_empty() {
            for _ in 0..rng.below(3) {
                let t = &donor.tags[rng.below(donor.tags.len())];
                if !tags.iter().any(|x| x.eq_ignore_ascii_case(t)) {
                    tags.push(t.clone());
                }
            }
        }
        tags.truncate(MAX_TAGS);
        let mut trigger_words = base.trigger_words.clone();
        if !donor.trigger_words.is_empty() && rng.chance(0.3) {
            let t = &donor.trigger_words[rng.below(donor.trigger_words.len())];
            if !trigger_words.contains(t) {
                trigger_words.push(t.clone());
            }
        }
        trigger_words.truncate(MAX_TRIGGERS);

        let scale = rng.range(0.05, 1.0);
        let scaled = |x: u64| (x as f64 * scale).round() as u64;
        let stats = Stats {
            downloads: scaled(base.stats.downloads),
            favorites: scaled(base.stats.favorites),
            rating: base.stats.rating,
            rating_count: scaled(base.stats.rating_count),
        };
        let stem = base.file_name.rsplit_once('.').map_or(base.file_name.as_str(), |(s, _)| s);
        let stem = if stem.trim().is_empty() { "lora" } else { stem };
        Card {
            id,
            name,
            category: base.category,
            weight: base.weight,
            tags,
            trigger_words,
            base_model: base.base_model.clone(),
            nsfw: base.nsfw,
            file_name: format!("{stem}_synth{i}.safetensors"),
            download_url: format!("https://example.invalid/stylus-synth/{id}.safetensors"),
            sha256: self.sha256(i),
            size_bytes: base.size_bytes,
            model_page: format!("https://example.invalid/stylus-synth/models/{id}"),
            stats,
            n_example_prompts: base.n_example_prompts,
            // free text is the base card's (it feeds the dense vectors and example postings; published
            // bundles drop it)
            description: base.description.clone(),
            example_prompts: base.example_prompts.clone(),
        }
    }

    /// Cards `0..n`, produced one at a time.
    pub fn cards(&self, n: u64) -> impl Iterator<Item = Card> + '_ {
        (0..n).map(|i| self.card(i))
    }

    /// Upper-case hex sha256 of (seed, i): unique per card, like Civitai's file hashes in form only.
    fn sha256(&self, i: u64) -> String {
        let mut h = Sha256::new();
        h.update(b"stylus-synth");
        h.update(self.seed.to_le_bytes());
        h.update(i.to_le_bytes());
        h.finalize().iter().map(|b| format!("{b:02X}")).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Index, Policy};
    use std::collections::HashSet;

    fn src(id: u64, name: &str, cat: Category, tags: &[&str], trig: &[&str]) -> Card {
        let mut c = Card::new(id, name);
        c.category = cat;
        c.tags = tags.iter().map(|s| s.to_string()).collect();
        c.trigger_words = trig.iter().map(|s| s.to_string()).collect();
        c.base_model = "SD 1.5".into();
        c.n_example_prompts = 2;
        c.stats = Stats { downloads: 1000, favorites: 100, rating: 4.5, rating_count: 10 };
        c.file_name = format!("src{id}.safetensors");
        c.description = Some("text".into());
        c
    }

    fn sources() -> Vec<Card> {
        vec![
            src(1, "Watercolor Style", Category::Style, &["style", "watercolor"], &["wtrcolor"]),
            src(2, "Ink Wash (Sumi-e)", Category::Style, &["style", "ink"], &[]),
            src(3, "Misty Forest", Category::Background, &["forest", "background"], &["mistyforest"]),
            src(4, "Fox Ears", Category::Concept, &["fox", "animal ears"], &["fox ears"]),
            src(5, "Neon City", Category::Background, &["city", "neon"], &[]),
        ]
    }

    #[test]
    fn deterministic_random_access_and_fresh_identity() {
        let s = Synth::new(sources(), 7).unwrap();
        let a: Vec<Card> = s.cards(500).collect();
        assert_eq!(a, Synth::new(sources(), 7).unwrap().cards(500).collect::<Vec<_>>(), "same seed, same cards");
        assert_eq!(s.card(321), a[321], "random access");
        assert_ne!(a, Synth::new(sources(), 8).unwrap().cards(500).collect::<Vec<_>>(), "another seed, other cards");
        let ids: HashSet<u64> = a.iter().map(|c| c.id).collect();
        let shas: HashSet<&str> = a.iter().map(|c| c.sha256.as_str()).collect();
        assert_eq!((ids.len(), shas.len()), (500, 500));
        assert!(a.iter().all(|c| c.id >= ID_BASE && c.sha256.len() == 64 && c.description.is_none()));
        assert!(a.iter().all(|c| c.download_url.starts_with("https://example.invalid/") && c.file_name.ends_with(".safetensors")));
        let names: HashSet<&str> = a.iter().map(|c| c.name.as_str()).collect();
        assert!(names.len() > 20, "names are recombined: {}", names.len());
        assert!(a.iter().any(|c| c.tags.len() > 2), "donor tags join");
        assert_eq!(Synth::new(Vec::new(), 1).unwrap_err().code(), "empty_catalog");
    }

    #[test]
    fn keeps_the_base_category_and_passes_the_policy() {
        let s = Synth::new(sources(), 3).unwrap();
        let p = Policy::default();
        for c in s.cards(300) {
            assert!(p.rejects(&c).is_none(), "{c:?}");
            // tags come from the base and a donor of the same category
            let cat_tags: HashSet<&str> = s.sources().iter().filter(|x| x.category == c.category).flat_map(|x| x.tags.iter().map(String::as_str)).collect();
            assert!(c.tags.iter().all(|t| cat_tags.contains(t.as_str())), "{c:?}");
        }
        let mut cards: Vec<Card> = s.cards(1000).collect();
        cards.extend(sources());
        let ix = Index::build(cards).unwrap();
        assert_eq!(ix.len(), 1005);
        assert!(ix.search("watercolor", 50).iter().filter(|(id, _)| *id >= ID_BASE).count() > 10);
    }
}
