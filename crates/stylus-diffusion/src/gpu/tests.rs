//! Tests of `gpu/`: every routine against an f64 definition, flash attention against the
//! explicit one, `linear` against burn's, the `Auto` rule (run on lavapipe with `STYLUS_DEVICE=wgpu`).

use super::*;
use crate::nn::{from_vec, to_vec};
use crate::testing::{max_diff, pseudo};

/// `a [bs_a, m, k] · b [bs_b, k, n]` in f64 with batch broadcast (one side's batch may be 1).
fn reference(a: &[f32], b: &[f32], [ba, bb, m, k, n]: [usize; 5]) -> Vec<f32> {
    let bs = ba.max(bb);
    let mut out = vec![0f32; bs * m * n];
    for z in 0..bs {
        let (za, zb) = (if ba == 1 { 0 } else { z }, if bb == 1 { 0 } else { z });
        for i in 0..m {
            for j in 0..n {
                let s: f64 = (0..k).map(|p| a[za * m * k + i * k + p] as f64 * b[zb * k * n + p * n + j] as f64).sum();
                out[z * m * n + i * n + j] = s as f32;
            }
        }
    }
    out
}

/// Every routine computes the product (odd sizes, batch broadcast either side, a strided
/// operand) to f32 rounding, on the device `STYLUS_DEVICE` names; on wgpu each routine must
/// really run (not fall back to burn's matmul).
#[test]
fn every_routine_matches_the_definition() {
    let dev = crate::device_from_env().unwrap();
    for dims @ [ba, bb, m, k, n] in [[1, 1, 17, 33, 9], [2, 1, 64, 40, 48], [1, 2, 8, 96, 130]] {
        let (av, bv) = (pseudo(ba * m * k, 1), pseudo(bb * k * n, 2));
        let want = reference(&av, &bv, dims);
        let a = from_vec(av, [ba, m, k], &dev).unwrap();
        let b = from_vec(bv, [bb, k, n], &dev).unwrap();
        for kind in routines(&a) {
            if kind == GpuMatmul::Tiled && cube::is_cube(&a) {
                assert!(tiled_matmul(&a, &b).is_some(), "tiled refused {dims:?}");
            } else if !matches!(kind, GpuMatmul::Backend | GpuMatmul::Auto) && cube::is_cube(&a) && (!kind.is_cmma() || tensor_cores(&a)) {
                assert!(cube::matmul(&a, &b, kind).is_some(), "{kind:?} refused {dims:?}");
            }
            let got = to_vec(matmul_with(a.clone(), b.clone(), kind)).unwrap();
            assert_eq!(got.len(), want.len());
            let err = max_diff(&got, &want);
            assert!(err <= 1e-4 * k as f32, "{kind:?} {dims:?}: max |diff| {err}");
        }
        // a transposed (strided) right operand, as attention's `k.swap_dims`
        let bt = from_vec(transpose(&pseudo(bb * k * n, 2), bb, k, n), [bb, n, k], &dev).unwrap().swap_dims(1, 2);
        for kind in routines(&a) {
            let got = to_vec(matmul_with(a.clone(), bt.clone(), kind)).unwrap();
            let err = max_diff(&got, &want);
            assert!(err <= 1e-4 * k as f32, "{kind:?} {dims:?} strided: {err}");
        }
    }
}

/// The routines worth testing on `t`'s device: all of them, but where the adapter has no tensor
/// cores only the first cmma routine (the others fall back to the same burn op).
fn routines<const D: usize>(t: &Tensor<D>) -> Vec<GpuMatmul> {
    let tc = tensor_cores(t);
    GpuMatmul::ALL.into_iter().filter(|k| tc || !k.is_cmma() || *k == GpuMatmul::SimpleCmma).collect()
}

/// `[bs, r, c]` → `[bs, c, r]`.
fn transpose(x: &[f32], bs: usize, r: usize, c: usize) -> Vec<f32> {
    (0..bs).flat_map(|z| (0..c).flat_map(move |j| (0..r).map(move |i| x[z * r * c + i * c + j]))).collect()
}

/// Flash attention agrees with the explicit definition (self and cross attention, causal,
/// SD1.5's head dim 40, a query count no tile divides) wherever it runs; on wgpu it must run.
#[test]
fn flash_attention_matches_explicit() {
    use crate::attention::{multi_head_attention, AttentionConfig, AttentionKernel};
    let dev = crate::device_from_env().unwrap();
    let (b, heads, d) = (2, 2, 40);
    for (sq, sk, causal) in [(70, 70, false), (70, 77, false), (33, 33, true)] {
        let c = heads * d;
        let q = from_vec(pseudo(b * sq * c, 6), [b, sq, c], &dev).unwrap();
        let k = from_vec(pseudo(b * sk * c, 7), [b, sk, c], &dev).unwrap();
        let v = from_vec(pseudo(b * sk * c, 8), [b, sk, c], &dev).unwrap();
        let cfg = |kernel| AttentionConfig { kernel, ..Default::default() };
        let want = to_vec(multi_head_attention(q.clone(), k.clone(), v.clone(), heads, causal, &cfg(AttentionKernel::Explicit))).unwrap();
        let got = to_vec(multi_head_attention(q.clone(), k.clone(), v.clone(), heads, causal, &cfg(AttentionKernel::Flash))).unwrap();
        let err = max_diff(&got, &want);
        assert!(err <= 1e-4, "sq {sq} sk {sk} causal {causal}: {err}");
        if cube::is_cube(&q) {
            let split = |x: Tensor<3>, s| x.reshape([b, s, heads, d]).swap_dims(1, 2);
            assert!(flash_attention(&split(q, sq), &split(k, sk), &split(v, sk), causal).is_some(), "flash did not run");
        }
    }
}

/// `softmax(q·kᵀ/√d)·v` per head in f64, `[b, s, h, d]` layouts (`causal`: keys after the query's
/// own position hidden).
fn attention_reference(q: &[f32], k: &[f32], v: &[f32], [b, sq, sk, h, d, dv]: [usize; 6], causal: bool) -> Vec<f32> {
    let mut out = vec![0f32; b * sq * h * dv];
    for (z, head, i) in (0..b).flat_map(|z| (0..h).flat_map(move |hh| (0..sq).map(move |i| (z, hh, i)))) {
        let keys = if causal { i + 1 } else { sk };
        let dot = |j: usize| (0..d).map(|c| q[((z * sq + i) * h + head) * d + c] as f64 * k[((z * sk + j) * h + head) * d + c] as f64).sum::<f64>();
        let s: Vec<f64> = (0..keys).map(|j| dot(j) / (d as f64).sqrt()).collect();
        let m = s.iter().cloned().fold(f64::MIN, f64::max);
        let p: Vec<f64> = s.iter().map(|x| (x - m).exp()).collect();
        let total: f64 = p.iter().sum();
        for c in 0..dv {
            let acc: f64 = (0..keys).map(|j| p[j] * v[((z * sk + j) * h + head) * dv + c] as f64).sum();
            out[((z * sq + i) * h + head) * dv + c] = (acc / total) as f32;
        }
    }
    out
}

/// The fused kernel (`rows.rs`) computes attention: SD1.5's head dims (40, 80, 160: one, two and
/// four staged blocks' worth of sizes), key counts no block divides (77), several workgroups of
/// rows (150), cross and causal attention, large scores (inputs ×6: the running max must rescale),
/// a strided `q`, a head dim that is not a multiple of 4 (zero lanes), one to four rows per unit
/// (the default by head dim, and 1 and 3 forced: a workgroup's last rows beyond the end); on wgpu it must really run. Elsewhere (and past its
/// head-dim limit) the attention falls back to the explicit one and is still right.
#[test]
fn fused_attention_matches_the_definition() {
    use crate::attention::{multi_head_attention, AttentionConfig, AttentionKernel};
    let dev = crate::device_from_env().unwrap();
    let cfg = AttentionConfig { kernel: AttentionKernel::Fused, ..Default::default() };
    assert_eq!([fused_rows_per_unit(40, 40), fused_rows_per_unit(80, 80), fused_rows_per_unit(160, 160), fused_rows_per_unit(8, 8)], [2, 1, 1, 4]);
    for (b, h, d, sq, sk, causal, gain, per_unit) in [
        (2, 2, 40, 70, 70, false, 1.0, 0),
        (1, 2, 40, 150, 77, false, 6.0, 0),
        (1, 2, 40, 150, 77, false, 6.0, 1),
        (2, 1, 80, 33, 33, true, 6.0, 0),
        (2, 1, 40, 200, 200, true, 1.0, 3),
        (1, 2, 160, 5, 40, false, 1.0, 0),
        (1, 1, 8, 1, 1, true, 1.0, 0),
        (1, 3, 6, 20, 9, false, 1.0, 0),
        (1, 1, 161, 3, 4, false, 1.0, 0),
    ] {
        set_fused_rows_per_unit(per_unit);
        let c = h * d;
        let scaled = |n, seed| pseudo(n, seed).into_iter().map(|x| x * gain).collect::<Vec<_>>();
        let (qv, kv, vv) = (scaled(b * sq * c, 12), scaled(b * sk * c, 13), pseudo(b * sk * c, 14));
        let want = attention_reference(&qv, &kv, &vv, [b, sq, sk, h, d, d], causal);
        // q through a transpose, as a strided view
        let qt: Vec<f32> = (0..b).flat_map(|z| (0..c).flat_map(move |j| (0..sq).map(move |i| (z, i, j)))).map(|(z, i, j)| qv[(z * sq + i) * c + j]).collect();
        let q = from_vec(qt, [b, c, sq], &dev).unwrap().swap_dims(1, 2);
        let k = from_vec(kv, [b, sk, c], &dev).unwrap();
        let v = from_vec(vv, [b, sk, c], &dev).unwrap();
        let got = to_vec(multi_head_attention(q.clone(), k.clone(), v.clone(), h, causal, &cfg)).unwrap();
        assert_eq!(got.len(), want.len());
        let err = max_diff(&got, &want);
        assert!(err <= 2e-5, "b {b} h {h} d {d} sq {sq} sk {sk} causal {causal} rows/unit {per_unit}: {err}");
        if cube::is_cube(&q) {
            let split = |x: Tensor<3>, s| x.reshape([b, s, h, d]);
            let ran = fused_attention(&split(q, sq), &split(k, sk), &split(v, sk), causal).is_some();
            assert_eq!(ran, d <= 160, "d {d}: the fused kernel runs up to head dim 160 only");
        }
    }
    set_fused_rows_per_unit(0);
}

/// In f16 storage (sums still in f32) the fused kernel stays within f16 rounding of the definition.
#[test]
fn fused_attention_in_f16() {
    use burn::tensor::FloatDType;
    let dev = crate::device_from_env().unwrap();
    let (b, h, d, sq, sk) = (1, 2, 40, 64, 77);
    let (qv, kv, vv) = (pseudo(b * sq * h * d, 15), pseudo(b * sk * h * d, 16), pseudo(b * sk * h * d, 17));
    let want = attention_reference(&qv, &kv, &vv, [b, sq, sk, h, d, d], false);
    let t = |x: Vec<f32>, s| from_vec(x, [b, s, h, d], &dev).unwrap().cast(FloatDType::F16);
    if !cube::is_cube(&t(vec![0.0; h * d], 1)) {
        return;
    }
    let got = fused_attention(&t(qv, sq), &t(kv, sk), &t(vv, sk), false).expect("runs in f16");
    assert_eq!(got.dtype(), burn::tensor::DType::F16);
    let err = max_diff(&to_vec(got.cast(FloatDType::F32)).unwrap(), &want);
    assert!(err <= 4e-3, "f16: {err}");
}

/// The head-dim padding of the tensor-core flash attention (40 → 48, `q` rescaled, columns
/// sliced off) is exact: checked with the `Unit` kernel, which runs on any adapter (the
/// tensor-core kernel itself needs cooperative matrices: checked on a lent GPU by the bench's
/// `--check`).
#[cfg(all(feature = "wgpu", not(target_arch = "wasm32")))]
#[test]
fn padded_flash_matches_explicit() {
    use crate::attention::{multi_head_attention, AttentionConfig, AttentionKernel};
    use cubek::attention::forward::launch::{BlueprintStrategy, Strategy};
    let dev = crate::device_from_env().unwrap();
    let (b, heads, d, sq, sk) = (1, 2, 40, 64, 77);
    let c = heads * d;
    let q = from_vec(pseudo(b * sq * c, 9), [b, sq, c], &dev).unwrap();
    let k = from_vec(pseudo(b * sk * c, 10), [b, sk, c], &dev).unwrap();
    let v = from_vec(pseudo(b * sk * c, 11), [b, sk, c], &dev).unwrap();
    if !cube::is_cube(&q) {
        return;
    }
    let cfg = AttentionConfig { kernel: AttentionKernel::Explicit, ..Default::default() };
    let want = to_vec(multi_head_attention(q.clone(), k.clone(), v.clone(), heads, false, &cfg)).unwrap();
    let split = |x: Tensor<3>, s| x.reshape([b, s, heads, d]).swap_dims(1, 2);
    let got = cube::padded_flash(&split(q, sq), &split(k, sk), &split(v, sk), false, 16, Strategy::Unit(BlueprintStrategy::Inferred(())));
    let got = got.expect("the unit kernel runs on a cube adapter").swap_dims(1, 2).reshape([b, sq, c]);
    let err = max_diff(&to_vec(got).unwrap(), &want);
    assert!(err <= 1e-4, "padded flash: {err}");
}

/// [`linear`] folds the leading dims into one GEMM and adds the bias, like burn's op.
#[test]
fn linear_matches_burn() {
    let dev = crate::device_from_env().unwrap();
    let x = from_vec(pseudo(2 * 5 * 12, 3), [2, 5, 12], &dev).unwrap();
    let w = from_vec(pseudo(12 * 7, 4), [12, 7], &dev).unwrap();
    let bias = from_vec(pseudo(7, 5), [7], &dev).unwrap();
    let want = to_vec(backend_linear(x.clone(), w.clone(), Some(bias.clone()))).unwrap();
    for kind in routines(&x) {
        set_gpu_matmul(kind);
        let got = to_vec(linear(x.clone(), w.clone(), Some(bias.clone()))).unwrap();
        let err = max_diff(&got, &want);
        assert!(err <= 1e-5, "{kind:?}: {err}");
    }
    set_gpu_matmul(GpuMatmul::Auto);
}

#[test]
fn auto_takes_gemm_for_small_outputs_only() {
    assert_eq!(auto_routine(2 * 1280 * 64, 11520), GpuMatmul::Gemm);
    assert_eq!(auto_routine(1024 * 1024, 1024), GpuMatmul::Gemm, "no k condition by default");
    assert_eq!(auto_routine(2 * 4096 * 320, 2880), GpuMatmul::Backend);
    set_gemm_min_k_ratio(2);
    assert_eq!(auto_routine(2 * 1280 * 64, 11520), GpuMatmul::Gemm);
    assert_eq!(auto_routine(1024 * 1024, 1024), GpuMatmul::Backend);
    set_gemm_min_k_ratio(0);
    set_auto_routines(GpuMatmul::SimpleCmma, GpuMatmul::DoubleCmma);
    assert_eq!(auto_routine(2 * 1280 * 64, 11520), GpuMatmul::SimpleCmma);
    assert_eq!(auto_routine(2 * 4096 * 320, 2880), GpuMatmul::DoubleCmma);
    set_auto_routines(GpuMatmul::Auto, GpuMatmul::Auto);
    assert_eq!(auto_routine(2 * 1280 * 64, 11520), GpuMatmul::Gemm, "Auto stands for the default");
    assert_eq!(auto_routine(2 * 4096 * 320, 2880), GpuMatmul::Backend);
}

#[test]
fn names_round_trip() {
    for kind in GpuMatmul::ALL {
        assert_eq!(GpuMatmul::parse(kind.name()), Some(kind));
    }
    assert_eq!(GpuMatmul::parse("nope"), None);
}

/// Split-k's rule: off by default; with a target, the smallest power of two reaching it that
/// divides `k` into slices of at least 256, at most 16.
#[test]
fn split_k_rule() {
    assert_eq!(split_k(2, 1280, 11520, 256), 1, "off by default");
    set_split_k_tiles(512);
    assert_eq!(split_k(2, 1280, 11520, 256), 4, "160 tiles → 640");
    assert_eq!(split_k(2, 1280, 11520, 64), 16, "40 tiles → 640");
    assert_eq!(split_k(2, 640, 5760, 1024), 2, "320 tiles → 640");
    assert_eq!(split_k(2, 320, 2880, 4096), 1, "640 tiles already");
    assert_eq!(split_k(1, 64, 1280, 64), 4, "slices of 320, not 160");
    assert_eq!(split_k(1, 64, 1000, 64), 2, "1000 = 8·125: 2 slices of 500, then 250 is too short");
    assert_eq!(split_k(1, 64, 999, 64), 1, "odd k");
    set_split_k_tiles(0);
}

/// With split-k on, every routine still computes the product (the weight broadcast over the
/// batch as the convolutions run it, broadcast on the other side, equal batches, a 4-d batch, a
/// strided operand, f16 storage); on wgpu the split must really happen.
#[test]
fn split_k_matches_the_definition() {
    let dev = crate::device_from_env().unwrap();
    set_split_k_tiles(1 << 20);
    for dims @ [ba, bb, m, k, n] in [[1, 2, 20, 1024, 9], [2, 1, 5, 768, 70], [3, 3, 7, 512, 3]] {
        assert!(split_k(ba.max(bb), m, k, n) > 1, "{dims:?} splits");
        let (av, bv) = (pseudo(ba * m * k, 21), pseudo(bb * k * n, 22));
        let want = reference(&av, &bv, dims);
        let a = from_vec(av, [ba, m, k], &dev).unwrap();
        let b = from_vec(bv, [bb, k, n], &dev).unwrap();
        assert_eq!(split_batches(&a, &b).map(|(x, y, _)| (x, y)), Some((ba, bb)));
        assert_eq!(split_matmul(&a, &b, GpuMatmul::SimpleUnitMin).is_some(), cube::is_cube(&a), "{dims:?}: split where on wgpu");
        for kind in routines(&a) {
            let got = matmul_with(a.clone(), b.clone(), kind);
            assert_eq!(got.dims(), [ba.max(bb), m, n]);
            let err = max_diff(&to_vec(got).unwrap(), &want);
            assert!(err <= 1e-4 * k as f32, "{kind:?} {dims:?}: max |diff| {err}");
        }
        // 4-d: the same batch as [1, b] against [1, b] or [1, 1]
        let a4 = a.clone().reshape([1, ba, m, k]);
        let b4 = b.clone().swap_dims(1, 2).reshape([1, bb, n, k]).swap_dims(2, 3).reshape([1, bb, k, n]);
        let err = max_diff(&to_vec(matmul(a4, b4)).unwrap(), &want);
        assert!(err <= 1e-4 * k as f32, "4-d {dims:?}: {err}");
        // f16 storage: the slices' partial sums are rounded to f16 before they are added
        use burn::tensor::FloatDType;
        let half = matmul(a.clone().cast(FloatDType::F16), b.clone().cast(FloatDType::F16));
        assert_eq!(half.dtype(), burn::tensor::DType::F16);
        let err = max_diff(&to_vec(half.cast(FloatDType::F32)).unwrap(), &want);
        assert!(err <= 2e-3 * k as f32, "f16 {dims:?}: {err}");
    }
    // a side broadcasting on some batch dims only does not flatten: no split, still right
    let a = from_vec(pseudo(2 * 4 * 512, 23), [2, 1, 4, 512], &dev).unwrap();
    let b = from_vec(pseudo(3 * 512 * 5, 24), [1, 3, 512, 5], &dev).unwrap();
    assert!(split_batches(&a, &b).is_none());
    let want = to_vec(a.clone().matmul(b.clone())).unwrap();
    let err = max_diff(&to_vec(matmul(a, b)).unwrap(), &want);
    assert!(err <= 1e-3, "partial broadcast: {err}");
    set_split_k_tiles(0);
}

/// The engine's tiled GEMM (`tiled.rs`) with each tile: sizes no tile divides (edges in m, n and
/// k), several workgroups each way, batch broadcast either side and repeated (`[1, s]` against
/// `[n, s]`, as split-k runs it), strided operands, f16 storage; on wgpu it must run.
#[cfg(feature = "wgpu")]
#[test]
fn tiled_matmul_matches_the_definition() {
    use burn::tensor::FloatDType;
    let dev = crate::device_from_env().unwrap();
    for dims @ [ba, bb, m, k, n] in [[1, 2, 130, 37, 200], [2, 1, 300, 20, 70], [3, 3, 9, 8, 5], [1, 1, 257, 64, 129]] {
        let (av, bv) = (pseudo(ba * m * k, 31), pseudo(bb * k * n, 32));
        let want = reference(&av, &bv, dims);
        let a = from_vec(av.clone(), [ba, m, k], &dev).unwrap();
        let b = from_vec(bv.clone(), [bb, k, n], &dev).unwrap();
        // a strided lhs: the same values through a transpose
        let at = from_vec(transpose(&av, ba, m, k), [ba, k, m], &dev).unwrap().swap_dims(1, 2);
        if !cube::is_cube(&a) {
            assert!(tiled::matmul_auto(&a, &b).is_none());
            return;
        }
        for tile in [tiled::LARGE, tiled::SMALL] {
            for (name, lhs) in [("plain", &a), ("strided", &at)] {
                let got = tiled::matmul(lhs, &b, tile).expect("runs on wgpu");
                assert_eq!(got.dims(), [ba.max(bb), m, n]);
                let err = max_diff(&to_vec(got).unwrap(), &want);
                assert!(err <= 1e-4 * k as f32, "{tile:?} {dims:?} {name}: max |diff| {err}");
            }
            let half = tiled::matmul(&a.clone().cast(FloatDType::F16), &b.clone().cast(FloatDType::F16), tile).expect("f16");
            assert_eq!(half.dtype(), burn::tensor::DType::F16);
            let err = max_diff(&to_vec(half.cast(FloatDType::F32)).unwrap(), &want);
            assert!(err <= 2e-3 * k as f32, "{tile:?} {dims:?} f16: {err}");
        }
    }
    // repeated batches: [1, 2]-shaped weights against [3, 2] inputs, flattened to 2 against 6
    let (m, k, n) = (5, 16, 7);
    let (av, bv) = (pseudo(2 * m * k, 33), pseudo(6 * k * n, 34));
    let a = from_vec(av.clone(), [1, 2, m, k], &dev).unwrap();
    let b = from_vec(bv.clone(), [3, 2, k, n], &dev).unwrap();
    let want = to_vec(a.clone().matmul(b.clone())).unwrap();
    let got = tiled_matmul(&a, &b).expect("flattens");
    assert_eq!(got.dims(), [3, 2, m, n]);
    let err = max_diff(&to_vec(got).unwrap(), &want);
    assert!(err <= 1e-4 * k as f32, "repeated batches: {err}");
}

/// The one-launch GroupNorm (± SiLU) and LayerNorm (`norm.rs`) equal the layers' definitions in
/// burn ops: segments shorter than, equal to and many times the workgroup (64 and 256 units),
/// inputs far from zero mean (the variance's two passes), more segments than a grid row holds
/// (65,535), f16 storage; a permuted input is declined (and the layer still right). On wgpu the
/// kernels must run.
#[test]
fn norm_kernels_match_the_ops() {
    use crate::nn::{silu, GroupNorm, LayerNorm};
    use burn::tensor::FloatDType;
    let dev = crate::device_from_env().unwrap();
    let close = |got: Tensor<4>, want: Tensor<4>, what: &str| {
        let (g, w) = (to_vec(got).unwrap(), to_vec(want).unwrap());
        let err = max_diff(&g, &w);
        assert!(err <= 2e-5 * w.iter().fold(1.0f32, |m, v| m.max(v.abs())), "{what}: {err}");
    };
    for (i, &(b, c, h, w, groups)) in [(2, 12, 5, 7, 3), (1, 64, 16, 16, 8), (1, 32, 32, 32, 4), (1, 4, 8, 8, 4)].iter().enumerate() {
        let x = from_vec(pseudo(b * c * h * w, 40 + i as u32).into_iter().map(|v| 5.0 + 3.0 * v).collect(), [b, c, h, w], &dev).unwrap();
        let norm = GroupNorm::new(from_vec(pseudo(c, 50), [c], &dev).unwrap(), from_vec(pseudo(c, 51), [c], &dev).unwrap(), groups, 1e-5).unwrap();
        if cube::is_cube(&x) {
            assert!(group_norm(&x, &norm.weight, &norm.bias, groups, 1e-5, true).is_some(), "group norm ran");
        }
        close(norm.forward(x.clone()), norm.forward_ops(x.clone()), &format!("group norm {i}"));
        close(norm.forward_silu(x.clone()), silu(norm.forward_ops(x.clone())), &format!("group norm + silu {i}"));
        let xt = x.clone().permute([0, 1, 3, 2]);
        if cube::is_cube(&x) {
            assert!(group_norm(&xt, &norm.weight, &norm.bias, groups, 1e-5, false).is_none(), "a permuted input is declined");
        }
        close(norm.forward(xt.clone()), norm.forward_ops(xt), &format!("group norm, permuted {i}"));
        // an f16 model: its parameters in f16 too
        let f16 = |t: &Tensor<1>| t.clone().cast(FloatDType::F16);
        let norm16 = GroupNorm::new(f16(&norm.weight), f16(&norm.bias), groups, 1e-5).unwrap();
        let x16 = x.clone().cast(FloatDType::F16);
        if cube::is_cube(&x) {
            assert!(group_norm(&x16, &norm16.weight, &norm16.bias, groups, 1e-5, false).is_some(), "group norm ran in f16");
        }
        let half = norm16.forward(x16);
        assert_eq!(half.dtype(), burn::tensor::DType::F16);
        let err = max_diff(&to_vec(half.cast(FloatDType::F32)).unwrap(), &to_vec(norm.forward_ops(x)).unwrap());
        assert!(err <= 1e-2, "group norm f16 {i}: {err}");
    }
    for (i, &(rows, c)) in [(2 * 77, 40), (3, 320), (70_000, 4)].iter().enumerate() {
        let x = from_vec(pseudo(rows * c, 60 + i as u32).into_iter().map(|v| 2.0 * v - 7.0).collect(), [1, rows, c], &dev).unwrap();
        let norm = LayerNorm::new(from_vec(pseudo(c, 61), [c], &dev).unwrap(), from_vec(pseudo(c, 62), [c], &dev).unwrap(), 1e-5);
        if cube::is_cube(&x) {
            assert!(layer_norm(&x, &norm.weight, &norm.bias, 1e-5).is_some(), "layer norm ran");
        }
        let four = |t: Tensor<3>| t.unsqueeze::<4>();
        close(four(norm.forward(x.clone())), four(norm.forward_ops(x)), &format!("layer norm {i}"));
    }
}
