//! ANN pre-scan sweep (issue #3): for an index bundle with card vectors and a JSONL file of query
//! strings, the recall@k of `Int8Index` against the exact int8 scan of every row (the reference, timed in
//! the same run) and its time per query natively, for several pre-scan settings (leading components
//! scored, rows kept for the i16 shortlist and exact re-scoring). The defaults were picked from this table. Writes the
//! `ann_prescan` section of BENCHMARKS.md.
//! `cargo bench -p stylus-core --bench ann -- BUNDLE QUERIES.jsonl [N_QUERIES]` (benches/index_scale.py
//! makes both files: ~/.cache/stylus/quality/scale-75000.bin and scale-queries.jsonl).

#[path = "../../../benches/section.rs"]
mod section;

use std::collections::HashSet;
use std::fmt::Write as _;
use std::time::Instant;
use stylus_core::embed::ann::Int8Index;
use stylus_core::embed::Ann;
use stylus_core::Index;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| a != "--bench").collect();
    let (Some(bundle), Some(queries)) = (args.first(), args.get(1)) else {
        eprintln!("usage: ann BUNDLE QUERIES.jsonl [N_QUERIES]");
        std::process::exit(2);
    };
    let nq: usize = args.get(2).and_then(|v| v.parse().ok()).unwrap_or(500);
    let index = Index::from_bundle(&std::fs::read(bundle).expect("bundle")).expect("bundle");
    let d = index.dense().expect("a bundle with card vectors");
    let text = std::fs::read_to_string(queries).expect("queries");
    let qs: Vec<Vec<f32>> = text.lines().take(nq).map(|l| d.embedder.embed(&serde_json::from_str::<String>(l).expect("a JSON string"))).collect();
    let mut exact = d.vectors.clone();
    // the reference: every row re-scored exactly in f32 (no pre-scan, no i16 shortlist)
    (exact.prescan_above, exact.shortlist) = (usize::MAX, 0);
    let time = |ix: &Int8Index, k: usize| {
        let t = Instant::now();
        let hits: Vec<Vec<(u32, f32)>> = qs.iter().map(|q| ix.search(q, k)).collect();
        (hits, t.elapsed().as_secs_f64() * 1e6 / qs.len().max(1) as f64)
    };
    let mut md = String::new();
    let _ = writeln!(
        md,
        "`cargo bench -p stylus-core --bench ann` ({} vectors of dimension {} from `{}`, {} COCO captions). Recall of the exact scan's top k \
         (every row re-scored in f32) after the pre-scan, the i16 shortlist of 2 k rows (scored over the leading components given) and their exact re-scoring; time per query natively (bench profile, SSE2 kernels; the wasm32 build runs the \
         same arithmetic in simd128, see Index scale for its timings), as a ratio to the exact scan of every row measured in the same run.\n",
        d.vectors.len(),
        d.vectors.dim(),
        std::path::Path::new(bundle).file_name().map_or(String::new(), |f| f.to_string_lossy().into_owned()),
        qs.len()
    );
    let _ = writeln!(md, "| pre-scan | k | rows kept by the pre-scan | recall | µs / query | time / exact scan |\n|---|---|---|---|---|---|");
    // (name, leading components scored by the pre-scan, oversample: rows kept = max(1024, oversample × k),
    // leading components the i16 shortlist scores)
    let settings: [(&str, usize, usize, usize); 9] = [
        ("64 leading components, 8 k rows, shortlist over 160 components (default)", 64, 8, 160),
        ("64 leading components, 8 k rows, shortlist over all 256", 64, 8, 256),
        ("64 leading components, 8 k rows, shortlist over 128", 64, 8, 128),
        ("64 leading components, 4 k rows, shortlist over 160", 64, 4, 160),
        ("64 leading components, 16 k rows, shortlist over 160", 64, 16, 160),
        ("32 leading components, 8 k rows, shortlist over 160", 32, 8, 160),
        ("32 leading components, 16 k rows, shortlist over 160", 32, 16, 160),
        ("96 leading components, 8 k rows, shortlist over 160", 96, 8, 160),
        ("96 leading components, 8 k rows, shortlist over all 256", 96, 8, 256),
    ];
    for k in [150, 300] {
        let (want, exact_us) = time(&exact, k);
        let want: Vec<HashSet<u32>> = want.into_iter().map(|h| h.into_iter().map(|x| x.0).collect()).collect();
        let _ = writeln!(md, "| none: every row re-scored in f32 (reference) | {k} | {} | 1.000 | {exact_us:.0} | 1.00 |", d.vectors.len());
        for (name, head, over, sd) in settings {
            let mut ix: Int8Index = d.vectors.clone().with_head_dims(head);
            (ix.oversample, ix.shortlist_dims) = (over, sd);
            let (hits, us) = time(&ix, k);
            let found: usize = hits.iter().zip(&want).map(|(h, w)| h.iter().filter(|x| w.contains(&x.0)).count()).sum();
            let recall = found as f64 / want.iter().map(HashSet::len).sum::<usize>().max(1) as f64;
            let _ = writeln!(md, "| {name} | {k} | {} | {recall:.3} | {us:.0} | {:.2} |", ix.min_candidates.max(over * k), us / exact_us);
        }
    }
    let _ = writeln!(
        md,
        "\nThe sign-bit Hamming pre-scan these replaced (256 bits per row, 16 k rows kept) found 0.77 (k = 150) and 0.79 (k = 300) \
         of the exact top k on the same catalog and queries."
    );
    print!("{md}");
    section::write_section("ann_prescan", &md);
}
