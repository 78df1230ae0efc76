//! The ANN's inner loops ([`super::ann`]): f32 × int8 dot products (exact re-scoring) and the pre-scan's
//! i16 × int8 integer dot products, as wasm simd128 code on wasm32, SSE2 on x86_64 (part of its
//! baseline) and scalar code elsewhere, with the same bits on all (each is tested against the
//! definitions in `tests/wasm_kernels.rs`, natively and in Node).

/// Pre-scan scores into `out`: for each row of `head` (rows of `q.len()` codes) the exact i32 dot
/// product `Σ q·c` (|q| ≤ 32767, |c| ≤ 127: no overflow below 516 components) times the row's scale
/// (finite scales give finite scores). Integer sums, so every platform gets the same scores.
pub fn head_scores(q: &[i16], head: &[i8], scales: &[f32], out: &mut Vec<f32>) {
    if q.is_empty() {
        return;
    }
    #[cfg(target_arch = "wasm32")]
    simd::head_scores(q, head, scales, out);
    #[cfg(target_arch = "x86_64")]
    sse::head_scores(q, head, scales, out);
    #[cfg(not(any(target_arch = "wasm32", target_arch = "x86_64")))]
    out.extend(head.chunks_exact(q.len()).zip(scales).map(|(r, &s)| q.iter().zip(r).map(|(&x, &y)| x as i32 * y as i32).sum::<i32>() as f32 * s));
}

/// The pre-scan with its threshold fused in: appends to `rows` (and `scores`), in row order, each row
/// of `head` whose [`head_scores`] score is `>= t`, without writing the other rows' scores.
pub fn head_rows_at_least(q: &[i16], head: &[i8], scales: &[f32], t: f32, rows: &mut Vec<u32>, scores: &mut Vec<f32>) {
    if q.is_empty() {
        return;
    }
    #[cfg(target_arch = "wasm32")]
    if q.len() == 64 {
        return simd::head_rows_at_least_64(q, head, scales, t, rows, scores);
    }
    for (i, (r, &sc)) in head.chunks_exact(q.len()).zip(scales).enumerate() {
        let x = dot_i8_i16(q, r) as f32 * sc;
        if x >= t {
            rows.push(i as u32);
            scores.push(x);
        }
    }
}

/// `Σ q·c` over i16 × int8 in i32, exact for |q| ≤ 32767 and up to 512 components (|Σ| ≤ 512 · 32767 · 128 < 2³¹).
pub fn dot_i8_i16(q: &[i16], c: &[i8]) -> i32 {
    #[cfg(target_arch = "wasm32")]
    {
        simd::dot_i8_i16(q, c)
    }
    #[cfg(target_arch = "x86_64")]
    {
        sse::dot_i8_i16(q, c)
    }
    #[cfg(not(any(target_arch = "wasm32", target_arch = "x86_64")))]
    {
        q.iter().zip(c).map(|(&x, &y)| x as i32 * y as i32).sum()
    }
}

/// [`dot_i8_i16`] of one query with four rows of equal length, interleaved (their memory reads overlap).
pub fn dot_i8_i16_4(q: &[i16], r: [&[i8]; 4]) -> [i32; 4] {
    #[cfg(target_arch = "wasm32")]
    {
        simd::dot_i8_i16_4(q, r)
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        r.map(|c| dot_i8_i16(q, c))
    }
}

/// Appends to `out`, in order, the rows whose score is `>= t` (IEEE comparison).
pub fn rows_at_least(scores: &[f32], t: f32, out: &mut Vec<u32>) {
    #[cfg(target_arch = "wasm32")]
    simd::rows_at_least(scores, t, out);
    #[cfg(not(target_arch = "wasm32"))]
    out.extend(scores.iter().enumerate().filter(|(_, &x)| x >= t).map(|(i, _)| i as u32));
}

/// `Σ q·c` over f32 × int8, in eight independent partial sums (lanes `j mod 8`, added pairwise at the
/// end, then the tail past the last multiple of 8): no serial dependency chain, so scalar wasm and native code keep several adds in flight and
/// native code vectorizes. The same order on every platform, hence the same bits native and wasm32.
pub fn dot_i8(q: &[f32], c: &[i8]) -> f32 {
    #[cfg(target_arch = "wasm32")]
    {
        simd::dot_i8(q, c)
    }
    #[cfg(target_arch = "x86_64")]
    {
        sse::dot_i8(q, c)
    }
    #[cfg(not(any(target_arch = "wasm32", target_arch = "x86_64")))]
    {
        dot_i8_scalar(q, c)
    }
}

/// [`dot_i8`] of one query with two rows (the same two results, bit for bit).
pub fn dot_i8_2(q: &[f32], a: &[i8], b: &[i8]) -> (f32, f32) {
    #[cfg(target_arch = "wasm32")]
    {
        simd::dot_i8_2(q, a, b)
    }
    #[cfg(target_arch = "x86_64")]
    {
        sse::dot_i8_2(q, a, b)
    }
    #[cfg(not(any(target_arch = "wasm32", target_arch = "x86_64")))]
    {
        (dot_i8_scalar(q, a), dot_i8_scalar(q, b))
    }
}

/// The definition the vector kernels reproduce (and the code on other targets).
#[cfg_attr(any(target_arch = "wasm32", target_arch = "x86_64"), allow(dead_code))]
fn dot_i8_scalar(q: &[f32], c: &[i8]) -> f32 {
    // written out (not an inner loop over an array) so that size-optimised builds keep the sums in registers
    let (mut a0, mut a1, mut a2, mut a3, mut a4, mut a5, mut a6, mut a7) = (0f32, 0f32, 0f32, 0f32, 0f32, 0f32, 0f32, 0f32);
    let (qc, cc) = (q.chunks_exact(8), c.chunks_exact(8));
    let tail: f32 = qc.remainder().iter().zip(cc.remainder()).map(|(x, &y)| x * y as f32).sum();
    for (q, c) in qc.zip(cc) {
        a0 += q[0] * c[0] as f32;
        a1 += q[1] * c[1] as f32;
        a2 += q[2] * c[2] as f32;
        a3 += q[3] * c[3] as f32;
        a4 += q[4] * c[4] as f32;
        a5 += q[5] * c[5] as f32;
        a6 += q[6] * c[6] as f32;
        a7 += q[7] * c[7] as f32;
    }
    ((a0 + a4) + (a2 + a6)) + ((a1 + a5) + (a3 + a7)) + tail
}

/// [`dot_i8`], [`dot_i8_2`], [`dot_i8_i16`], [`dot_i8_i16_4`], [`head_scores`], `head_rows_at_least` and [`rows_at_least`] in wasm simd128. `dot_i8`: lanes 0–3 and 4–7 of each group of eight
/// in two f32x4 sums, the same per-lane order and final pairing as the scalar code, so the bits are the
/// same; `head_scores` sums integers exactly. The module then needs
/// wasm SIMD, which every runtime we target has (V8 in workerd, Chrome and Node; Firefox 89+; Safari 16.4+).
#[cfg(target_arch = "wasm32")]
mod simd {
    use core::arch::wasm32::*;

    #[target_feature(enable = "simd128")]
    pub fn dot_i8(q: &[f32], c: &[i8]) -> f32 {
        let n = q.len().min(c.len());
        let full = n / 8 * 8;
        let (mut lo, mut hi) = (f32x4_splat(0.0), f32x4_splat(0.0));
        let mut i = 0;
        while i < full {
            // SAFETY: i + 8 <= full <= both lengths, so the 8 bytes of `c` and 8 floats of `q` read
            // here are in bounds; wasm loads have no alignment requirement.
            let (w, q0, q1) = unsafe {
                (i16x8_load_extend_i8x8(c.as_ptr().add(i)), v128_load(q.as_ptr().add(i) as *const v128), v128_load(q.as_ptr().add(i + 4) as *const v128))
            };
            lo = f32x4_add(lo, f32x4_mul(q0, f32x4_convert_i32x4(i32x4_extend_low_i16x8(w))));
            hi = f32x4_add(hi, f32x4_mul(q1, f32x4_convert_i32x4(i32x4_extend_high_i16x8(w))));
            i += 8;
        }
        finish(lo, hi, &q[full..n], &c[full..n])
    }

    #[target_feature(enable = "simd128")]
    pub fn dot_i8_i16(q: &[i16], c: &[i8]) -> i32 {
        let n = q.len().min(c.len());
        let full = n / 8 * 8;
        let (mut a, mut b) = (i32x4_splat(0), i32x4_splat(0));
        let mut i = 0;
        while i + 16 <= full {
            // SAFETY: i + 16 <= full <= both lengths.
            unsafe {
                a = i32x4_add(a, i32x4_dot_i16x8(i16x8_load_extend_i8x8(c.as_ptr().add(i)), v128_load(q.as_ptr().add(i) as *const v128)));
                b = i32x4_add(b, i32x4_dot_i16x8(i16x8_load_extend_i8x8(c.as_ptr().add(i + 8)), v128_load(q.as_ptr().add(i + 8) as *const v128)));
            }
            i += 16;
        }
        if i < full {
            // SAFETY: i + 8 <= full.
            a = i32x4_add(a, unsafe { i32x4_dot_i16x8(i16x8_load_extend_i8x8(c.as_ptr().add(i)), v128_load(q.as_ptr().add(i) as *const v128)) });
        }
        let v = i32x4_add(a, b);
        let tail: i32 = q[full..n].iter().zip(&c[full..n]).map(|(&x, &y)| x as i32 * y as i32).sum();
        i32x4_extract_lane::<0>(v) + i32x4_extract_lane::<1>(v) + i32x4_extract_lane::<2>(v) + i32x4_extract_lane::<3>(v) + tail
    }

    #[target_feature(enable = "simd128")]
    pub fn dot_i8_i16_4(q: &[i16], r: [&[i8]; 4]) -> [i32; 4] {
        let n = r[0].len();
        if q.len() < n || r.iter().any(|c| c.len() != n) {
            return r.map(|c| dot_i8_i16(q, c));
        }
        let full = n / 8 * 8;
        let mut acc = [i32x4_splat(0); 4];
        let mut i = 0;
        while i < full {
            // SAFETY: i + 8 <= full <= n = every row's length <= q.len().
            unsafe {
                let x = v128_load(q.as_ptr().add(i) as *const v128);
                for j in 0..4 {
                    acc[j] = i32x4_add(acc[j], i32x4_dot_i16x8(i16x8_load_extend_i8x8(r[j].as_ptr().add(i)), x));
                }
            }
            i += 8;
        }
        std::array::from_fn(|j| {
            let v = acc[j];
            let tail: i32 = q[full..n].iter().zip(&r[j][full..]).map(|(&x, &y)| x as i32 * y as i32).sum();
            i32x4_extract_lane::<0>(v) + i32x4_extract_lane::<1>(v) + i32x4_extract_lane::<2>(v) + i32x4_extract_lane::<3>(v) + tail
        })
    }

    /// Four scores compared at a time; rows are pushed only where a lane passes.
    #[target_feature(enable = "simd128")]
    pub fn rows_at_least(scores: &[f32], t: f32, out: &mut Vec<u32>) {
        let tv = f32x4_splat(t);
        let full = scores.len() / 4 * 4;
        let mut i = 0;
        while i < full {
            // SAFETY: i + 4 <= full <= scores.len().
            let m = i32x4_bitmask(f32x4_ge(unsafe { v128_load(scores.as_ptr().add(i) as *const v128) }, tv));
            if m != 0 {
                for j in 0..4 {
                    if m & (1 << j) != 0 {
                        out.push((i + j) as u32);
                    }
                }
            }
            i += 4;
        }
        out.extend((full..scores.len()).filter(|&j| scores[j] >= t).map(|j| j as u32));
    }

    /// Two rows interleaved, each with its own two sums in the order of `dot_i8`.
    #[target_feature(enable = "simd128")]
    pub fn dot_i8_2(q: &[f32], a: &[i8], b: &[i8]) -> (f32, f32) {
        if a.len() != b.len() || q.len() < a.len() {
            return (dot_i8(q, a), dot_i8(q, b));
        }
        let n = a.len();
        let full = n / 8 * 8;
        let z = f32x4_splat(0.0);
        let (mut alo, mut ahi, mut blo, mut bhi) = (z, z, z, z);
        let mut i = 0;
        while i < full {
            // SAFETY: i + 8 <= full <= n = a.len() = b.len() <= q.len().
            let (wa, wb, q0, q1) = unsafe {
                (
                    i16x8_load_extend_i8x8(a.as_ptr().add(i)),
                    i16x8_load_extend_i8x8(b.as_ptr().add(i)),
                    v128_load(q.as_ptr().add(i) as *const v128),
                    v128_load(q.as_ptr().add(i + 4) as *const v128),
                )
            };
            alo = f32x4_add(alo, f32x4_mul(q0, f32x4_convert_i32x4(i32x4_extend_low_i16x8(wa))));
            ahi = f32x4_add(ahi, f32x4_mul(q1, f32x4_convert_i32x4(i32x4_extend_high_i16x8(wa))));
            blo = f32x4_add(blo, f32x4_mul(q0, f32x4_convert_i32x4(i32x4_extend_low_i16x8(wb))));
            bhi = f32x4_add(bhi, f32x4_mul(q1, f32x4_convert_i32x4(i32x4_extend_high_i16x8(wb))));
            i += 8;
        }
        (finish(alo, ahi, &q[full..n], &a[full..]), finish(blo, bhi, &q[full..n], &b[full..]))
    }

    /// The scalar code's final pairing of the eight lane sums, then the tail.
    #[target_feature(enable = "simd128")]
    fn finish(lo: v128, hi: v128, q: &[f32], c: &[i8]) -> f32 {
        let tail: f32 = q.iter().zip(c).map(|(x, &y)| x * y as f32).sum();
        let l = |v: v128, j: usize| match j {
            0 => f32x4_extract_lane::<0>(v),
            1 => f32x4_extract_lane::<1>(v),
            2 => f32x4_extract_lane::<2>(v),
            _ => f32x4_extract_lane::<3>(v),
        };
        ((l(lo, 0) + l(hi, 0)) + (l(lo, 2) + l(hi, 2))) + ((l(lo, 1) + l(hi, 1)) + (l(lo, 3) + l(hi, 3))) + tail
    }

    #[target_feature(enable = "simd128")]
    pub fn head_scores(q: &[i16], head: &[i8], scales: &[f32], out: &mut Vec<f32>) {
        let m = q.len();
        if m == 64 {
            return head_scores_64(q, head, scales, out);
        }
        let full = m / 8 * 8;
        for (r, &s) in head.chunks_exact(m).zip(scales) {
            let mut acc = i32x4_splat(0);
            let mut i = 0;
            while i < full {
                // SAFETY: i + 8 <= full <= m = r.len() = q.len(): 8 bytes of `r` and 8 i16 of `q` are in bounds.
                let (w, x) = unsafe { (i16x8_load_extend_i8x8(r.as_ptr().add(i)), v128_load(q.as_ptr().add(i) as *const v128)) };
                acc = i32x4_add(acc, i32x4_dot_i16x8(w, x));
                i += 8;
            }
            let tail: i32 = q[full..].iter().zip(&r[full..]).map(|(&x, &y)| x as i32 * y as i32).sum();
            let dot = i32x4_extract_lane::<0>(acc) + i32x4_extract_lane::<1>(acc) + i32x4_extract_lane::<2>(acc) + i32x4_extract_lane::<3>(acc) + tail;
            out.push(dot as f32 * s);
        }
    }

    /// The 64-component scan, expanded inside each caller (a helper function is not inlined into
    /// them in size-optimised builds, which costs more than a tenth of the scan): the query in eight
    /// registers, four 16-byte loads per row, rows in blocks of four whose sums are reduced together
    /// (one int → float conversion and scale product per block). `$block` runs with `$i` (the
    /// block's first row) and `$v` (its four scores), `$single` for each row after the last block.
    macro_rules! scan_64 {
        ($q:expr, $head:expr, $scales:expr, |$i:ident, $v:ident| $block:block, |$r1:ident, $x:ident| $single:block) => {{
            let (q, head, scales): (&[i16], &[i8], &[f32]) = ($q, $head, $scales);
            assert_eq!(q.len(), 64);
            // one row's four i32 partial sums (the tail rows)
            let row = |r: &[i8]| {
                let mut acc = i32x4_splat(0);
                for j in 0..4 {
                    // SAFETY: r has 64 bytes and q 64 i16: bytes 16j..16j+16 and i16 16j..16j+16 are in bounds.
                    let (b, q0, q1) = unsafe {
                        (v128_load(r.as_ptr().add(16 * j) as *const v128), v128_load(q.as_ptr().add(16 * j) as *const v128), v128_load(q.as_ptr().add(16 * j + 8) as *const v128))
                    };
                    acc = i32x4_add(acc, i32x4_dot_i16x8(i16x8_extend_low_i8x16(b), q0));
                    acc = i32x4_add(acc, i32x4_dot_i16x8(i16x8_extend_high_i8x16(b), q1));
                }
                acc
            };
            // four rows (256 bytes) at once, 16 components at a time: four sums and two query registers
            // live (few registers: nothing spills)
            let block = |r: &[i8]| {
                let z = i32x4_splat(0);
                let (mut a, mut b, mut c, mut d) = (z, z, z, z);
                for j in 0..4 {
                    // SAFETY: q has 64 i16 and r 256 bytes: every offset below is in bounds.
                    unsafe {
                        let (q0, q1) = (v128_load(q.as_ptr().add(16 * j) as *const v128), v128_load(q.as_ptr().add(16 * j + 8) as *const v128));
                        let x = v128_load(r.as_ptr().add(16 * j) as *const v128);
                        a = i32x4_add(a, i32x4_add(i32x4_dot_i16x8(i16x8_extend_low_i8x16(x), q0), i32x4_dot_i16x8(i16x8_extend_high_i8x16(x), q1)));
                        let x = v128_load(r.as_ptr().add(64 + 16 * j) as *const v128);
                        b = i32x4_add(b, i32x4_add(i32x4_dot_i16x8(i16x8_extend_low_i8x16(x), q0), i32x4_dot_i16x8(i16x8_extend_high_i8x16(x), q1)));
                        let x = v128_load(r.as_ptr().add(128 + 16 * j) as *const v128);
                        c = i32x4_add(c, i32x4_add(i32x4_dot_i16x8(i16x8_extend_low_i8x16(x), q0), i32x4_dot_i16x8(i16x8_extend_high_i8x16(x), q1)));
                        let x = v128_load(r.as_ptr().add(192 + 16 * j) as *const v128);
                        d = i32x4_add(d, i32x4_add(i32x4_dot_i16x8(i16x8_extend_low_i8x16(x), q0), i32x4_dot_i16x8(i16x8_extend_high_i8x16(x), q1)));
                    }
                }
                (a, b, c, d)
            };
            let rows = scales.len().min(head.len() / 64);
            let rest = rows / 4 * 4;
            for (blk, (r, s)) in head[..rest * 64].chunks_exact(256).zip(scales.chunks_exact(4)).enumerate() {
                assert!(r.len() == 256);
                let (a, b, c, d) = block(r);
                // lanes: ab = [a0+a2, b0+b2, a1+a3, b1+b3], cd likewise, then [Σa, Σb, Σc, Σd]
                let ab = i32x4_add(i32x4_shuffle::<0, 4, 1, 5>(a, b), i32x4_shuffle::<2, 6, 3, 7>(a, b));
                let cd = i32x4_add(i32x4_shuffle::<0, 4, 1, 5>(c, d), i32x4_shuffle::<2, 6, 3, 7>(c, d));
                let sums = i32x4_add(i32x4_shuffle::<0, 1, 4, 5>(ab, cd), i32x4_shuffle::<2, 3, 6, 7>(ab, cd));
                let $i = 4 * blk;
                // SAFETY: s has 4 floats.
                let $v = f32x4_mul(f32x4_convert_i32x4(sums), unsafe { v128_load(s.as_ptr() as *const v128) });
                $block
            }
            for (k, (r, &s)) in head[rest * 64..rows * 64].chunks_exact(64).zip(&scales[rest..rows]).enumerate() {
                let a = row(r);
                let dot = i32x4_extract_lane::<0>(a) + i32x4_extract_lane::<1>(a) + i32x4_extract_lane::<2>(a) + i32x4_extract_lane::<3>(a);
                let ($r1, $x) = (rest + k, dot as f32 * s);
                $single
            }
        }};
    }

    #[target_feature(enable = "simd128")]
    fn head_scores_64(q: &[i16], head: &[i8], scales: &[f32], out: &mut Vec<f32>) {
        let start = out.len();
        out.resize(start + scales.len().min(head.len() / 64) / 4 * 4, 0.0);
        scan_64!(
            q,
            head,
            scales,
            |i, v| {
                // SAFETY: block i covers rows i..i + 4 of the whole blocks, whose scores were sized above.
                unsafe { v128_store(out.as_mut_ptr().add(start + i) as *mut v128, v) }
            },
            |_r, x| { out.push(x) }
        );
    }

    /// [`super::head_rows_at_least`] for 64 components: each block's four scores compared at once,
    /// rows pushed only where a lane passes.
    #[target_feature(enable = "simd128")]
    pub fn head_rows_at_least_64(q: &[i16], head: &[i8], scales: &[f32], t: f32, rows: &mut Vec<u32>, scores: &mut Vec<f32>) {
        let tv = f32x4_splat(t);
        scan_64!(
            q,
            head,
            scales,
            |i, v| {
                let m = i32x4_bitmask(f32x4_ge(v, tv));
                if m != 0 {
                    let mut l = [0f32; 4];
                    // SAFETY: l holds four floats.
                    unsafe { v128_store(l.as_mut_ptr() as *mut v128, v) };
                    for (j, x) in l.into_iter().enumerate() {
                        if m & (1 << j) != 0 {
                            rows.push((i + j) as u32);
                            scores.push(x);
                        }
                    }
                }
            },
            |r, x| {
                if x >= t {
                    rows.push(r as u32);
                    scores.push(x);
                }
            }
        );
    }
}

/// [`dot_i8`], [`dot_i8_2`], [`dot_i8_i16`] and [`head_scores`] in SSE2 (always present on x86_64): the same lanes, pairing and
/// integer sums as the wasm code. i8 → i16 sign extension by unpacking a byte with itself and shifting
/// right arithmetically by 8 (SSE2 has no `pmovsx`).
#[cfg(target_arch = "x86_64")]
mod sse {
    use core::arch::x86_64::*;

    /// Sign-extended i16 lanes of the low and high eight bytes of `b`.
    #[inline(always)]
    fn widen(b: __m128i) -> (__m128i, __m128i) {
        // SAFETY (all intrinsics in this module): SSE2 is part of the x86_64 baseline.
        unsafe { (_mm_srai_epi16(_mm_unpacklo_epi8(b, b), 8), _mm_srai_epi16(_mm_unpackhi_epi8(b, b), 8)) }
    }

    /// f32 lanes of the low and high four i16 of `w`.
    #[inline(always)]
    fn to_f32(w: __m128i) -> (__m128, __m128) {
        unsafe { (_mm_cvtepi32_ps(_mm_srai_epi32(_mm_unpacklo_epi16(w, w), 16)), _mm_cvtepi32_ps(_mm_srai_epi32(_mm_unpackhi_epi16(w, w), 16))) }
    }

    fn lanes(v: __m128) -> [f32; 4] {
        let mut out = [0f32; 4];
        // SAFETY: out holds four floats.
        unsafe { _mm_storeu_ps(out.as_mut_ptr(), v) };
        out
    }

    fn finish(lo: __m128, hi: __m128, q: &[f32], c: &[i8]) -> f32 {
        let tail: f32 = q.iter().zip(c).map(|(x, &y)| x * y as f32).sum();
        let (l, h) = (lanes(lo), lanes(hi));
        ((l[0] + h[0]) + (l[2] + h[2])) + ((l[1] + h[1]) + (l[3] + h[3])) + tail
    }

    pub fn dot_i8(q: &[f32], c: &[i8]) -> f32 {
        let n = q.len().min(c.len());
        let full = n / 8 * 8;
        let (mut lo, mut hi) = unsafe { (_mm_setzero_ps(), _mm_setzero_ps()) };
        let mut i = 0;
        while i < full {
            // SAFETY: i + 8 <= full <= n: 8 bytes of c and 8 floats of q are in bounds.
            unsafe {
                let (c0, c1) = to_f32(widen(_mm_loadl_epi64(c.as_ptr().add(i) as *const __m128i)).0);
                lo = _mm_add_ps(lo, _mm_mul_ps(_mm_loadu_ps(q.as_ptr().add(i)), c0));
                hi = _mm_add_ps(hi, _mm_mul_ps(_mm_loadu_ps(q.as_ptr().add(i + 4)), c1));
            }
            i += 8;
        }
        finish(lo, hi, &q[full..n], &c[full..n])
    }

    pub fn dot_i8_2(q: &[f32], a: &[i8], b: &[i8]) -> (f32, f32) {
        let n = q.len().min(a.len()).min(b.len());
        if a.len() != b.len() {
            return (dot_i8(q, a), dot_i8(q, b));
        }
        let full = n / 8 * 8;
        let z = unsafe { _mm_setzero_ps() };
        let (mut alo, mut ahi, mut blo, mut bhi) = (z, z, z, z);
        let mut i = 0;
        while i < full {
            // SAFETY: i + 8 <= full <= n: 8 bytes of a and b and 8 floats of q are in bounds.
            unsafe {
                let (wa, _) = widen(_mm_loadl_epi64(a.as_ptr().add(i) as *const __m128i));
                let (wb, _) = widen(_mm_loadl_epi64(b.as_ptr().add(i) as *const __m128i));
                let (q0, q1) = (_mm_loadu_ps(q.as_ptr().add(i)), _mm_loadu_ps(q.as_ptr().add(i + 4)));
                let ((a0, a1), (b0, b1)) = (to_f32(wa), to_f32(wb));
                alo = _mm_add_ps(alo, _mm_mul_ps(q0, a0));
                ahi = _mm_add_ps(ahi, _mm_mul_ps(q1, a1));
                blo = _mm_add_ps(blo, _mm_mul_ps(q0, b0));
                bhi = _mm_add_ps(bhi, _mm_mul_ps(q1, b1));
            }
            i += 8;
        }
        (finish(alo, ahi, &q[full..n], &a[full..n]), finish(blo, bhi, &q[full..n], &b[full..n]))
    }

    pub fn dot_i8_i16(q: &[i16], r: &[i8]) -> i32 {
        let m = q.len().min(r.len());
        let full = m / 16 * 16;
        let mut acc = unsafe { _mm_setzero_si128() };
        let mut i = 0;
        while i < full {
            // SAFETY: i + 16 <= full <= m: 16 bytes of r and 16 i16 of q are in bounds.
            unsafe {
                let (lo, hi) = widen(_mm_loadu_si128(r.as_ptr().add(i) as *const __m128i));
                let (q0, q1) = (_mm_loadu_si128(q.as_ptr().add(i) as *const __m128i), _mm_loadu_si128(q.as_ptr().add(i + 8) as *const __m128i));
                acc = _mm_add_epi32(acc, _mm_add_epi32(_mm_madd_epi16(lo, q0), _mm_madd_epi16(hi, q1)));
            }
            i += 16;
        }
        let mut l = [0i32; 4];
        // SAFETY: l holds four i32.
        unsafe { _mm_storeu_si128(l.as_mut_ptr() as *mut __m128i, acc) };
        let tail: i32 = q[full..m].iter().zip(&r[full..m]).map(|(&x, &y)| x as i32 * y as i32).sum();
        l[0] + l[1] + l[2] + l[3] + tail
    }

    pub fn head_scores(q: &[i16], head: &[i8], scales: &[f32], out: &mut Vec<f32>) {
        out.extend(head.chunks_exact(q.len()).zip(scales).map(|(r, &s)| dot_i8_i16(q, r) as f32 * s));
    }
}
