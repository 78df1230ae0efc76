//! Nearest-neighbour search over unit vectors behind one small trait ([`Ann`]), and the compact index
//! the edge uses ([`Int8Index`]): int8 vectors with a per-vector scale (a quarter of f32's bytes), on
//! large catalogs a pre-scan of every row over its leading components only (the vectors are PCA
//! projections, components in order of variance; integer dot products with the query rounded to i16,
//! a contiguous copy of those components), and exact re-scoring of the rows it keeps (f32 query ·
//! dequantized vector). wasm32 builds use simd128 for both dot products. Our own code; the native `hora` alternative lives in the CLI (see README's
//! dependency table for the measured choice).

pub use super::kernels::{dot_i8, dot_i8_2, dot_i8_i16, dot_i8_i16_4, head_rows_at_least, head_scores, rows_at_least};

/// A searchable set of unit vectors; scores are cosine similarities (higher is better).
pub trait Ann {
    fn len(&self) -> usize;
    fn dim(&self) -> usize;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// The `k` best `(row, cosine)` pairs, best first; ties keep row order.
    fn search(&self, query: &[f32], k: usize) -> Vec<(u32, f32)>;
}

/// Brute-force f32 search: the exact answer every other index is measured against.
#[derive(Debug, Clone)]
pub struct ExactIndex {
    dim: usize,
    data: Vec<f32>,
}

impl ExactIndex {
    /// `data` is row-major `[n, dim]`.
    pub fn new(dim: usize, data: Vec<f32>) -> Self {
        assert!(dim > 0 && data.len().is_multiple_of(dim), "data is not a whole number of rows");
        ExactIndex { dim, data }
    }

    pub fn row(&self, i: usize) -> &[f32] {
        &self.data[i * self.dim..(i + 1) * self.dim]
    }
}

impl Ann for ExactIndex {
    fn len(&self) -> usize {
        self.data.len() / self.dim
    }
    fn dim(&self) -> usize {
        self.dim
    }
    fn search(&self, query: &[f32], k: usize) -> Vec<(u32, f32)> {
        let scores = self.data.chunks_exact(self.dim).map(|r| dot_f32(query, r));
        top_k(scores.enumerate().map(|(i, s)| (i as u32, s)), k)
    }
}

/// The edge index: int8 rows + scales, a pre-scan on large catalogs, exact re-scoring.
#[derive(Debug, Clone)]
pub struct Int8Index {
    dim: usize,
    codes: Vec<i8>,
    scales: Vec<f32>,
    /// The first `head_dims` codes of every row, contiguous (the pre-scan streams them).
    head: Vec<i8>,
    head_dims: usize,
    /// Rows above which the pre-scan runs (below it every row is re-scored).
    pub prescan_above: usize,
    /// Rows kept after the pre-scan: `max(min_candidates, oversample × k)`.
    pub oversample: usize,
    pub min_candidates: usize,
    /// When more rows than `shortlist × k` remain, they are first scored with the query rounded to
    /// i16 (integer dot products, a quarter of the work) and only the best `shortlist × k` of them are
    /// re-scored exactly; 0: every remaining row is re-scored exactly.
    pub shortlist: usize,
    /// Leading components the i16 shortlist scores (at least the dimension: all of them).
    pub shortlist_dims: usize,
}

/// Default: catalogs up to this size are scanned exactly in int8.
pub const PRESCAN_ABOVE: usize = 20_000;
/// Default: leading components the pre-scan scores.
pub const HEAD_DIMS: usize = 64;
/// Default: leading components the i16 shortlist scores. Measured at 75K cards (`--bench ann`, 300
/// COCO captions, k = 150): recall 0.945 with all 256, 0.942 with 160, 0.932 with 128, 0.901 with 96;
/// 160 reads 37% fewer bytes of the rows it scores, which are random reads.
pub const SHORTLIST_DIMS: usize = 160;

impl Int8Index {
    /// Quantizes row-major f32 `[n, dim]` rows (each scaled by max |x| / 127).
    pub fn quantize(dim: usize, data: &[f32]) -> Self {
        assert!(dim > 0 && data.len().is_multiple_of(dim), "data is not a whole number of rows");
        let n = data.len() / dim;
        let mut codes = Vec::with_capacity(data.len());
        let mut scales = Vec::with_capacity(n);
        for r in data.chunks_exact(dim) {
            let (q, s) = quantize_row(r);
            codes.extend(q);
            scales.push(s);
        }
        Self::from_parts(dim, codes, scales).expect("consistent by construction")
    }

    /// From stored codes and scales (checks the sizes).
    pub fn from_parts(dim: usize, codes: Vec<i8>, scales: Vec<f32>) -> Result<Self, String> {
        if dim == 0 || codes.len() != scales.len() * dim {
            return Err(format!("{} int8 codes do not make {} rows of dimension {dim}", codes.len(), scales.len()));
        }
        if let Some(i) = scales.iter().position(|s| !s.is_finite()) {
            return Err(format!("row {i} has the scale {}", scales[i]));
        }
        let ix =
            Int8Index { dim, codes, scales, head: Vec::new(), head_dims: 0, prescan_above: PRESCAN_ABOVE, oversample: 8, min_candidates: 1024, shortlist: 2, shortlist_dims: SHORTLIST_DIMS };
        Ok(ix.with_head_dims(HEAD_DIMS))
    }

    /// The same index with a pre-scan over the leading `m` components (at most `dim`; 0: no pre-scan,
    /// every row is re-scored).
    pub fn with_head_dims(mut self, m: usize) -> Self {
        let m = m.min(self.dim);
        self.head = if m == 0 { Vec::new() } else { self.codes.chunks_exact(self.dim).flat_map(|r| &r[..m]).copied().collect() };
        self.head_dims = m;
        self
    }

    pub fn codes(&self) -> &[i8] {
        &self.codes
    }

    pub fn scales(&self) -> &[f32] {
        &self.scales
    }

    /// Cosine of the f32 query with row `i` as stored.
    pub fn score(&self, query: &[f32], i: usize) -> f32 {
        dot_i8(query, &self.codes[i * self.dim..(i + 1) * self.dim]) * self.scales[i]
    }

    /// The rows the pre-scan keeps for `k` results, in row order (all rows on small catalogs).
    /// Measured on 75K synthetic cards and COCO captions (`cargo bench -p stylus-core --bench ann`,
    /// BENCHMARKS.md "ANN pre-scan"): a pre-scan keeping 8 k rows by their 64 leading components finds
    /// about 0.95 of the exact top k, where the sign-bit Hamming pre-scan it replaced found 0.77
    /// keeping 16 k.
    fn candidates(&self, query: &[f32], k: usize) -> Vec<u32> {
        let n = self.len();
        let keep = self.min_candidates.max(self.oversample.saturating_mul(k));
        let m = self.head_dims;
        if n <= self.prescan_above || keep >= n || m == 0 || query.len() < m {
            return (0..n as u32).collect();
        }
        // the query's leading components rounded to i16: integer dot products, exact on every platform
        let qi = to_i16(&query[..m]);
        // `best_rows` with its threshold fused into the scan: a threshold from a sample of the rows
        // (64 runs spread over the index, a 16th of the rows in all, scanned like the rest), then one
        // pass that keeps only the rows reaching it. The kept rows are `best_rows`'s whatever the
        // sample: every row left out scores below the threshold, hence below the `keep` rows kept (and
        // when fewer than `keep` reach it, every row is scored as in `best_rows`).
        if let Some(rank) = sample_rank(n, keep) {
            let mut sample = Vec::with_capacity(n / SAMPLE_STEP + 64);
            let run = n / (64 * SAMPLE_STEP);
            for c in 0..64 {
                let start = c * n / 64;
                head_scores(&qi, &self.head[start * m..(start + run) * m], &self.scales[start..start + run], &mut sample);
            }
            let r = rank.min(sample.len());
            let t = *sample.select_nth_unstable_by(r - 1, |a, b| b.total_cmp(a)).1;
            let (mut rows, mut scores) = (Vec::with_capacity(keep + keep / 2), Vec::with_capacity(keep + keep / 2));
            head_rows_at_least(&qi, &self.head, &self.scales, t, &mut rows, &mut scores);
            if rows.len() >= keep {
                return cut(rows, &scores, keep);
            }
        }
        let mut scores = Vec::with_capacity(n);
        head_scores(&qi, &self.head, &self.scales, &mut scores);
        best_rows(&scores, keep)
    }
}

impl Ann for Int8Index {
    fn len(&self) -> usize {
        self.scales.len()
    }
    fn dim(&self) -> usize {
        self.dim
    }
    fn search(&self, query: &[f32], k: usize) -> Vec<(u32, f32)> {
        let mut cands = self.candidates(query, k);
        let row = |i: u32| &self.codes[i as usize * self.dim..(i as usize + 1) * self.dim];
        let short = self.shortlist.saturating_mul(k);
        let sd = self.shortlist_dims.clamp(1, self.dim);
        let lead = |i: u32| &self.codes[i as usize * self.dim..i as usize * self.dim + sd];
        // (|Σ q·c| ≤ 512 · 32767 · 128 < 2³¹ for up to 512 components)
        if short > 0 && cands.len() > short && sd <= 512 && query.len() >= self.dim {
            let qi = to_i16(&query[..sd]);
            let mut pre = Vec::with_capacity(cands.len());
            for g in cands.chunks(4) {
                if let [a, b, c, d] = *g {
                    let dots = dot_i8_i16_4(&qi, [lead(a), lead(b), lead(c), lead(d)]);
                    pre.extend(g.iter().zip(dots).map(|(&i, x)| x as f32 * self.scales[i as usize]));
                } else {
                    pre.extend(g.iter().map(|&i| dot_i8_i16(&qi, lead(i)) as f32 * self.scales[i as usize]));
                }
            }
            cands = best_rows(&pre, short).into_iter().map(|j| cands[j as usize]).collect();
        }
        let mut hits = Vec::with_capacity(cands.len());
        // two rows at a time: their memory reads overlap (same scores as `score`)
        for pair in cands.chunks(2) {
            if let [a, b] = *pair {
                let (x, y) = dot_i8_2(query, row(a), row(b));
                hits.extend([(a, x * self.scales[a as usize]), (b, y * self.scales[b as usize])]);
            } else {
                hits.push((pair[0], self.score(query, pair[0] as usize)));
            }
        }
        top_k(hits.into_iter(), k)
    }
}

/// `q` rounded to i16 in units of `max |q| / 32767` (all zeros when `q` is zero or not finite).
fn to_i16(q: &[f32]) -> Vec<i16> {
    let top = q.iter().fold(0f32, |a, x| a.max(x.abs()));
    let unit = if top > 0.0 && top.is_finite() { 32767.0 / top } else { 0.0 };
    q.iter().map(|&x| (x * unit).round() as i16).collect()
}

/// Appends int8 rows in their stored form (bundles' card vectors, the static embedder's table):
/// `scales f32 little-endian × n | codes i8 × n × dim`.
pub fn write_rows(out: &mut Vec<u8>, scales: &[f32], codes: &[i8]) {
    for s in scales {
        out.extend_from_slice(&s.to_le_bytes());
    }
    out.extend(codes.iter().map(|&c| c as u8));
}

/// Reads `n` rows of dimension `dim` written by [`write_rows`]; `None` unless `bytes` is exactly that size.
pub fn read_rows(bytes: &[u8], n: usize, dim: usize) -> Option<(Vec<f32>, Vec<i8>)> {
    if bytes.len() != n.checked_mul(dim.checked_add(4)?)? {
        return None;
    }
    let (s, c) = bytes.split_at(4 * n);
    Some((s.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect(), c.iter().map(|&b| b as i8).collect()))
}

/// int8 codes and the scale `max |x| / 127` of one row (all zero → scale 0).
pub fn quantize_row(r: &[f32]) -> (Vec<i8>, f32) {
    let m = r.iter().fold(0f32, |a, &x| a.max(x.abs()));
    if m == 0.0 || !m.is_finite() {
        return (vec![0; r.len()], 0.0);
    }
    let s = m / 127.0;
    (r.iter().map(|&x| (x / s).round().clamp(-127.0, 127.0) as i8).collect(), s)
}

/// Every this many scores is sampled for [`best_rows`]'s threshold.
const SAMPLE_STEP: usize = 16;

/// The rank, among every [`SAMPLE_STEP`]th score, of [`best_rows`]'s threshold (its rank scaled, plus a
/// margin), when `n` scores are large enough for a sampled threshold to pay.
fn sample_rank(n: usize, keep: usize) -> Option<usize> {
    (n >= 64 * SAMPLE_STEP && keep > 0 && keep < n / 2).then(|| (keep / SAMPLE_STEP + keep / (4 * SAMPLE_STEP) + 8).min(n.div_ceil(SAMPLE_STEP)))
}

/// The rows of the `keep` highest scores (and any row tied with the last of them), in row order.
/// One vectorised pass over the scores: a threshold from every 16th score (its rank scaled, plus a
/// margin) lets through a little more than `keep` rows, among which the exact cut is selected; when
/// the threshold lets too few through (or the input is small) every row is a candidate. Scores must
/// not be NaN.
pub fn best_rows(scores: &[f32], keep: usize) -> Vec<u32> {
    let n = scores.len();
    if keep == 0 {
        return Vec::new();
    }
    if keep >= n {
        return (0..n as u32).collect();
    }
    let mut rows = Vec::with_capacity(keep + keep / 2);
    if let Some(rank) = sample_rank(n, keep) {
        let mut sample: Vec<f32> = scores.iter().step_by(SAMPLE_STEP).copied().collect();
        let t = *sample.select_nth_unstable_by(rank - 1, |a, b| b.total_cmp(a)).1;
        rows_at_least(scores, t, &mut rows);
    }
    if rows.len() < keep {
        rows = (0..n as u32).collect();
    }
    let kept: Vec<f32> = rows.iter().map(|&i| scores[i as usize]).collect();
    cut(rows, &kept, keep)
}

/// Of `rows` (in row order, at least `keep`) with their `scores`, those of the `keep` highest scores
/// and any tied with the last of them, in row order.
fn cut(mut rows: Vec<u32>, scores: &[f32], keep: usize) -> Vec<u32> {
    let mut sorted = scores.to_vec();
    let c = *sorted.select_nth_unstable_by(keep - 1, |a, b| b.total_cmp(a)).1;
    let mut i = 0;
    rows.retain(|_| {
        i += 1;
        scores[i - 1].total_cmp(&c).is_ge()
    });
    rows
}

pub fn dot_f32(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// The `k` largest by score, best first; equal scores keep the lower row first. NaN sorts last.
pub fn top_k(items: impl Iterator<Item = (u32, f32)>, k: usize) -> Vec<(u32, f32)> {
    if k == 0 {
        return Vec::new();
    }
    let mut v: Vec<(u32, f32)> = items.map(|(i, s)| (i, if s.is_nan() { f32::NEG_INFINITY } else { s })).collect();
    let cmp = |a: &(u32, f32), b: &(u32, f32)| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0));
    if v.len() > k {
        v.select_nth_unstable_by(k - 1, cmp);
        v.truncate(k);
    }
    v.sort_by(cmp);
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Deterministic pseudo-random unit vectors (xorshift), for tests.
    pub(crate) fn unit_rows(n: usize, dim: usize, seed: u64) -> Vec<f32> {
        let mut s = seed.max(1);
        let mut out = Vec::with_capacity(n * dim);
        for _ in 0..n {
            let r: Vec<f32> = (0..dim)
                .map(|_| {
                    s ^= s << 13;
                    s ^= s >> 7;
                    s ^= s << 17;
                    (s % 20_001) as f32 / 10_000.0 - 1.0
                })
                .collect();
            let norm = r.iter().map(|x| x * x).sum::<f32>().sqrt();
            out.extend(r.iter().map(|x| x / norm));
        }
        out
    }

    #[test]
    fn exact_finds_itself_and_orders() {
        let data = unit_rows(500, 32, 7);
        let ix = ExactIndex::new(32, data.clone());
        let hits = ix.search(&data[32 * 42..32 * 43], 5);
        assert_eq!(hits[0].0, 42);
        assert!((hits[0].1 - 1.0).abs() < 1e-5);
        assert!(hits.windows(2).all(|w| w[0].1 >= w[1].1));
    }

    #[test]
    fn int8_agrees_with_exact() {
        let (n, dim) = (3000, 64);
        let data = unit_rows(n, dim, 11);
        let exact = ExactIndex::new(dim, data.clone());
        let mut q8 = Int8Index::quantize(dim, &data);
        let queries = unit_rows(20, dim, 99);
        for prescan in [false, true] {
            q8.prescan_above = if prescan { 100 } else { usize::MAX };
            q8.min_candidates = 600;
            let mut overlap = 0;
            for q in queries.chunks_exact(dim) {
                let a: Vec<u32> = exact.search(q, 10).iter().map(|h| h.0).collect();
                let b = q8.search(q, 10);
                overlap += b.iter().filter(|h| a.contains(&h.0)).count();
                for (i, s) in &b {
                    assert!((s - dot_f32(q, exact.row(*i as usize))).abs() < 0.02, "re-scored cosine is near exact");
                }
            }
            assert!(overlap >= 180, "prescan={prescan}: {overlap}/200 of the exact top-10 found");
        }
    }

    #[test]
    fn prescan_keeps_rows_by_leading_components() {
        // PCA-like rows: component j scaled by 0.97^j, so the leading components carry most of the variance
        let (n, dim) = (6000, 128);
        let decay: Vec<f32> = (0..dim).map(|j| 0.97f32.powi(j as i32)).collect();
        let shape = |v: Vec<f32>| -> Vec<f32> {
            let mut out = Vec::with_capacity(v.len());
            for r in v.chunks_exact(dim) {
                let r: Vec<f32> = r.iter().zip(&decay).map(|(x, d)| x * d).collect();
                let norm = r.iter().map(|x| x * x).sum::<f32>().sqrt();
                out.extend(r.iter().map(|x| x / norm));
            }
            out
        };
        let data = shape(unit_rows(n, dim, 5));
        let queries = shape(unit_rows(30, dim, 77));
        let mut ix = Int8Index::quantize(dim, &data);
        (ix.prescan_above, ix.min_candidates) = (100, 100);
        // the reference: every row re-scored exactly (no pre-scan, no i16 shortlist)
        let mut full = ix.clone();
        (full.prescan_above, full.shortlist) = (usize::MAX, 0);
        let mut off = ix.clone().with_head_dims(0);
        off.shortlist = 0;
        let mut short = ix.clone();
        short.prescan_above = usize::MAX;
        // shortlists scoring only the leading 64, or 4, of the 128 components
        let (mut lead, mut lead4) = (short.clone(), short.clone());
        (lead.shortlist_dims, lead4.shortlist_dims) = (64, 4);
        let (mut found, mut found_short, mut found_lead, mut found_lead4, mut total) = (0, 0, 0, 0, 0);
        for q in queries.chunks_exact(dim) {
            let want = full.search(q, 20);
            let got = ix.search(q, 20);
            assert!(got.iter().all(|h| h.1 == ix.score(q, h.0 as usize)), "re-scored exactly");
            found += got.iter().filter(|h| want.contains(h)).count();
            found_short += short.search(q, 20).iter().filter(|h| want.contains(h)).count();
            found_lead += lead.search(q, 20).iter().filter(|h| want.contains(h)).count();
            found_lead4 += lead4.search(q, 20).iter().filter(|h| want.contains(h)).count();
            total += want.len();
            assert_eq!(off.search(q, 20), want, "no head, no shortlist: every row is re-scored");
        }
        assert!(found as f64 >= 0.9 * total as f64, "pre-scan recall {found}/{total}");
        // the i16 shortlist (2 k of every row) loses almost nothing of the exact top k
        assert!(found_short as f64 >= 0.98 * total as f64, "shortlist recall {found_short}/{total}");
        assert!(found_lead as f64 >= 0.98 * total as f64, "64-component shortlist recall {found_lead}/{total}");
        assert!(found_lead4 < found_lead, "4 components must lose rows, or the setting is not applied: {found_lead4}/{total}");
        // a pre-scan keeping only 160 of 6000 rows must have left rows out, or it tested nothing
        assert!(ix.candidates(&queries[..dim], 20).len() < 200);
        // the fused scan keeps exactly the rows `best_rows` picks from every row's pre-scan score
        for q in queries.chunks_exact(dim) {
            let mut all = Vec::new();
            head_scores(&to_i16(&q[..HEAD_DIMS]), &ix.head, &ix.scales, &mut all);
            assert_eq!(ix.candidates(q, 20), best_rows(&all, 160));
        }
        // a query shorter than the rows (a mismatched caller) is scored on what it has, never a panic
        assert_eq!(ix.search(&queries[..32], 5).len(), 5);
    }

    #[test]
    fn edge_cases() {
        assert!(Int8Index::from_parts(2, vec![1, 2], vec![f32::NAN]).is_err(), "a NaN scale is refused");
        assert_eq!(quantize_row(&[0.0, 0.0]), (vec![0, 0], 0.0));
        assert!(Int8Index::from_parts(4, vec![0; 7], vec![1.0, 1.0]).is_err());
        let ix = Int8Index::quantize(2, &[1.0, 0.0, 0.0, 1.0]);
        assert!(ix.search(&[1.0, 0.0], 0).is_empty());
        assert_eq!(ix.search(&[1.0, 0.0], 9).len(), 2);
        assert_eq!(top_k([(0, f32::NAN), (1, 0.5)].into_iter(), 1), vec![(1, 0.5)]);
    }
}
