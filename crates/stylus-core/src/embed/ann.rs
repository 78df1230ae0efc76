//! Nearest-neighbour search over unit vectors behind one small trait ([`Ann`]), and the compact index
//! the edge uses ([`Int8Index`]): int8 vectors with a per-vector scale (a quarter of f32's bytes), sign
//! bits for a Hamming pre-scan on large catalogs, and exact re-scoring of every candidate (f32 query ·
//! dequantized vector). Our own code; the native `hora` alternative lives in the CLI (see README's
//! dependency table for the measured choice).

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
        assert!(dim > 0 && data.len() % dim == 0, "data is not a whole number of rows");
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

/// The edge index: int8 rows + scales, optional sign-bit pre-scan, exact re-scoring.
#[derive(Debug, Clone)]
pub struct Int8Index {
    dim: usize,
    codes: Vec<i8>,
    scales: Vec<f32>,
    /// `dim.div_ceil(64)` words of sign bits per row.
    bits: Vec<u64>,
    /// Rows above which the sign-bit pre-scan runs (below it every row is re-scored).
    pub prescan_above: usize,
    /// Candidates kept by the pre-scan: `max(min_candidates, oversample × k)`.
    pub oversample: usize,
    pub min_candidates: usize,
}

/// Default: catalogs up to this size are scanned exactly in int8.
pub const PRESCAN_ABOVE: usize = 20_000;

impl Int8Index {
    /// Quantizes row-major f32 `[n, dim]` rows (each scaled by max |x| / 127).
    pub fn quantize(dim: usize, data: &[f32]) -> Self {
        assert!(dim > 0 && data.len() % dim == 0, "data is not a whole number of rows");
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
        let words = dim.div_ceil(64);
        let mut bits = vec![0u64; scales.len() * words];
        for (i, r) in codes.chunks_exact(dim).enumerate() {
            sign_bits(r.iter().map(|&c| c > 0), &mut bits[i * words..(i + 1) * words]);
        }
        Ok(Int8Index { dim, codes, scales, bits, prescan_above: PRESCAN_ABOVE, oversample: 16, min_candidates: 1024 })
    }

    pub fn codes(&self) -> &[i8] {
        &self.codes
    }

    pub fn scales(&self) -> &[f32] {
        &self.scales
    }

    /// Cosine of the f32 query with row `i` as stored.
    pub fn score(&self, query: &[f32], i: usize) -> f32 {
        let r = &self.codes[i * self.dim..(i + 1) * self.dim];
        let mut acc = 0f32;
        for (q, &c) in query.iter().zip(r) {
            acc += q * c as f32;
        }
        acc * self.scales[i]
    }

    /// The rows the sign-bit pre-scan keeps for `k` results (all rows on small catalogs).
    fn candidates(&self, query: &[f32], k: usize) -> Vec<u32> {
        let n = self.len();
        let keep = self.min_candidates.max(self.oversample * k);
        if n <= self.prescan_above || keep >= n {
            return (0..n as u32).collect();
        }
        let words = self.dim.div_ceil(64);
        let mut qb = vec![0u64; words];
        sign_bits(query.iter().map(|&x| x > 0.0), &mut qb);
        // score = matching signs; counting sort over the few possible values keeps it O(n)
        let mut hist = vec![0usize; words * 64 + 1];
        let dists: Vec<u16> = self.bits.chunks_exact(words).map(|b| b.iter().zip(&qb).map(|(x, y)| (x ^ y).count_ones()).sum::<u32>() as u16).collect();
        for &d in &dists {
            hist[d as usize] += 1;
        }
        let (mut cut, mut seen) = (0usize, 0usize);
        while cut < hist.len() && seen + hist[cut] < keep {
            seen += hist[cut];
            cut += 1;
        }
        dists.iter().enumerate().filter(|(_, &d)| (d as usize) <= cut).map(|(i, _)| i as u32).collect()
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
        let cands = self.candidates(query, k);
        top_k(cands.into_iter().map(|i| (i, self.score(query, i as usize))), k)
    }
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

fn sign_bits(signs: impl Iterator<Item = bool>, out: &mut [u64]) {
    for (j, s) in signs.enumerate() {
        if s {
            out[j / 64] |= 1 << (j % 64);
        }
    }
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
    fn edge_cases() {
        assert_eq!(quantize_row(&[0.0, 0.0]), (vec![0, 0], 0.0));
        assert!(Int8Index::from_parts(4, vec![0; 7], vec![1.0, 1.0]).is_err());
        let ix = Int8Index::quantize(2, &[1.0, 0.0, 0.0, 1.0]);
        assert!(ix.search(&[1.0, 0.0], 0).is_empty());
        assert_eq!(ix.search(&[1.0, 0.0], 9).len(), 2);
        assert_eq!(top_k([(0, f32::NAN), (1, 0.5)].into_iter(), 1), vec![(1, 0.5)]);
    }
}
