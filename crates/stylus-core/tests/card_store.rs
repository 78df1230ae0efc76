//! The compact card store ([`stylus_core::store`]) over real and synthetic cards: every field of every
//! card of the shared Civitai catalog (descriptions, example prompts and NSFW cards included), of
//! cards recombined from it at random, and of `stylus_core::synth` cards round-trips exactly, through
//! the store and through a bundle; prints bytes per card against the JSON the v2 bundles held.

#[allow(dead_code)]
mod common;
use common::shared;
use stylus_core::synth::Synth;
use stylus_core::{ingest, Card, CardStore, Index, Policy};

/// Field-by-field equality, floats by bits.
fn same(a: &Card, b: &Card) -> bool {
    let bits = |c: &Card| (c.weight.to_bits(), c.stats.rating.to_bits());
    let zero = |c: &Card| Card { weight: 0.0, stats: stylus_core::Stats { rating: 0.0, ..c.stats }, ..c.clone() };
    zero(a) == zero(b) && bits(a) == bits(b)
}

fn catalog() -> Option<Vec<Card>> {
    let path = shared("civitai/civitai_lora_top10k_2023-07.jsonl");
    let Ok(bytes) = std::fs::read(&path) else {
        assert!(std::env::var_os("CI").is_none(), "{} is absent, and CI needs it", path.display());
        eprintln!("SKIP: {} is absent", path.display());
        return None;
    };
    let (mut cards, _) = ingest::civitai_jsonl(&bytes);
    let mut seen = std::collections::HashSet::new();
    cards.retain(|c| seen.insert(c.id));
    Some(cards)
}

/// Encodes, reads back and compares every card; returns the section's bytes.
fn round_trip(what: &str, cards: &[Card]) -> usize {
    let store = CardStore::build(cards).unwrap();
    assert_eq!(store.len(), cards.len());
    for (d, c) in cards.iter().enumerate() {
        let back = store.card(d as u32).to_card();
        assert!(same(&back, c), "{what}: card {d} differs:\n{back:?}\n{c:?}");
        assert_eq!(store.doc(c.id), Some(d as u32));
    }
    let json = serde_json::to_vec(cards).unwrap().len();
    let n = store.bytes().len();
    println!("{what}: {} cards, {n} bytes ({:.1} per card; JSON {:.1} per card)", cards.len(), n as f64 / cards.len() as f64, json as f64 / cards.len() as f64);
    assert_eq!(CardStore::encode(cards), store.bytes(), "{what}: deterministic");
    n
}

#[test]
fn real_catalog_round_trips_exactly() {
    let Some(cards) = catalog() else { return };
    assert!(cards.len() > 9_000);
    assert!(cards.iter().any(|c| c.description.is_some()) && cards.iter().any(|c| !c.example_prompts.is_empty()) && cards.iter().any(|c| c.nsfw));
    round_trip("real catalog, free text included", &cards);
    let bare: Vec<Card> = cards.iter().map(|c| c.clone().without_description()).collect();
    let bytes = round_trip("real catalog, factual fields", &bare);
    assert!(bytes < cards.len() * 220, "{bytes} bytes");
    // through an index and its bundles
    let (kept, _) = Policy::default().apply(cards).unwrap();
    let ix = Index::build(kept.clone()).unwrap();
    let full = Index::from_bundle(&ix.to_bundle_with_descriptions()).unwrap();
    assert!(full.cards().zip(&kept).all(|(v, c)| same(&v.to_card(), c)));
    let published = Index::from_bundle(&ix.to_bundle()).unwrap();
    assert!(published.cards().zip(&kept).all(|(v, c)| same(&v.to_card(), &c.clone().without_description())));
    for c in &kept {
        assert!(same(&published.get(c.id).unwrap(), &c.clone().without_description()));
    }
}

#[test]
fn recombined_real_cards_round_trip_exactly() {
    let Some(cards) = catalog() else { return };
    // property-style: each card takes each field from a pseudo-random card of the catalog
    let mut s = 42u64;
    let mut pick = || {
        s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        &cards[(s >> 33) as usize % cards.len()]
    };
    let mixed: Vec<Card> = (0..5_000u64)
        .map(|i| Card {
            id: if i % 3 == 0 { pick().id } else { u64::MAX - i * 7919 },
            name: pick().name.clone(),
            category: pick().category,
            weight: pick().weight,
            tags: pick().tags.clone(),
            trigger_words: pick().trigger_words.clone(),
            base_model: pick().base_model.clone(),
            nsfw: pick().nsfw,
            file_name: pick().file_name.clone(),
            download_url: pick().download_url.clone(),
            sha256: if i % 5 == 0 { pick().sha256.to_ascii_lowercase() } else { pick().sha256.clone() },
            size_bytes: pick().size_bytes,
            model_page: pick().model_page.clone(),
            stats: pick().stats,
            n_example_prompts: pick().n_example_prompts,
            description: pick().description.clone(),
            example_prompts: pick().example_prompts.clone(),
        })
        .collect();
    let mut seen = std::collections::HashSet::new();
    let mixed: Vec<Card> = mixed.into_iter().filter(|c| seen.insert(c.id)).collect();
    round_trip("recombined real cards", &mixed);
}

#[test]
fn synthetic_cards_round_trip_exactly() {
    let Some(cards) = catalog() else { return };
    let (kept, _) = Policy::default().apply(cards).unwrap();
    let synth = Synth::new(kept, 1).unwrap();
    let cards: Vec<Card> = synth.cards(20_000).collect();
    round_trip("synthetic (seed 1), free text included", &cards);
    let bare: Vec<Card> = cards.into_iter().map(Card::without_description).collect();
    let bytes = round_trip("synthetic (seed 1), published", &bare);
    // the budget: a 75K bundle of at most 40 MB with ~30 MB of postings and vectors
    assert!(bytes as f64 / bare.len() as f64 <= 133.0, "{bytes} bytes for {} cards", bare.len());
}
