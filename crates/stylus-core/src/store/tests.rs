//! Unit tests of the card store: exact round trips of odd cards, lookups, hot accessors, and checked
//! refusal (never a panic) of truncated and bit-flipped encodings.

use super::*;

use crate::synth::Rng;

/// Property-style draws on the synthetic catalog's generator.
trait Pick {
    fn pick<'a>(&mut self, xs: &[&'a str]) -> &'a str;
}

impl Pick for Rng {
    fn pick<'a>(&mut self, xs: &[&'a str]) -> &'a str {
        xs[self.below(xs.len())]
    }
}

/// Cards with every field's edge cases: empty and odd strings, both hex cases, URLs that do and do
/// not follow a template, huge and special numbers.
pub(crate) fn odd_cards(n: usize, seed: u64) -> Vec<Card> {
    let mut r = Rng(seed);
    let words = ["", "fox", "Fox Ears", "狐狸 🦊", "a.b", "0", "007", "x\u{0}y", "https://civitai.com/models/", "long ".repeat(40).leak()];
    let urls = [
        "",
        "https://civitai.com/api/download/models/62833",
        "https://civitai.com/api/download/models/0",
        "https://civitai.com/api/download/models/0062833",
        "https://example.invalid/a/1.safetensors",
        "no digits here",
        "https://x/99999999999999999999999",
        "9",
    ];
    (0..n)
        .map(|i| {
            let id = match r.next() % 4 {
                0 => i as u64,
                1 => u64::MAX - i as u64,
                2 => 1_000_000_000_000 + (r.next() % 1000),
                _ => r.next(),
            };
            let mut c = Card::new(id, r.pick(&words));
            c.category = Category::ALL[(r.next() % 8) as usize];
            c.weight = [0.8, 1.5, 0.1, -0.0, f32::NAN, 1e-7, 3.3333333, f32::MAX][(r.next() % 8) as usize];
            c.tags = (0..r.next() % 5).map(|_| r.pick(&words).to_string()).collect();
            c.trigger_words = (0..r.next() % 3).map(|_| r.pick(&words).to_string()).collect();
            c.base_model = r.pick(&["SD 1.5", "", "SDXL 1.0"]).into();
            c.nsfw = r.next().is_multiple_of(2);
            c.file_name = r.pick(&["", "add_detail.safetensors", ".safetensors", "noext", "a.b.c", "x."]).into();
            c.download_url = r.pick(&urls).into();
            c.model_page = match r.next() % 3 {
                0 => format!("https://civitai.com/models/{id}"),
                1 => r.pick(&urls).into(),
                _ => String::new(),
            };
            let hex: String = (0..32).map(|_| format!("{:02X}", r.next() as u8)).collect();
            c.sha256 = match r.next() % 5 {
                0 => hex,
                1 => hex.to_ascii_lowercase(),
                2 => String::new(),
                3 => "ABC".into(),
                _ => format!("{}g", &hex[..63]),
            };
            c.size_bytes = [0, 37861176, u64::MAX][(r.next() % 3) as usize];
            c.stats = Stats {
                downloads: (r.next() % 3).wrapping_mul(r.next()),
                favorites: r.next() % 100_000,
                rating: [0.0, 4.92, 5.0, 4.123457][(r.next() % 4) as usize],
                rating_count: r.next() % 7,
            };
            c.n_example_prompts = [0, 3, u32::MAX][(r.next() % 3) as usize];
            c.description = [None, Some(String::new()), Some("soft washes".into())][(r.next() % 3) as usize].clone();
            c.example_prompts = (0..r.next() % 3).map(|_| r.pick(&words).to_string()).collect();
            c
        })
        .collect()
}

/// Field-by-field equality with floats compared by bits (NaN weights included).
pub(crate) fn same(a: &Card, b: &Card) -> bool {
    let bits = |c: &Card| (c.weight.to_bits(), c.stats.rating.to_bits());
    let mut a2 = a.clone();
    let mut b2 = b.clone();
    (a2.weight, a2.stats.rating, b2.weight, b2.stats.rating) = (0.0, 0.0, 0.0, 0.0);
    a2 == b2 && bits(a) == bits(b)
}

fn dedup(mut cards: Vec<Card>) -> Vec<Card> {
    let mut seen = std::collections::HashSet::new();
    cards.retain(|c| seen.insert(c.id));
    cards
}

#[test]
fn odd_cards_round_trip_exactly() {
    for seed in 0..20 {
        let cards = dedup(odd_cards(300, seed));
        let store = CardStore::build(&cards).unwrap();
        assert_eq!(store.len(), cards.len());
        for (d, c) in cards.iter().enumerate() {
            let d = d as u32;
            let v = store.card(d);
            assert!(same(&v.to_card(), c), "seed {seed} card {d}:\n{:?}\n{c:?}", v.to_card());
            assert_eq!((store.id(d), store.doc(c.id)), (c.id, Some(d)));
            assert_eq!((store.category(d), store.nsfw(d), store.downloads(d)), (c.category, c.nsfw, c.stats.downloads));
            assert_eq!(store.weight(d).to_bits(), c.weight.to_bits());
            assert_eq!(v.a1111_name(), c.a1111_name());
            assert!(v.tags().eq(c.tags.iter().map(String::as_str)));
        }
        let again = CardStore::read(store.bytes().to_vec()).unwrap();
        assert_eq!(again.bytes(), CardStore::encode(&cards), "same cards, same bytes");
        assert!(again.get(12345).is_none() || cards.iter().any(|c| c.id == 12345));
        let stripped = CardStore::read(store.encode_without_free_text()).unwrap();
        assert!(!stripped.has_free_text());
        assert!(stripped.iter().zip(&cards).all(|(v, c)| same(&v.to_card(), &c.clone().without_description())));
    }
}

#[test]
fn standard_urls_and_hashes_take_a_few_bytes() {
    let cards: Vec<Card> = (0..100u64)
        .map(|i| {
            let mut c = Card::new(58390 + i, "x");
            c.download_url = format!("https://civitai.com/api/download/models/{}", 62833 + 7 * i);
            c.sha256 = "7C6BAD76".repeat(8);
            c
        })
        .collect();
    let bytes = CardStore::encode(&cards);
    let store = CardStore::read(bytes.clone()).unwrap();
    assert_eq!(store.templates.len(), 2, "model page and download URL templates");
    // head 1 + numbers 9 (weight 1, rating 1, …) + sha 32 + name 2 + stem 1 + ext 1 + base 1 + lists 2 + URLs 1 + 4
    let per_card = (store.recs[100] - store.recs[0]) as f64 / 100.0;
    assert!(per_card <= 55.0, "{per_card} bytes per card");
    assert_eq!(store.card(3).model_page(), "https://civitai.com/models/58393");
    assert_eq!(store.card(3).download_url(), "https://civitai.com/api/download/models/62854");
    assert_eq!(store.card(3).sha256(), "7C6BAD76".repeat(8));
    assert!(store.order.is_empty(), "ascending ids need no permutation");
}

#[test]
fn ids_in_any_order_and_duplicates() {
    let cards: Vec<Card> = [9u64, 3, u64::MAX, 0, 7].iter().map(|&i| Card::new(i, format!("c{i}"))).collect();
    let store = CardStore::build(&cards).unwrap();
    for (d, c) in cards.iter().enumerate() {
        assert_eq!(store.doc(c.id), Some(d as u32));
    }
    assert_eq!((store.doc(4), store.doc(10)), (None, None));
    let dup = [Card::new(1, "a"), Card::new(1, "b")];
    assert_eq!(CardStore::build(&dup).unwrap_err().code(), "duplicate_card");
    let err = CardStore::read(CardStore::encode(&dup)).unwrap_err();
    assert!(err.contains("card id 1 appears twice"), "{err}");
    assert!(CardStore::build(&[]).unwrap().is_empty());
}

#[test]
fn truncated_and_flipped_encodings_are_refused_without_panics() {
    let cards = dedup(odd_cards(40, 7));
    let bytes = CardStore::encode(&cards);
    for cut in 0..bytes.len() {
        assert!(CardStore::read(bytes[..cut].to_vec()).is_err(), "cut at {cut}");
    }
    let mut extra = bytes.clone();
    extra.push(0);
    assert!(CardStore::read(extra).unwrap_err().contains("after the last card"));
    let mut v = bytes.clone();
    v[0] = 2;
    assert!(CardStore::read(v).unwrap_err().contains("format 2"));
    let (mut refused, mut decoded) = (0, 0);
    for i in 0..bytes.len() {
        for bit in [0, 3, 7] {
            let mut v = bytes.clone();
            v[i] ^= 1 << bit;
            match CardStore::read(v) {
                Err(e) => {
                    assert!(!e.is_empty());
                    refused += 1;
                }
                // a flip may still be a valid store: every card must decode
                Ok(s) => decoded += s.iter().map(|c| c.to_card().tags.len() + 1).sum::<usize>(),
            }
        }
    }
    assert!(refused > bytes.len(), "{refused} refused, {decoded} cards decoded");
}
