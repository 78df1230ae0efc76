//! Agreement of the local composer with the reference composer's COCO silver labels
//! (`shared/data/stylus/coco_rank.csv`, Stylus, stylus-diffusion/stylus, MIT) over indexes built from
//! the real catalog (`shared/data/civitai/civitai_lora_top10k_2023-07.jsonl`) with the default policy:
//! topic agreement, adapter agreement, and the same figures for trivial baselines. A measurement, not
//! a check: it prints a Markdown section for BENCHMARKS.md (between `<!-- coco_agreement:begin -->`
//! and `<!-- coco_agreement:end -->`) and asserts only that the data was read. Run it with
//! `cargo test -p stylus-core --release --test coco_agreement -- --ignored --nocapture`.
//!
//! Definitions (every string is reduced to its set of terms, [`text::terms`]: lowercase, stopwords
//! dropped, plurals stemmed):
//! - two topics *match* when the Jaccard index of their term sets is at least 0.5 (*exact*: equal
//!   sets). Topic precision = share of our topics matching some reference topic, recall = share of
//!   reference topics matched by some topic of ours, both pooled over the prompts whose reference
//!   answer has at least one topic; F1 their harmonic mean;
//! - *gold* adapters of a prompt = the reference's chosen ids that are in our filtered index; only
//!   prompts with a gold id count. Adapter precision = Σ|ours ∩ gold| / Σ|ours|, recall =
//!   Σ|ours ∩ gold| / Σ|gold| (pooled), Jaccard = mean over prompts of |ours ∩ gold| / |ours ∪ gold|,
//!   hit rate = share of prompts with at least one common id.

mod common;
use common::{csv_rows, shared};
use std::collections::HashSet;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Instant;
use stylus_core::{ingest, text, ComposeRequest, Index, Policy};

/// A caption and the reference's answer for it: (topic, chosen ids) in the order written.
type Silver = (String, Vec<(String, Vec<u64>)>);

/// Parses the Python-literal dict `{'topic': [1, 2], "it's": []}`; None when malformed or empty text.
fn silver(dict: &str) -> Option<Vec<(String, Vec<u64>)>> {
    let mut c = dict.trim().chars().peekable();
    let skip_ws = |c: &mut std::iter::Peekable<std::str::Chars>| {
        while c.peek().is_some_and(|x| x.is_whitespace()) {
            c.next();
        }
    };
    let mut out = Vec::new();
    (c.next()? == '{').then_some(())?;
    loop {
        skip_ws(&mut c);
        match c.next()? {
            '}' => return Some(out),
            ',' => continue,
            q @ ('\'' | '"') => {
                let mut key = String::new();
                loop {
                    match c.next()? {
                        '\\' => key.push(c.next()?),
                        x if x == q => break,
                        x => key.push(x),
                    }
                }
                skip_ws(&mut c);
                (c.next()? == ':').then_some(())?;
                skip_ws(&mut c);
                (c.next()? == '[').then_some(())?;
                let mut list = String::new();
                loop {
                    match c.next()? {
                        ']' => break,
                        x => list.push(x),
                    }
                }
                let ids: Option<Vec<u64>> = list.split(',').map(str::trim).filter(|x| !x.is_empty()).map(|x| x.parse().ok()).collect();
                out.push((key, ids?));
            }
            _ => return None,
        }
    }
}

fn term_set(s: &str) -> HashSet<String> {
    text::terms(s).into_iter().collect()
}

fn jaccard<T: Eq + std::hash::Hash>(a: &HashSet<T>, b: &HashSet<T>) -> f64 {
    let u = a.union(b).count();
    if u == 0 {
        0.0
    } else {
        a.intersection(b).count() as f64 / u as f64
    }
}

/// Pooled topic agreement: (matched ours, ours, matched reference, reference) at a Jaccard threshold.
#[derive(Default, Clone, Copy)]
struct TopicCounts {
    ours_matched: usize,
    ours: usize,
    ref_matched: usize,
    refs: usize,
}

impl TopicCounts {
    fn add(&mut self, ours: &[HashSet<String>], refs: &[HashSet<String>], min: f64) {
        let m = |a: &HashSet<String>, bs: &[HashSet<String>]| bs.iter().any(|b| jaccard(a, b) >= min);
        self.ours += ours.len();
        self.refs += refs.len();
        self.ours_matched += ours.iter().filter(|a| m(a, refs)).count();
        self.ref_matched += refs.iter().filter(|b| m(b, ours)).count();
    }

    fn row(&self, label: &str) -> String {
        let p = self.ours_matched as f64 / self.ours.max(1) as f64;
        let r = self.ref_matched as f64 / self.refs.max(1) as f64;
        let f = if p + r > 0.0 { 2.0 * p * r / (p + r) } else { 0.0 };
        format!("| {label} | {p:.3} | {r:.3} | **{f:.3}** | {} |", self.ours)
    }
}

/// Pooled adapter agreement over prompts with gold ids.
#[derive(Default, Clone, Copy)]
struct AdapterCounts {
    prompts: usize,
    common: usize,
    ours: usize,
    gold: usize,
    jaccard: f64,
    hits: usize,
    empty: usize,
}

impl AdapterCounts {
    fn add(&mut self, ours: &HashSet<u64>, gold: &HashSet<u64>) {
        let common = ours.intersection(gold).count();
        self.prompts += 1;
        self.common += common;
        self.ours += ours.len();
        self.gold += gold.len();
        self.jaccard += jaccard(ours, gold);
        self.hits += (common > 0) as usize;
        self.empty += ours.is_empty() as usize;
    }

    fn row(&self, label: &str) -> String {
        let n = self.prompts.max(1) as f64;
        format!(
            "| {label} | {:.3} | {:.3} | {:.3} | **{:.3}** | {:.2} | {:.3} |",
            self.common as f64 / self.ours.max(1) as f64,
            self.common as f64 / self.gold.max(1) as f64,
            self.jaccard / n,
            self.hits as f64 / n,
            self.ours as f64 / n,
            self.empty as f64 / n
        )
    }
}

struct Measured {
    topics: [TopicCounts; 2],
    adapters: AdapterCounts,
    /// The local composer with `max_per_topic` 1 (the reference usually picks 0–1 per topic).
    one_per_topic: AdapterCounts,
    bm25_ref_k: AdapterCounts,
    bm25_our_k: AdapterCounts,
}

/// Composes every prompt over `ix` and compares with the silver labels.
fn measure(ix: &Index, rows: &[Silver]) -> Measured {
    let mut m = Measured {
        topics: [TopicCounts::default(); 2],
        adapters: Default::default(),
        one_per_topic: Default::default(),
        bm25_ref_k: Default::default(),
        bm25_our_k: Default::default(),
    };
    for (caption, dict) in rows {
        let Ok(res) = ix.compose(&ComposeRequest::new(caption.as_str())) else { continue };
        let refs: Vec<HashSet<String>> = dict.iter().map(|(t, _)| term_set(t)).filter(|s| !s.is_empty()).collect();
        if !refs.is_empty() {
            let ours: Vec<HashSet<String>> = res.topics.iter().map(|t| term_set(&t.name)).filter(|s| !s.is_empty()).collect();
            m.topics[0].add(&ours, &refs, 0.5);
            m.topics[1].add(&ours, &refs, 1.0);
        }
        let all_ref: HashSet<u64> = dict.iter().flat_map(|(_, ids)| ids.iter().copied()).collect();
        let gold: HashSet<u64> = all_ref.iter().copied().filter(|id| ix.doc(*id).is_some()).collect();
        if gold.is_empty() {
            continue;
        }
        let ours: HashSet<u64> = res.topics.iter().flat_map(|t| t.adapters.iter().map(|a| a.id)).collect();
        m.adapters.add(&ours, &gold);
        let mut one = ComposeRequest::new(caption.as_str());
        one.options.max_per_topic = 1;
        if let Ok(r) = ix.compose(&one) {
            m.one_per_topic.add(&r.topics.iter().flat_map(|t| t.adapters.iter().map(|a| a.id)).collect(), &gold);
        }
        let top = |k: usize| -> HashSet<u64> {
            if k == 0 {
                HashSet::new()
            } else {
                ix.search(caption, k).into_iter().map(|h| h.0).collect()
            }
        };
        m.bm25_ref_k.add(&top(all_ref.len()), &gold);
        m.bm25_our_k.add(&top(ours.len()), &gold);
    }
    m
}

/// Topic agreement of a trivial splitter (each prompt term a topic) for context.
fn word_baseline(rows: &[Silver]) -> [TopicCounts; 2] {
    let mut t = [TopicCounts::default(); 2];
    for (caption, dict) in rows {
        let refs: Vec<HashSet<String>> = dict.iter().map(|(t, _)| term_set(t)).filter(|s| !s.is_empty()).collect();
        if refs.is_empty() {
            continue;
        }
        let words: HashSet<String> = term_set(caption);
        let ours: Vec<HashSet<String>> = words.into_iter().map(|w| HashSet::from([w])).collect();
        t[0].add(&ours, &refs, 0.5);
        t[1].add(&ours, &refs, 1.0);
    }
    t
}

#[test]
#[ignore = "measurement over 10,000 prompts; run explicitly in release mode"]
fn coco_agreement() {
    let (cat_path, csv_path) = (shared("civitai/civitai_lora_top10k_2023-07.jsonl"), shared("stylus/coco_rank.csv"));
    let (Ok(catalog), Ok(csv)) = (std::fs::read(&cat_path), std::fs::read_to_string(&csv_path)) else {
        eprintln!("SKIP: {} or {} is absent", cat_path.display(), csv_path.display());
        return;
    };
    let (cards, _) = ingest::civitai_jsonl(&catalog);
    let (mut cards, _) = Policy::default().apply(cards).expect("policy keeps cards");
    // As `stylus index build` does (the demo index is built that way, without descriptions).
    cards.sort_by_key(|c| c.id);
    cards.dedup_by_key(|c| c.id);
    let with_desc = Index::build(cards.clone()).expect("index builds");
    let demo = Index::build(cards.into_iter().map(|c| c.without_description()).collect()).expect("index builds");
    let committed = std::fs::read(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../data/demo/index.stylusix")).ok();
    let same_as_demo = committed.as_deref() == Some(demo.to_bundle().as_slice());

    let table = csv_rows(&csv);
    let header = &table[0];
    let (cap, col) = (header.iter().position(|h| h == "caption").unwrap(), header.iter().position(|h| h == "ranked_adapters").unwrap());
    let mut rows = Vec::new();
    let mut malformed = 0;
    for r in &table[1..] {
        match (r.get(cap), r.get(col).and_then(|d| silver(d))) {
            (Some(c), Some(d)) => rows.push((c.clone(), d)),
            _ => malformed += 1,
        }
    }
    assert!(rows.len() > 9_000, "parsed {} rows", rows.len());
    let with_topics = rows.iter().filter(|r| r.1.iter().any(|(t, _)| !term_set(t).is_empty())).count();

    let mut out = String::new();
    let _ = writeln!(out, "<!-- coco_agreement:begin -->\n## Composer agreement with the COCO silver labels (issue #4)\n");
    let _ = writeln!(
        out,
        "The local composer (default options: top-150 BM25 candidates, min_coverage 0.5, ≤ 3 per topic, ≤ 2 styles) on all \
{} COCO val2014 captions of `shared/data/stylus/coco_rank.csv` ({malformed} rows with an empty or malformed answer skipped), \
compared with the reference composer's (GPT-4o / Gemini) topics and chosen adapters there. Silver labels, not ground \
truth: the reference chose from its own, larger catalog. Definitions are in `crates/stylus-core/tests/coco_agreement.rs`; \
in short, strings become term sets (lowercase, stopwords out, plurals stemmed), two topics match when their Jaccard \
index is ≥ 0.5 (*exact*: equal term sets), and an adapter's *gold* ids are the reference's chosen ids present in our \
filtered index. Reproduce: `cargo test -p stylus-core --release --test coco_agreement -- --ignored --nocapture` \
(prints this section).\n",
        rows.len()
    );
    let _ = writeln!(out, "**Topics** ({with_topics} captions whose reference answer has a topic; pooled over topics):\n");
    let _ = writeln!(out, "| splitter | precision | recall | F1 | our topics |\n|---|---|---|---|---|");
    let t = Instant::now();
    let m_demo = measure(&demo, &rows);
    let dt_demo = t.elapsed();
    let t = Instant::now();
    let m_desc = measure(&with_desc, &rows);
    let dt_desc = t.elapsed();
    let wb = word_baseline(&rows);
    let _ = writeln!(out, "{}", m_demo.topics[0].row("local composer (`topics.rs`), Jaccard ≥ 0.5"));
    let _ = writeln!(out, "{}", wb[0].row("baseline: every content word a topic, Jaccard ≥ 0.5"));
    let _ = writeln!(out, "{}", m_demo.topics[1].row("local composer, exact"));
    let _ = writeln!(out, "{}", wb[1].row("baseline: every content word a topic, exact"));
    let _ = writeln!(out, "\nReference topics in all: {}.\n", m_demo.topics[0].refs);
    for (label, m) in [
        (
            format!(
                "demo index (built like `data/demo`: default policy, no descriptions; {} adapters{})",
                demo.len(),
                if same_as_demo { ", byte-identical to it" } else { "" }
            ),
            &m_demo,
        ),
        (format!("catalog index with descriptions ({} adapters, as `tests/real_catalog.rs`)", with_desc.len()), &m_desc),
    ] {
        let _ = writeln!(out, "**Adapters**, {label}: {} captions with a gold id ({} gold ids):\n", m.adapters.prompts, m.adapters.gold);
        let _ = writeln!(out, "| composer | precision | recall | Jaccard | ≥ 1 common | chosen / caption | none chosen |\n|---|---|---|---|---|---|---|");
        let _ = writeln!(out, "{}", m.adapters.row("local composer"));
        let _ = writeln!(out, "{}", m.one_per_topic.row("local composer, `max_per_topic` 1"));
        let _ = writeln!(out, "{}", m.bm25_ref_k.row("baseline: BM25 top-k of the caption, k = reference's count"));
        let _ = writeln!(out, "{}", m.bm25_our_k.row("baseline: BM25 top-k of the caption, k = our count"));
        let _ = writeln!(out);
    }
    // Findings from throw-away variants (2026-11-27), kept with the tables they explain.
    let _ = writeln!(
        out,
        "Reading. Topics agree well (F1 0.76 against 0.68 for one topic per content word); the reference's topics differ \
mostly in granularity (e.g. \"man riding surfboard\" as one topic, \"small boat\" and \"white\" as two). Adapters agree \
weakly: the reference gives most topics exactly one adapter (67% of its topics; 27% get none), we fill up to three, so \
our precision is low; and at an equal number of adapters a plain BM25 top-k of the whole caption recovers more of the \
reference's picks than our topic assignment, so the coverage rule and the per-topic quota cost agreement. 37% of the gold \
ids are not among the composer's 150 candidates at all (demo index). Explored and not adopted (demo index): making the \
relation verbs riding / holding / wearing / carrying action topics instead of connectors raised adapter recall to 0.529 \
and the ≥ 1 common rate to 0.556, but the whole gain came from two adapters (\"riding on a\" in 129 captions, \"Horseback \
Riding\" in 15) and topic F1 fell to 0.758: a fit to the labeller's habits, not a better composer; keeping a second or \
third adapter for a topic only when its BM25 is ≥ 0.9 of the topic's best traded recall for precision (0.100 / 0.390, \
Jaccard 0.109, ≥ 1 common 0.415); ranking candidates by the whole-caption BM25 instead of the topic's changed every \
figure by at most 0.005.\n"
    );
    let _ = writeln!(out, "<!-- coco_agreement:end -->");
    println!("{out}");
    eprintln!("measured in {dt_demo:?} (demo) and {dt_desc:?} (with descriptions), {} prompts each", rows.len());
}
