//! Kernel choices on burn's cubecl backend (wgpu: Vulkan/Metal/DX12 natively, WebGPU in the
//! browser), reached through burn's extension API (`Tensor::try_into_primitive::<CubeBackend>`):
//! which `cubek` matmul routine the engine's GEMMs run (linears, GEMM convolutions, explicit
//! attention), and cubek's flash attention (Dao et al. 2022, "FlashAttention": online softmax over
//! key blocks, no score matrix) instead of burn's fallback (scores materialised, separate kernels).
//! burn 0.22.1 without `autotune` runs every matmul with one routine (`SimpleUnit`, largest tile)
//! and attention as the fallback; autotune is off in the engine (its first calls cost seconds to
//! tens of seconds each, BENCHMARKS.md). The routine is process-wide ([`set_gpu_matmul`]), measured
//! per shape on a lent GPU by `benches/unet_step.rs --ops`; the default, [`GpuMatmul::Auto`], takes
//! cubek's `Gemm` for small outputs (the UNet's low resolutions) and burn's routine elsewhere.
//! Flash attention is opt-in ([`crate::attention::AttentionKernel::Flash`]): on an H200 through
//! WGSL it ran 2× slower than the explicit attention (46 vs 21.7 ms for [1, 8, 4096, 40]), and its
//! first call per shape compiles for ~4 s. Anything not on the cube backend, or
//! a routine that refuses a problem, takes burn's own op: results never depend on the choice
//! beyond f32 rounding (tested on lavapipe).

use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};

use burn::tensor::module::linear as backend_linear;
use burn::tensor::Tensor;

/// Which cubek routine [`matmul`] launches on the cube backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GpuMatmul {
    /// burn's own `matmul` (cubek `Auto`: `SimpleUnit` with the largest tile when there is no
    /// tensor-core path, as in WGSL).
    Backend = 0,
    /// `SimpleUnit`, smallest register tile, stage scaled ×2.
    SimpleUnitMin = 1,
    /// Double-buffered `DoubleUnit`, largest tile.
    DoubleUnitMax = 2,
    /// Double-buffered `DoubleUnit`, smallest tile.
    DoubleUnitMin = 3,
    /// cubek's plane `Gemm` routine (no shared-memory stage).
    Gemm = 4,
    /// Per problem: [`GpuMatmul::Gemm`] when the output is small (`batch·m·n` ≤
    /// [`set_small_output_limit`], the UNet's low-resolution convolutions, whose long `k` the
    /// unit routine walks with too few tiles: 1280×11520·11520×64 ran 23.7 ms with it and 2.5 ms
    /// with `Gemm` on an H200), [`GpuMatmul::Backend`] otherwise.
    Auto = 5,
}

impl GpuMatmul {
    pub const ALL: [GpuMatmul; 6] =
        [GpuMatmul::Backend, GpuMatmul::SimpleUnitMin, GpuMatmul::DoubleUnitMax, GpuMatmul::DoubleUnitMin, GpuMatmul::Gemm, GpuMatmul::Auto];

    pub fn name(self) -> &'static str {
        match self {
            GpuMatmul::Backend => "backend",
            GpuMatmul::SimpleUnitMin => "simple-min",
            GpuMatmul::DoubleUnitMax => "double-max",
            GpuMatmul::DoubleUnitMin => "double-min",
            GpuMatmul::Gemm => "gemm",
            GpuMatmul::Auto => "auto",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.name() == name)
    }
}

static MATMUL: AtomicU8 = AtomicU8::new(GpuMatmul::Auto as u8);
static SMALL_OUTPUT: AtomicUsize = AtomicUsize::new(DEFAULT_SMALL_OUTPUT);

/// Default [`set_small_output_limit`]: output elements (`batch·m·n`) up to which
/// [`GpuMatmul::Auto`] takes the `Gemm` routine. Measured on an H200 (BENCHMARKS.md): a UNet step
/// took 678.8 ms with burn's routine everywhere, 579.0 ms with this limit at 2¹⁹ and 566.5 ms at 2²⁰;
/// the largest shape it then takes, the 32² convolution (2×640·1024), ran 11.7 vs 14.3 ms, while the
/// 64² one (2×320·4096) runs 10× slower with `Gemm` and stays with burn's.
pub const DEFAULT_SMALL_OUTPUT: usize = 1 << 20;

/// Sets the output size (elements, batch included) up to which [`GpuMatmul::Auto`] runs `Gemm`.
pub fn set_small_output_limit(elems: usize) {
    SMALL_OUTPUT.store(elems, Ordering::Relaxed);
}

static MIN_K_RATIO: AtomicUsize = AtomicUsize::new(0);

/// A second condition for `Gemm` under [`GpuMatmul::Auto`], off (0) by default: `k ≥ ratio·√(batch·m·n)`.
/// Every single-op measurement on the H200 agrees with ratio 2 (`Gemm` won where `k/√out` was
/// 3.2–14, tied at 1.6, lost 6× at 1.0 on 1024²), but a UNet step has not been timed with it yet
/// (`benches/gpu/run.sh`, `PLAN=next`), so the measured rule stays the default.
pub fn set_gemm_min_k_ratio(ratio: usize) {
    MIN_K_RATIO.store(ratio, Ordering::Relaxed);
}

/// The routine [`GpuMatmul::Auto`] picks for an output of `elems` elements (batch included) and
/// inner dimension `k`.
pub fn auto_routine(elems: usize, k: usize) -> GpuMatmul {
    let ratio = MIN_K_RATIO.load(Ordering::Relaxed) as f64;
    if elems <= SMALL_OUTPUT.load(Ordering::Relaxed) && k as f64 >= ratio * (elems as f64).sqrt() {
        GpuMatmul::Gemm
    } else {
        GpuMatmul::Backend
    }
}

/// Chooses the matmul routine for every engine GEMM of this process on the cube backend (default
/// [`GpuMatmul::Auto`]).
pub fn set_gpu_matmul(kind: GpuMatmul) {
    MATMUL.store(kind as u8, Ordering::Relaxed);
}

pub fn gpu_matmul() -> GpuMatmul {
    let v = MATMUL.load(Ordering::Relaxed);
    GpuMatmul::ALL.into_iter().find(|k| *k as u8 == v).unwrap_or(GpuMatmul::Backend)
}

/// `lhs.matmul(rhs)` (batch dims broadcast as burn does) with the process-wide routine.
pub fn matmul<const D: usize>(lhs: Tensor<D>, rhs: Tensor<D>) -> Tensor<D> {
    matmul_with(lhs, rhs, gpu_matmul())
}

/// [`matmul`] with an explicit routine.
pub fn matmul_with<const D: usize>(lhs: Tensor<D>, rhs: Tensor<D>, kind: GpuMatmul) -> Tensor<D> {
    let kind = match kind {
        GpuMatmul::Auto => {
            let (a, b) = (lhs.dims(), rhs.dims());
            let batch: usize = (0..D.saturating_sub(2)).map(|i| a[i].max(b[i])).product();
            auto_routine(batch * a[D - 2] * b[D - 1], a[D - 1])
        }
        k => k,
    };
    if kind != GpuMatmul::Backend {
        if let Some(out) = cube::matmul(&lhs, &rhs, kind) {
            return out;
        }
    }
    lhs.matmul(rhs)
}

/// `x · W + b` (`W` `[in, out]`, as burn's `module::linear`) through [`matmul`]: the leading dims
/// fold into the rows of one GEMM.
pub fn linear<const D: usize>(x: Tensor<D>, weight: Tensor<2>, bias: Option<Tensor<1>>) -> Tensor<D> {
    if D < 2 || gpu_matmul() == GpuMatmul::Backend || !cube::is_cube(&x) || x.dtype() != weight.dtype() {
        return backend_linear(x, weight, bias);
    }
    let dims = x.dims();
    let rows: usize = dims[..D - 1].iter().product();
    let [cin, cout] = weight.dims();
    let mut y = matmul(x.reshape([rows, cin]), weight);
    if let Some(b) = bias {
        y = y + b.reshape([1, cout]);
    }
    let mut out = dims;
    out[D - 1] = cout;
    y.reshape(out)
}

/// Whether `t` lives on the cube backend (wgpu), where the routines here apply.
pub fn on_cube<const D: usize>(t: &Tensor<D>) -> bool {
    cube::is_cube(t)
}

/// Flash attention of `q` `[B, H, Sq, d]` over `k` `[B, H, Sk, d]`, `v` `[B, H, Sk, dv]`
/// (scale `1/√d`; `causal` masks keys after the query's own position, `Sq == Sk`) on the cube
/// backend; `None` where the tensors are elsewhere or the kernel refuses the problem (no plane
/// operations on the adapter, a head dim its tiles do not divide; always in the wasm32 build) —
/// the caller then runs the explicit, chunked attention.
pub fn flash_attention(q: &Tensor<4>, k: &Tensor<4>, v: &Tensor<4>, causal: bool) -> Option<Tensor<4>> {
    cube::flash_attention(q, k, v, causal)
}

#[cfg(feature = "wgpu")]
mod cube {
    use super::GpuMatmul;
    use burn::tensor::{DType, Tensor};
    use burn_backend::cubecl::dtype_to_storage_type;
    use burn_cubecl::cubecl::ir::features::Plane;
    use burn_cubecl::kernel::matmul::init_matmul_output;
    use burn_cubecl::tensor::CubeTensor;
    use burn_cubecl::CubeBackend;
    use burn_std::{MatmulTransformAnalysis, MatmulTransformPolicy};
    use cubek::matmul::definition::{MatmulElems, MatmulGlobalElems};
    use cubek::matmul::multi_level::routines::batch::{double_unit::DoubleUnitSelectionArgs, simple_unit::SimpleUnitSelectionArgs};
    use cubek::matmul::multi_level::routines::{gemm::GemmStrategy, TileSizeSelection};
    use cubek::matmul::multi_level::Strategy as Routine;
    use cubek::matmul::routine::BlueprintStrategy;
    use cubek::matmul::strategy::Strategy;
    use cubek::std::InputBinding;

    /// Whether float dtype `d` is one the cube routines here take.
    fn float_ok(d: DType) -> bool {
        matches!(d, DType::F32 | DType::F16 | DType::BF16)
    }

    fn primitive<const D: usize>(t: &Tensor<D>) -> Option<CubeTensor> {
        t.clone().try_into_primitive::<CubeBackend>().ok()
    }

    pub fn is_cube<const D: usize>(t: &Tensor<D>) -> bool {
        primitive(t).is_some()
    }

    /// Whether the adapter runs subgroup ("plane") operations, which cubek's `Gemm` routine reduces
    /// with (`plane_sum`). In the browser only where WebGPU grants the `subgroups` feature:
    /// Chromium's SwiftShader does not, and `Gemm` there gave wrong results and a wasm trap (the
    /// e2e tests caught it). Natively cubecl does not advertise plane ops on CPU adapters although
    /// wgpu runs them: lavapipe (subgroups of 8) computes `Gemm` correctly (tested).
    fn plane_ops(t: &CubeTensor) -> bool {
        let props = t.client.properties();
        props.features.plane.contains(Plane::Ops) || (cfg!(not(target_arch = "wasm32")) && props.hardware.plane_size_min >= 2)
    }

    fn strategy(kind: GpuMatmul) -> Strategy {
        let unit = |tile_size| SimpleUnitSelectionArgs { tile_size };
        let double = |tile_size| DoubleUnitSelectionArgs { tile_size };
        match kind {
            GpuMatmul::Backend | GpuMatmul::Auto => Strategy::Auto,
            GpuMatmul::SimpleUnitMin => Routine::SimpleUnit(BlueprintStrategy::Inferred(unit(TileSizeSelection::MinTileSize))).into(),
            GpuMatmul::DoubleUnitMax => Routine::DoubleUnit(BlueprintStrategy::Inferred(double(TileSizeSelection::MaxTileSize))).into(),
            GpuMatmul::DoubleUnitMin => Routine::DoubleUnit(BlueprintStrategy::Inferred(double(TileSizeSelection::MinTileSize))).into(),
            GpuMatmul::Gemm => Routine::Gemm(BlueprintStrategy::Inferred(GemmStrategy { target_num_planes: None })).into(),
        }
    }

    pub fn matmul<const D: usize>(lhs: &Tensor<D>, rhs: &Tensor<D>, kind: GpuMatmul) -> Option<Tensor<D>> {
        let (mut l, r) = (primitive(lhs)?, primitive(rhs)?);
        let dtype = l.dtype;
        if r.dtype != dtype || !float_ok(dtype) || (kind == GpuMatmul::Gemm && !plane_ops(&l)) {
            return None;
        }
        let out = init_matmul_output(&l, &r, dtype);
        // burn's own fold: `[.., b, m, k] @ [.., 1, k, n]` runs as one `[b·m, k]` GEMM (metadata only).
        let mut out_launch = out.clone();
        let action = MatmulTransformPolicy::default().action(&MatmulTransformAnalysis::from_metadata(&l.meta, &r.meta, &out.meta));
        action.apply(&mut l.meta);
        action.apply(&mut out_launch.meta);
        let elem = dtype_to_storage_type(dtype);
        let mut dtypes = MatmulElems::from_globals(&MatmulGlobalElems { lhs: elem, rhs: elem, out: elem });
        let client = out.client.clone();
        let launched = cubek::matmul::launch::launch_ref(
            &strategy(kind),
            &client,
            InputBinding::new(l.binding(), elem),
            InputBinding::new(r.binding(), elem),
            out_launch.binding(),
            &mut dtypes,
        );
        launched.ok().map(|_| Tensor::from_primitive::<CubeBackend>(out))
    }

    /// Not in the browser build: opt-in and slower than the explicit attention where measured, and
    /// its kernel family is 1.16 MB of engine wasm.
    #[cfg(target_arch = "wasm32")]
    pub fn flash_attention(_: &Tensor<4>, _: &Tensor<4>, _: &Tensor<4>, _: bool) -> Option<Tensor<4>> {
        None
    }

    #[cfg(not(target_arch = "wasm32"))]
    pub fn flash_attention(q: &Tensor<4>, k: &Tensor<4>, v: &Tensor<4>, causal: bool) -> Option<Tensor<4>> {
        use burn::tensor::ops::AttentionModuleOptions;
        use burn_cubecl::kernel::attention::flash_attention as cube_flash;
        use cubek::attention::forward::launch::{BlueprintStrategy as AttnBlueprint, Strategy as AttnStrategy};
        let (pq, pk, pv) = (primitive(q)?, primitive(k)?, primitive(v)?);
        if !float_ok(pq.dtype) || pk.dtype != pq.dtype || pv.dtype != pq.dtype {
            return None;
        }
        let opts = AttentionModuleOptions { scale: None, softcap: None, is_causal: causal };
        let out = cube_flash(pq, pk, pv, None, None, opts, AttnStrategy::Unit(AttnBlueprint::Inferred(()))).ok()?;
        Some(Tensor::from_primitive::<CubeBackend>(out))
    }
}

#[cfg(not(feature = "wgpu"))]
mod cube {
    use super::GpuMatmul;
    use burn::tensor::Tensor;

    pub fn is_cube<const D: usize>(_: &Tensor<D>) -> bool {
        false
    }

    pub fn matmul<const D: usize>(_: &Tensor<D>, _: &Tensor<D>, _: GpuMatmul) -> Option<Tensor<D>> {
        None
    }

    pub fn flash_attention(_: &Tensor<4>, _: &Tensor<4>, _: &Tensor<4>, _: bool) -> Option<Tensor<4>> {
        None
    }
}

#[cfg(test)]
mod tests {
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
            for kind in GpuMatmul::ALL {
                if kind != GpuMatmul::Backend && cube::is_cube(&a) {
                    assert!(cube::matmul(&a, &b, kind).is_some(), "{kind:?} refused {dims:?}");
                }
                let got = to_vec(matmul_with(a.clone(), b.clone(), kind)).unwrap();
                assert_eq!(got.len(), want.len());
                let err = max_diff(&got, &want);
                assert!(err <= 1e-4 * k as f32, "{kind:?} {dims:?}: max |diff| {err}");
            }
            // a transposed (strided) right operand, as attention's `k.swap_dims`
            let bt = from_vec(transpose(&pseudo(bb * k * n, 2), bb, k, n), [bb, n, k], &dev).unwrap().swap_dims(1, 2);
            for kind in GpuMatmul::ALL {
                let got = to_vec(matmul_with(a.clone(), bt.clone(), kind)).unwrap();
                let err = max_diff(&got, &want);
                assert!(err <= 1e-4 * k as f32, "{kind:?} {dims:?} strided: {err}");
            }
        }
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

    /// [`linear`] folds the leading dims into one GEMM and adds the bias, like burn's op.
    #[test]
    fn linear_matches_burn() {
        let dev = crate::device_from_env().unwrap();
        let x = from_vec(pseudo(2 * 5 * 12, 3), [2, 5, 12], &dev).unwrap();
        let w = from_vec(pseudo(12 * 7, 4), [12, 7], &dev).unwrap();
        let bias = from_vec(pseudo(7, 5), [7], &dev).unwrap();
        let want = to_vec(backend_linear(x.clone(), w.clone(), Some(bias.clone()))).unwrap();
        for kind in GpuMatmul::ALL {
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
    }

    #[test]
    fn names_round_trip() {
        for kind in GpuMatmul::ALL {
            assert_eq!(GpuMatmul::parse(kind.name()), Some(kind));
        }
        assert_eq!(GpuMatmul::parse("nope"), None);
    }
}
