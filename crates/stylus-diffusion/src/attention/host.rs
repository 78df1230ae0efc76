//! Multi-head attention computed in host memory for the CPU backend (burn `flex`): for each
//! (batch, head) and block of query rows, `S = scale · Q Kᵀ` and `O = softmax(S) V` as two calls of
//! the `gemm` crate on strided views of the `[B, S, H·d]` projections (no head permute, no copies),
//! with a vectorisable row softmax in between. Same arithmetic as `F.scaled_dot_product_attention`
//! (PyTorch) / diffusers `AttnProcessor2_0`; the exponential is the Cephes `expf` range reduction
//! (Moshier, Cephes Math Library) with a degree-5 polynomial, within 2 ulp of `f32::exp` over the
//! softmax's range (tested). Blocks of query rows keep one score block within [`SCORE_BLOCK`]
//! floats (8 MiB), so memory stays bounded at any sequence length.
//!
//! Why: burn-flex's own attention tiles keys by 64 and calls GEMM per tile, which at SD1.5's
//! 4096 tokens and head size 40 is 4× slower than PyTorch (BENCHMARKS.md, "Full-size UNet step").

/// Score floats per block of query rows (rows = `SCORE_BLOCK / keys`, at least 1): 8 MiB, 512 rows
/// of 4096 keys. Larger blocks amortise the GEMM's packing of Kᵀ and V (re-packed per call);
/// 256K to 16M floats measured, 1M–4M fastest (the full-size [1, 8, 4096, 40] attention op).
pub const SCORE_BLOCK: usize = 1 << 21;

/// Shapes of one attention call: `q` `[batch, sq, heads·d]`, `k` `[batch, sk, heads·d]`,
/// `v` `[batch, sk, heads·dv]`, all row-major.
#[derive(Debug, Clone, Copy)]
pub struct Dims {
    pub batch: usize,
    pub heads: usize,
    pub sq: usize,
    pub sk: usize,
    pub d: usize,
    pub dv: usize,
}

/// Attention output `[batch, sq, heads·dv]` (row-major), scale `1/√d`; `causal` hides keys after
/// the query's own position (requires `sq == sk`). `None` when the slice lengths do not match
/// `dims` (the caller falls back to another kernel).
pub fn attention(q: &[f32], k: &[f32], v: &[f32], dims: Dims, causal: bool) -> Option<Vec<f32>> {
    let Dims { batch, heads, sq, sk, d, dv } = dims;
    let (c, cv) = (heads * d, heads * dv);
    if q.len() != batch * sq * c || k.len() != batch * sk * c || v.len() != batch * sk * cv || (causal && sq != sk) {
        return None;
    }
    let mut out = vec![0.0f32; batch * sq * cv];
    if out.is_empty() || sk == 0 || d == 0 {
        return Some(out);
    }
    let scale = 1.0 / (d as f32).sqrt();
    let rows = (SCORE_BLOCK / sk).clamp(1, sq);
    let mut scores = vec![0.0f32; rows * sk];
    let mut inv_sum = vec![0.0f32; rows];
    let softmax = softmax_for_this_cpu();
    for b in 0..batch {
        for h in 0..heads {
            let mut r0 = 0;
            while r0 < sq {
                let len = rows.min(sq - r0);
                let s = &mut scores[..len * sk];
                // SAFETY: every pointer below addresses a `len × d`, `d × sk`, `sk × dv` or
                // `len × dv` view whose last element lies inside its slice: the lengths were
                // checked against `dims` above, `r0 + len <= sq`, `h < heads`.
                unsafe {
                    // S = scale · Q[b, r0.., h] · K[b, .., h]ᵀ  (len × sk)
                    gemm::gemm(
                        len,
                        sk,
                        d,
                        s.as_mut_ptr(),
                        1,
                        sk as isize,
                        false,
                        q.as_ptr().add((b * sq + r0) * c + h * d),
                        1,
                        c as isize,
                        k.as_ptr().add(b * sk * c + h * d),
                        c as isize,
                        1,
                        0.0,
                        scale,
                        false,
                        false,
                        false,
                        gemm::Parallelism::None,
                    );
                }
                for (i, row) in s.chunks_exact_mut(sk).enumerate() {
                    let visible = if causal { r0 + i + 1 } else { sk };
                    inv_sum[i] = 1.0 / softmax(&mut row[..visible]);
                    row[visible..].fill(0.0);
                }
                // SAFETY: as above; `out` has the `[batch, sq, heads·dv]` length.
                unsafe {
                    // O[b, r0.., h] = P · V[b, .., h]  (len × dv), normalised below.
                    gemm::gemm(
                        len,
                        dv,
                        sk,
                        out.as_mut_ptr().add((b * sq + r0) * cv + h * dv),
                        1,
                        cv as isize,
                        false,
                        s.as_ptr(),
                        1,
                        sk as isize,
                        v.as_ptr().add(b * sk * cv + h * dv),
                        1,
                        cv as isize,
                        0.0,
                        1.0,
                        false,
                        false,
                        false,
                        gemm::Parallelism::None,
                    );
                }
                for (i, &inv) in inv_sum[..len].iter().enumerate() {
                    let o = (b * sq + r0 + i) * cv + h * dv;
                    out[o..o + dv].iter_mut().for_each(|x| *x *= inv);
                }
                r0 += len;
            }
        }
    }
    Some(out)
}

/// [`softmax_numerators`] compiled for the widest vectors this CPU has (checked at run time; the
/// baseline x86_64 build has only SSE2's 4 lanes).
fn softmax_for_this_cpu() -> fn(&mut [f32]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            return |row| {
                // SAFETY: the CPU has AVX-512F (checked just above).
                unsafe { softmax_avx512(row) }
            };
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
            return |row| {
                // SAFETY: the CPU has AVX2 and FMA (checked just above).
                unsafe { softmax_avx2(row) }
            };
        }
    }
    softmax_numerators
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn softmax_avx512(row: &mut [f32]) -> f32 {
    softmax_numerators(row)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn softmax_avx2(row: &mut [f32]) -> f32 {
    softmax_numerators(row)
}

/// Replaces `row` by `exp(row - max(row))` and returns the sum of the new values (≥ 1 for a
/// non-empty row of finite scores). Sixteen independent lanes so the loops vectorise at any
/// width (inlined into the per-CPU copies above).
#[inline(always)]
fn softmax_numerators(row: &mut [f32]) -> f32 {
    const L: usize = 16;
    let mut m = [f32::NEG_INFINITY; L];
    let mut chunks = row.chunks_exact(L);
    for ch in &mut chunks {
        for j in 0..L {
            m[j] = if ch[j] > m[j] { ch[j] } else { m[j] };
        }
    }
    let mut max = chunks.remainder().iter().fold(f32::NEG_INFINITY, |a, &x| if x > a { x } else { a });
    max = m.iter().fold(max, |a, &x| if x > a { x } else { a });
    let mut acc = [0.0f32; L];
    let mut chunks = row.chunks_exact_mut(L);
    for ch in &mut chunks {
        for j in 0..L {
            let e = exp_nonpositive(ch[j] - max);
            ch[j] = e;
            acc[j] += e;
        }
    }
    let mut sum = 0.0;
    for x in chunks.into_remainder() {
        *x = exp_nonpositive(*x - max);
        sum += *x;
    }
    sum + acc.iter().sum::<f32>()
}

/// `exp(x)` for `x ≤ 0` (softmax numerators), branch-free so it vectorises: `x = n·ln2 + r` with
/// `|r| ≤ ln2/2`, `e^r` by Cephes' polynomial, `2ⁿ` built in the exponent bits. Inputs below
/// −87.3 (−∞ included) give exp(−87.3) ≈ 1.2e-38, the smallest normal range: nothing next to a
/// row's maximum term, 1.
#[inline(always)]
fn exp_nonpositive(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    const ROUND: f32 = 12_582_912.0; // 1.5 · 2²³: adding it rounds to an integer in the low bits
    let x = x.max(-87.3);
    let t = x * LOG2E + ROUND;
    let n = t - ROUND;
    let r = x - n * LN2_HI - n * LN2_LO;
    let p = 1.987_569_1e-4_f32;
    let p = p * r + 1.398_199_9e-3;
    let p = p * r + 8.333_452e-3;
    let p = p * r + 4.166_579_6e-2;
    let p = p * r + 1.666_666_6e-1;
    let p = p * r + 0.5;
    let e = p * r * r + r + 1.0;
    // n in [-126, 0]: 2ⁿ as the float with biased exponent n + 127.
    let bits = (t.to_bits() as i32).wrapping_sub(ROUND.to_bits() as i32).wrapping_add(127) << 23;
    e * f32::from_bits(bits as u32)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::pseudo;

    /// Plain f64 attention, one query row at a time: the definition.
    fn reference(q: &[f32], k: &[f32], v: &[f32], dm: Dims, causal: bool) -> Vec<f32> {
        let Dims { batch, heads, sq, sk, d, dv } = dm;
        let (c, cv) = (heads * d, heads * dv);
        let mut out = vec![0.0f32; batch * sq * cv];
        for b in 0..batch {
            for h in 0..heads {
                for i in 0..sq {
                    let keys = if causal { i + 1 } else { sk };
                    let s: Vec<f64> = (0..keys)
                        .map(|j| {
                            (0..d).map(|t| q[(b * sq + i) * c + h * d + t] as f64 * k[(b * sk + j) * c + h * d + t] as f64).sum::<f64>() / (d as f64).sqrt()
                        })
                        .collect();
                    let max = s.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                    let e: Vec<f64> = s.iter().map(|x| (x - max).exp()).collect();
                    let sum: f64 = e.iter().sum();
                    for t in 0..dv {
                        let o: f64 = (0..keys).map(|j| e[j] * v[(b * sk + j) * cv + h * dv + t] as f64).sum();
                        out[(b * sq + i) * cv + h * dv + t] = (o / sum) as f32;
                    }
                }
            }
        }
        out
    }

    /// Self and cross attention, causal, rows split into several blocks (sk large enough that
    /// one block holds fewer rows than sq), odd sizes (remainder lanes), dv ≠ d.
    #[test]
    fn matches_the_definition() {
        let cases = [
            (Dims { batch: 2, heads: 3, sq: 13, sk: 13, d: 5, dv: 5 }, true),
            (Dims { batch: 2, heads: 3, sq: 13, sk: 13, d: 5, dv: 5 }, false),
            (Dims { batch: 1, heads: 2, sq: 9, sk: 77, d: 8, dv: 6 }, false),
            (Dims { batch: 1, heads: 1, sq: 5, sk: SCORE_BLOCK / 2 + 3, d: 4, dv: 3 }, false),
        ];
        for (i, (dm, causal)) in cases.into_iter().enumerate() {
            let q: Vec<f32> = pseudo(dm.batch * dm.sq * dm.heads * dm.d, 1 + i as u32).iter().map(|x| 3.0 * x).collect();
            let k = pseudo(dm.batch * dm.sk * dm.heads * dm.d, 2 + i as u32);
            let v = pseudo(dm.batch * dm.sk * dm.heads * dm.dv, 3 + i as u32);
            let got = attention(&q, &k, &v, dm, causal).expect("dims match");
            let want = reference(&q, &k, &v, dm, causal);
            let diff = got.iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
            assert!(diff <= 2e-6, "case {i}: max |diff| {diff}");
        }
    }

    #[test]
    fn rejects_mismatched_lengths() {
        let dm = Dims { batch: 1, heads: 2, sq: 3, sk: 4, d: 2, dv: 2 };
        assert!(attention(&[0.0; 12], &[0.0; 16], &[0.0; 15], dm, false).is_none());
        assert!(attention(&[0.0; 12], &[0.0; 16], &[0.0; 16], dm, true).is_none(), "causal needs sq == sk");
        assert_eq!(attention(&[0.0; 12], &[0.0; 16], &[0.0; 16], dm, false).map(|o| o.len()), Some(12));
    }

    /// Every compiled copy of the softmax this CPU can run gives the baseline's values.
    #[test]
    fn softmax_copies_agree() {
        let base: Vec<f32> = pseudo(1000, 9).iter().map(|x| 20.0 * x).collect();
        let run = |f: fn(&mut [f32]) -> f32| {
            let mut row = base.clone();
            let sum = f(&mut row);
            (row, sum)
        };
        let (want, want_sum) = run(softmax_numerators);
        let (got, got_sum) = run(softmax_for_this_cpu());
        assert!((want_sum - got_sum).abs() <= 1e-5 * want_sum);
        assert!(want.iter().zip(&got).all(|(a, b)| (a - b).abs() <= 1e-6), "per-CPU softmax differs");
        assert!(want.iter().all(|&x| (0.0..=1.0).contains(&x)) && want.contains(&1.0));
    }

    /// The exponential against `f32::exp` over the whole softmax range, and its flush to 0.
    #[test]
    fn exp_is_within_two_ulp() {
        let mut x = -87.0f32;
        while x <= 0.0 {
            let (a, b) = (exp_nonpositive(x), x.exp());
            let ulp = (a.to_bits() as i64 - b.to_bits() as i64).abs();
            assert!(ulp <= 2, "exp({x}) = {a}, std {b}: {ulp} ulp");
            x += 0.000_913;
        }
        assert_eq!(exp_nonpositive(0.0), 1.0);
        assert!(exp_nonpositive(f32::NEG_INFINITY) < 1e-37);
        assert!(exp_nonpositive(-1000.0) < 1e-37);
    }
}
