//! ΔW kernels, in f32 (NOTES §5.3, checked there against diffusers `fuse_lora` and
//! `lycoris.functional`): LoRA `up @ down` (linear, 1×1 conv, and 3×3 LoCon as
//! `Σ_r up[o,r]·down[r,i,kh,kw]` over the flattened `[r, i·kh·kw]` down), the Tucker rebuild
//! `out[p,q,…] = Σ_ij t[i,j,…]·a[i,p]·b[j,q]` (LyCORIS `rebuild_tucker`, A1111 `make_weight_cp`;
//! kohya LoCon `lora_mid` is the same with `a = upᵀ`), the LoHa Hadamard product
//! `(w1a@w1b)⊙(w2a@w2b)` and the LoKr Kronecker product `kron(w1, w2)` whose row-major layout
//! `[a·c, b·d·kh·kw]` is the target's `[out, in, kh, kw]` (torch `kron` after unsqueezing w1).
//! Shapes are validated before any of this runs (`adapter.rs`); zero-sized dimensions are safe.

use crate::tensor::{Core, Mat};

/// One factorised side of an adapter, rebuilt to a `[rows, cols]` matrix.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Side {
    /// A full matrix (LoKr `lokr_w1` / `lokr_w2`).
    Full(Mat),
    /// `a @ b`: a `[rows, r]`, b `[r, cols]`.
    Product(Mat, Mat),
    /// Tucker: core `[r1, r2, k]`, a `[r1, p]`, b `[r2, q]` → `[p, q·k]`.
    Tucker { t: Core, a: Mat, b: Mat },
}

impl Side {
    /// The side as a dense matrix.
    pub fn rebuild(&self) -> Mat {
        match self {
            Side::Full(m) => m.clone(),
            Side::Product(a, b) => Mat { rows: a.rows, cols: b.cols, data: a.matmul(b) },
            Side::Tucker { t, a, b } => tucker(t, a, b),
        }
    }
    /// Shape `(rows, cols)` of the rebuilt matrix.
    pub fn dims(&self) -> (usize, usize) {
        match self {
            Side::Full(m) => (m.rows, m.cols),
            Side::Product(a, b) => (a.rows, b.cols),
            Side::Tucker { t, a, b } => (a.cols, b.cols.saturating_mul(t.k)),
        }
    }
}

/// The factors of one module's adapter.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Factors {
    Lora(Side),
    LoHa(Side, Side),
    LoKr(Side, Side),
}

impl Factors {
    /// Unscaled ΔW, row-major in the target's layout `[out, in·kh·kw]`.
    pub fn raw_delta(&self) -> Vec<f32> {
        match self {
            Factors::Lora(s) => s.rebuild().data,
            Factors::LoHa(s1, s2) => {
                let (a, b) = (s1.rebuild(), s2.rebuild());
                a.data.iter().zip(&b.data).map(|(x, y)| x * y).collect()
            }
            Factors::LoKr(s1, s2) => kron(&s1.rebuild(), &s2.rebuild()),
        }
    }
}

/// Tucker rebuild: `out[p, q, k] = Σ_i Σ_j t[i, j, k] · a[i, p] · b[j, q]`.
pub(crate) fn tucker(t: &Core, a: &Mat, b: &Mat) -> Mat {
    let (p, q, k) = (a.cols, b.cols, t.k);
    let mut out = vec![0.0f32; p * q * k];
    let mut tmp = vec![0.0f32; q * k];
    for (t_i, a_i) in t.data.chunks_exact((t.r2 * k).max(1)).zip(a.data.chunks_exact(p.max(1))) {
        tmp.fill(0.0);
        // tmp[q, k] = Σ_j t[i, j, k] · b[j, q]
        for (t_ij, b_j) in t_i.chunks_exact(k.max(1)).zip(b.data.chunks_exact(q.max(1))) {
            for (tmp_q, &bv) in tmp.chunks_exact_mut(k.max(1)).zip(b_j) {
                for (x, &tv) in tmp_q.iter_mut().zip(t_ij) {
                    *x += tv * bv;
                }
            }
        }
        // out[p, q, k] += a[i, p] · tmp[q, k]
        for (out_p, &av) in out.chunks_exact_mut((q * k).max(1)).zip(a_i) {
            for (o, &x) in out_p.iter_mut().zip(&tmp) {
                *o += av * x;
            }
        }
    }
    Mat { rows: p, cols: q * k, data: out }
}

/// Kronecker product of two matrices, `[a.rows·b.rows, a.cols·b.cols]` row-major.
pub(crate) fn kron(a: &Mat, b: &Mat) -> Vec<f32> {
    let width = a.cols * b.cols;
    let mut out = vec![0.0f32; a.rows * b.rows * width];
    {
        let mut rows = out.chunks_exact_mut(width.max(1));
        'outer: for a_row in a.data.chunks_exact(a.cols.max(1)) {
            for b_row in b.data.chunks_exact(b.cols.max(1)) {
                let Some(o) = rows.next() else { break 'outer };
                for (seg, &av) in o.chunks_exact_mut(b.cols.max(1)).zip(a_row) {
                    for (x, &bv) in seg.iter_mut().zip(b_row) {
                        *x = av * bv;
                    }
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mat(rows: usize, cols: usize, f: impl Fn(usize, usize) -> f32) -> Mat {
        Mat { rows, cols, data: (0..rows * cols).map(|n| f(n / cols, n % cols)).collect() }
    }

    #[test]
    fn kron_matches_definition() {
        let a = mat(2, 3, |i, j| (i * 3 + j) as f32 + 1.0);
        let b = mat(2, 2, |i, j| (i as f32) - (j as f32) * 0.5);
        let k = kron(&a, &b);
        for i1 in 0..2 {
            for i2 in 0..2 {
                for j1 in 0..3 {
                    for j2 in 0..2 {
                        let v = k[(i1 * 2 + i2) * 6 + j1 * 2 + j2];
                        assert_eq!(v, a.data[i1 * 3 + j1] * b.data[i2 * 2 + j2]);
                    }
                }
            }
        }
    }

    /// Tucker rebuild against the einsum written out as nested loops.
    #[test]
    fn tucker_matches_einsum() {
        let (r1, r2, p, q, k) = (2, 3, 4, 5, 9);
        let t = Core { r1, r2, k, data: (0..r1 * r2 * k).map(|n| ((n * 7) % 11) as f32 - 5.0).collect() };
        let a = mat(r1, p, |i, j| (i + 2 * j) as f32 * 0.25);
        let b = mat(r2, q, |i, j| 1.0 - (i * j) as f32 * 0.5);
        let got = tucker(&t, &a, &b);
        assert_eq!((got.rows, got.cols), (p, q * k));
        for pp in 0..p {
            for qq in 0..q {
                for kk in 0..k {
                    let mut want = 0.0f32;
                    for i in 0..r1 {
                        for j in 0..r2 {
                            want += t.data[(i * r2 + j) * k + kk] * a.data[i * p + pp] * b.data[j * q + qq];
                        }
                    }
                    let v = got.data[(pp * q + qq) * k + kk];
                    assert!((v - want).abs() < 1e-4, "{v} vs {want}");
                }
            }
        }
    }

    /// A Tucker core that is the identity at one tap gives `aᵀ b` at that tap and 0 elsewhere.
    #[test]
    fn tucker_identity_core() {
        let (r, k) = (3, 9);
        let mut data = vec![0.0; r * r * k];
        for i in 0..r {
            data[(i * r + i) * k + 4] = 1.0;
        }
        let t = Core { r1: r, r2: r, k, data };
        let a = mat(r, 2, |i, j| (i + j) as f32);
        let b = mat(r, 4, |i, j| (i * 2 + j) as f32);
        let got = tucker(&t, &a, &b);
        let atb = a.transposed().matmul(&b);
        for (n, v) in atb.iter().enumerate() {
            assert_eq!(got.data[n * k + 4], *v);
            assert_eq!(got.data[n * k], 0.0);
        }
    }

    #[test]
    fn zero_sized_is_safe() {
        let e = Mat { rows: 0, cols: 0, data: vec![] };
        assert!(kron(&e, &e).is_empty());
        let t = Core { r1: 0, r2: 0, k: 0, data: vec![] };
        assert!(tucker(&t, &e, &e).data.is_empty());
    }
}
