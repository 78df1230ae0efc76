//! End-to-end checks on the real catalog (`shared/data/civitai/civitai_lora_top10k_2023-07.jsonl`) and
//! the reference's COCO silver labels (`shared/data/stylus/coco_rank.csv`): ingest counts, policy
//! counts, composition properties, bundle round-trip, BM25 speed and silver recall. Each test prints
//! its numbers (`cargo test -p stylus-core --test real_catalog -- --nocapture`) and is skipped, with a
//! message, only when the data file is absent.

mod common;
use common::{csv_rows, shared};
use std::collections::{HashMap, HashSet};
use std::sync::OnceLock;
use std::time::Instant;
use stylus_core::{ingest, text, Card, Category, ComposeRequest, Filter, Index, MaskMode, Policy};

/// Outside CI a missing `shared/` skips these tests with a message; in CI (`CI` set) it fails them.
fn absent(path: &std::path::Path) {
    assert!(std::env::var_os("CI").is_none(), "{} is absent, and CI needs it", path.display());
    eprintln!("SKIP: {} is absent", path.display());
}

/// All ingested cards (with descriptions), or None when the catalog is absent.
fn catalog() -> Option<&'static Vec<Card>> {
    static CARDS: OnceLock<Option<Vec<Card>>> = OnceLock::new();
    CARDS
        .get_or_init(|| {
            let path = shared("civitai/civitai_lora_top10k_2023-07.jsonl");
            let Ok(bytes) = std::fs::read(&path) else {
                absent(&path);
                return None;
            };
            let t = Instant::now();
            let (cards, issues) = ingest::civitai_jsonl(&bytes);
            println!("ingest: {} cards, {} issues in {:?}", cards.len(), issues.len(), t.elapsed());
            for i in issues.iter().take(5) {
                println!("  issue line {}: {}", i.line, i.reason);
            }
            Some(cards)
        })
        .as_ref()
}

fn filtered() -> Option<&'static Index> {
    static INDEX: OnceLock<Option<Index>> = OnceLock::new();
    INDEX
        .get_or_init(|| {
            let (cards, report) = Policy::default().apply(catalog()?.clone()).expect("policy keeps cards");
            println!("policy: {report}");
            let t = Instant::now();
            let ix = Index::build(cards).expect("index builds");
            println!("index build: {} cards, {} terms, {} postings in {:?}", ix.len(), ix.lexical().num_terms(), ix.lexical().num_postings(), t.elapsed());
            Some(ix)
        })
        .as_ref()
}

#[test]
fn ingest_refine_filter_counts() {
    let Some(cards) = catalog() else { return };
    assert_eq!(cards.len(), 10_000, "every line of the compact catalog parses");
    let (_, report) = Policy::default().apply(cards.clone()).unwrap();
    println!("policy: {report}");
    let sd1_safe = report.input - report.removed_by(Filter::BaseModel) - report.removed_by(Filter::Nsfw);
    println!("SD 1.x and not NSFW: {sd1_safe}");
    assert_eq!(sd1_safe, 6_981);
    assert_eq!(report.removed_by(Filter::BaseModel), 1_365);
    assert!(report.kept > 2_000 && report.kept < sd1_safe, "{report}");

    let mut cats: HashMap<Category, usize> = HashMap::new();
    let (mut non_default, mut with_desc) = (0, 0);
    for c in cards {
        *cats.entry(c.category).or_default() += 1;
        non_default += (c.weight != 0.8) as usize;
        with_desc += c.description.is_some() as usize;
        assert!((0.1..=1.5).contains(&c.weight) && !c.name.is_empty() && c.model_page.ends_with(&c.id.to_string()));
    }
    let mut cats: Vec<_> = cats.into_iter().collect();
    cats.sort();
    println!("categories: {cats:?}");
    println!("weights other than 0.8: {non_default}; descriptions kept: {with_desc}");
    assert!(non_default > 3_000);
    // Spot checks: explicit <lora:...> weights in example prompts.
    let by_id: HashMap<u64, &Card> = cards.iter().map(|c| (c.id, c)).collect();
    assert_eq!(by_id[&9025].weight, 0.6, "<lora:breastInClass:0.7> in a prompt, <lora:..._v141:0.5> as trigger word");
    assert_eq!(by_id[&58390].weight, 1.0, "Detail Tweaker: <lora:add_detail:1>");
}

fn check_response(ix: &Index, prompt: &str, seed: u64) -> stylus_core::ComposeResponse {
    let req = ComposeRequest { num_images: 8, seed, ..ComposeRequest::new(prompt) };
    let r = ix.compose(&req).unwrap();
    let prompt_terms: HashSet<String> = text::terms(prompt).into_iter().collect();
    assert!(!r.topics.is_empty(), "{prompt}");
    let mut seen = HashSet::new();
    let mut styles = 0;
    for t in &r.topics {
        assert_eq!(&prompt[t.span[0]..t.span[1]], t.name);
        assert!(text::terms(&t.name).iter().all(|w| prompt_terms.contains(w)));
        assert!(t.adapters.len() <= 3);
        for a in &t.adapters {
            assert!(seen.insert(a.id), "adapter {} twice", a.id);
            styles += (a.category == Category::Style) as usize;
            assert!(!a.why.is_empty() && a.why.iter().all(|w| prompt_terms.contains(w)));
            assert_eq!(a.weight, ix.get(a.id).unwrap().weight);
        }
    }
    assert!(styles <= 2);
    for img in &r.images {
        assert!(img.prompt.ends_with(", realistic, best quality"));
        for t in &r.topics {
            let n = t.adapters.iter().filter(|a| img.mask[&a.id]).count();
            for a in t.adapters.iter().filter(|a| img.mask[&a.id]) {
                let act = img.active.iter().find(|x| x.id == a.id).unwrap();
                assert_eq!(act.weight, a.weight * 0.8 / n as f32);
            }
        }
        assert_eq!(img.a1111.matches("<lora:").count(), img.active.len());
    }
    r
}

#[test]
fn compose_real_prompts() {
    let Some(ix) = filtered() else { return };
    for prompt in ["a watercolor painting of a fox in a forest", "cyberpunk city at night, neon lights", "portrait of a woman wearing a kimono"] {
        let t = Instant::now();
        let r = check_response(ix, prompt, 0);
        let dt = t.elapsed();
        println!("\n{prompt:?} ({dt:?})");
        for t in &r.topics {
            let a: Vec<_> = t.adapters.iter().map(|a| format!("{} [{}] {:.1} w{} {:?}", a.name, a.category.as_str(), a.score, a.weight, a.why)).collect();
            println!("  {:?}: {a:?}", t.name);
        }
        println!("  image 0: {}", r.images[0].a1111);
        assert!(r.topics.iter().any(|t| !t.adapters.is_empty()));
        assert_eq!(r, check_response(ix, prompt, 0), "same seed, same response");
        let masks = |r: &stylus_core::ComposeResponse| r.images.iter().map(|i| i.mask.clone()).collect::<Vec<_>>();
        let differing = (1..=10).filter(|s| masks(&check_response(ix, prompt, *s)) != masks(&r)).count();
        assert!(differing >= 8, "{differing} of 10 seeds differ");
    }
    let mut req = ComposeRequest::new("a watercolor painting of a fox in a forest");
    req.options.mask_mode = MaskMode::OneHotConcepts;
    req.num_images = 16;
    assert!(ix.compose(&req).unwrap().images.iter().all(|i| !i.active.is_empty()));
}

#[test]
fn bundle_roundtrip_and_size() {
    let Some(ix) = filtered() else { return };
    let t = Instant::now();
    let bytes = ix.to_bundle();
    let write = t.elapsed();
    let t = Instant::now();
    let back = Index::from_bundle(&bytes).unwrap();
    let load = t.elapsed();
    let header = stylus_core::bundle::header(&bytes).unwrap().0;
    println!("bundle: {} bytes ({} cards JSON, {} postings), write {write:?}, load {load:?}", bytes.len(), header.cards_bytes, header.lexical_bytes);
    let t = Instant::now();
    let rebuilt = Index::build(back.cards().map(|c| c.to_card()).collect()).unwrap();
    println!("rebuild BM25 from bundle cards (no descriptions): {:?}, {} terms", t.elapsed(), rebuilt.lexical().num_terms());
    assert_eq!(back.to_bundle(), bytes, "re-serialization is byte-identical");
    assert_eq!(ix.to_bundle(), bytes, "deterministic");
    for prompt in ["a watercolor painting of a fox in a forest", "cyberpunk city at night, neon lights"] {
        let req = ComposeRequest { num_images: 4, seed: 9, ..ComposeRequest::new(prompt) };
        assert_eq!(ix.compose(&req).unwrap(), back.compose(&req).unwrap());
    }
    let shards = stylus_core::bundle::split(&bytes, 1 << 20).unwrap();
    assert!(shards.len() > 1);
    assert_eq!(stylus_core::bundle::join(&shards).unwrap(), bytes);
}

/// A measurement, not a check (no wall-clock assertions in tests): run it with
/// `cargo test -p stylus-core --release --test real_catalog -- --ignored --nocapture`.
#[test]
#[ignore = "timing report; run explicitly"]
fn bm25_query_speed() {
    let Some(cards) = catalog() else { return };
    let queries = ["a watercolor painting of a fox in a forest", "cyberpunk city at night, neon lights", "portrait of a woman wearing a kimono", "a man riding a horse on the beach at sunset", "anime girl with long hair"];
    let terms: Vec<Vec<String>> = queries.iter().map(|q| text::terms(q)).collect();
    let time = |ix: &Index, label: &str| {
        let n = 200;
        let t = Instant::now();
        for i in 0..n {
            std::hint::black_box(ix.lexical().search(&terms[i % terms.len()], 150));
        }
        let per = t.elapsed() / n as u32;
        let req = ComposeRequest::new(queries[0]);
        let t = Instant::now();
        for _ in 0..20 {
            std::hint::black_box(ix.compose(&req).unwrap());
        }
        println!("{label}: {} cards, BM25 top-150 query {per:?}, full compose {:?}", ix.len(), t.elapsed() / 20);
        per
    };
    let all = Index::build(cards.clone()).unwrap();
    let per10k = time(&all, "10K with descriptions");
    let bare = Index::build(cards.iter().map(|c| c.clone().without_description()).collect()).unwrap();
    time(&bare, "10K without descriptions");
    let big: Vec<Card> = (0..8u64)
        .flat_map(|k| cards.iter().take(9_400).map(move |c| Card { id: c.id + k * 10_000_000, ..c.clone().without_description() }))
        .collect();
    let big = Index::build(big).unwrap();
    time(&big, "75K synthetic, no descriptions");
    println!("10K query: {per10k:?}");
}

/// The ids inside the lists of a Python-literal dict `{'topic': [1, 2], ...}`.
fn silver_ids(dict: &str) -> Vec<u64> {
    let mut out = Vec::new();
    for part in dict.split('[').skip(1) {
        let list = part.split(']').next().unwrap_or("");
        out.extend(list.split(',').filter_map(|x| x.trim().parse::<u64>().ok()));
    }
    out
}

#[test]
fn coco_silver_recall() {
    let Some(ix) = filtered() else { return };
    let path = shared("stylus/coco_rank.csv");
    let Ok(text) = std::fs::read_to_string(&path) else {
        absent(&path);
        return;
    };
    let rows = csv_rows(&text);
    let col = rows[0].iter().position(|h| h == "ranked_adapters").unwrap();
    let cap = rows[0].iter().position(|h| h == "caption").unwrap();
    let in_full: HashSet<u64> = catalog().unwrap().iter().map(|c| c.id).collect();
    let (mut prompts, mut prompts_full, mut total, mut hit20, mut hit150) = (0, 0, 0, 0, 0);
    let t = Instant::now();
    for row in &rows[1..] {
        let (Some(caption), Some(dict)) = (row.get(cap), row.get(col)) else { continue };
        let ids = silver_ids(dict);
        prompts_full += ids.iter().any(|i| in_full.contains(i)) as usize;
        let gold: HashSet<u64> = ids.into_iter().filter(|i| ix.doc(*i).is_some()).collect();
        if gold.is_empty() {
            continue;
        }
        prompts += 1;
        total += gold.len();
        let got = ix.search(caption, 150);
        hit20 += got.iter().take(20).filter(|(id, _)| gold.contains(id)).count();
        hit150 += got.iter().filter(|(id, _)| gold.contains(id)).count();
    }
    let (r20, r150) = (hit20 as f64 / total as f64, hit150 as f64 / total as f64);
    println!("COCO silver: {} captions, {prompts_full} with an id in the 10K catalog, {prompts} with an id in the filtered index ({total} ids)", rows.len() - 1);
    println!("BM25 recall@20 = {r20:.3}, recall@150 = {r150:.3} ({:?})", t.elapsed());
    assert!(prompts > 500, "silver prompts found: {prompts}");
    // Regression guards just under the measured values (0.655 / 0.779 when written).
    assert!(r20 >= 0.62 && r150 >= 0.75, "recall@20 {r20}, recall@150 {r150}");
}
