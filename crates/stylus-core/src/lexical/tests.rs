//! Tests of the BM25 index: scoring, resolved queries, the shared accumulators, the bundle encoding.

use super::*;

fn docs() -> Bm25 {
    Bm25::build(["watercolor fox painting", "fox fox fox girl", "cyberpunk city neon lights", "oil painting style", ""].map(terms))
}

#[test]
fn ln_matches_std() {
    for x in [1.0, 1.5, 2.0, 0.3, 7.25, 1e-300, 5e-324, 1e300, 123456.789, std::f64::consts::E] {
        assert!((ln(x) - x.ln()).abs() <= 1e-12 * x.ln().abs().max(1.0), "{x}");
    }
    assert!(ln(0.0).is_nan() && ln(-1.0).is_nan() && ln(f64::INFINITY).is_nan());
}

#[test]
fn search_ranks_and_scores() {
    let ix = docs();
    let q = terms("a fox in watercolor");
    let hits = ix.search(&q, 10);
    assert_eq!(hits.iter().map(|h| h.0).collect::<Vec<_>>(), [0, 1]);
    let (s, m) = ix.score(&q, 0);
    assert_eq!((s, m), (hits[0].1, vec!["fox", "watercolor"]));
    assert_eq!(ix.search(&q, 1).len(), 1);
    assert!(ix.search(&terms("nothing matches"), 5).is_empty());
    assert!(ix.search(&q, 0).is_empty());
    assert_eq!(ix.score(&terms("fox fox"), 1), ix.score(&terms("fox"), 1));
    assert!(ix.idf("neon") > ix.idf("fox") && ix.idf("zzz") == 0.0);
}

#[test]
fn resolved_queries_score_like_term_lists() {
    let ix = docs();
    let words = terms("fox painting fox unknownword neon");
    let q = ix.query(&words);
    // distinct known terms, in query order
    assert_eq!((0..q.len()).map(|i| q.term(i)).collect::<Vec<_>>(), ["fox", "painting", "neon"]);
    assert_eq!(ix.search_query(&q, 10), ix.search(&words, 10));
    let mut m = vec![7];
    for doc in 0..5 {
        let s = ix.score_matches(&q, doc, &mut m);
        let (s2, names) = ix.score(&words, doc);
        assert_eq!((s, s), (s2, ix.score_query(&q, doc)), "doc {doc}");
        assert_eq!(m.iter().map(|&i| q.term(i)).collect::<Vec<_>>(), names, "doc {doc}");
    }
    assert_eq!(ix.query_idf(&q, 2), ix.idf("neon"));
    assert!(ix.query(&terms("zzz qqq")).is_empty());
}

#[test]
fn the_shared_accumulator_is_left_zeroed() {
    // a larger index first, then a smaller one, then the larger one again: same answers as the
    // first time (the per-thread accumulator must not keep scores between searches)
    let big = Bm25::build((0..50).map(|i| terms(&format!("fox w{i} {}", if i % 3 == 0 { "girl" } else { "city" }))));
    let small = docs();
    let q = terms("fox girl");
    let first = big.search(&q, 50);
    assert_eq!(first.len(), 50);
    let small_hits = small.search(&q, 5);
    assert_eq!(small_hits.iter().map(|h| h.0).collect::<Vec<_>>(), [1, 0]);
    assert_eq!(big.search(&q, 50), first);
    assert_eq!(small.search(&q, 5), small_hits);
    assert_eq!(big.search(&q, 3), first[..3]);
    // live accumulators at once (fusion holds two): each reads its own query's scores, exactly
    // `score_query`'s, and dropping them leaves the pool zeroed
    let neon = terms("neon painting");
    let (qb, qs) = (big.query(&q), small.query(&neon));
    let (a, b) = (big.accumulate(&qb), small.accumulate(&qs));
    for doc in 0..60 {
        // (equal values: an empty sum is -0.0 in `score_query`, +0.0 here)
        assert_eq!(a.score(doc), if doc < 50 { big.score_query(&qb, doc) } else { 0.0 }, "doc {doc}");
        assert_eq!(b.score(doc), if doc < 5 { small.score_query(&qs, doc) } else { 0.0 }, "doc {doc}");
    }
    assert_eq!((a.top(50), b.top(5)), (first.clone(), small.search(&neon, 5)));
    drop((a, b));
    assert_eq!((big.search(&q, 50), small.search(&q, 5)), (first.clone(), small_hits));
    // a query touching one document of 50 is reset entry by entry (many: one fill), the same either way
    assert_eq!(big.search(&terms("w7"), 5).iter().map(|h| h.0).collect::<Vec<_>>(), [7]);
    assert_eq!(big.search(&q, 50), first);
}

#[test]
fn encoding_roundtrip_and_corruption() {
    let ix = docs();
    let mut b = Vec::new();
    ix.write(&mut b);
    let back = Bm25::read(&b).unwrap();
    assert_eq!(back, ix);
    let mut b2 = Vec::new();
    back.write(&mut b2);
    assert_eq!(b, b2);
    for cut in 0..b.len() {
        assert!(Bm25::read(&b[..cut]).is_err(), "cut {cut}");
    }
    assert!(Bm25::read(&[0xff; 20]).is_err());
    let mut extra = b.clone();
    extra.push(0);
    assert!(Bm25::read(&extra).is_err());
    // the size hint only reserves: too small, too large or absurd, the index read is the same
    for hint in [0, 1, ix.num_postings() as u64, u64::MAX] {
        let sized = Bm25::read_sized(&b, hint).unwrap();
        assert_eq!(sized, ix, "hint {hint}");
        assert!(sized.docs.capacity() <= b.len() / 2 || sized.docs.capacity() == sized.docs.len(), "hint {hint} reserved past the input");
    }
    let empty = Bm25::build(Vec::<Vec<String>>::new());
    assert!(empty.search(&terms("fox"), 3).is_empty());
}
