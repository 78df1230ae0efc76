//! The cube-backend half of `gpu/mod.rs` (feature `wgpu`): cubek matmul routines and flash attention
//! launched on burn's `CubeTensor`s (burn 0.22.1 / cubek 0.3.1 APIs).

use super::GpuMatmul;
use burn::tensor::{DType, Tensor};
use burn_backend::cubecl::dtype_to_storage_type;
use burn_cubecl::cubecl::ir::features::Plane;
use burn_cubecl::cubecl::prelude::CubeCount;
use burn_cubecl::kernel::matmul::init_matmul_output;
use burn_cubecl::tensor::CubeTensor;
use burn_cubecl::CubeBackend;
use burn_std::{MatmulTransformAnalysis, MatmulTransformPolicy};
use cubek::matmul::definition::{MatmulElems, MatmulGlobalElems};
use cubek::matmul::multi_level::routines::batch::{
    double_buffering::DoubleBufferingArgs, double_unit::DoubleUnitSelectionArgs, ordered_double_buffering::OrderedSelectionArgs, simple::SimpleArgs,
    simple_unit::SimpleUnitSelectionArgs, specialized::SpecializedStrategy,
};
use cubek::matmul::multi_level::routines::{gemm::GemmStrategy, TileSizeSelection};
use cubek::matmul::multi_level::Strategy as Routine;
use cubek::matmul::routine::BlueprintStrategy;
use cubek::matmul::strategy::Strategy;
use cubek::std::InputBinding;

/// Whether float dtype `d` is one the cube routines here (and `rows.rs`) take.
pub(super) fn float_ok(d: DType) -> bool {
    matches!(d, DType::F32 | DType::F16 | DType::BF16)
}

pub(super) fn primitive<const D: usize>(t: &Tensor<D>) -> Option<CubeTensor> {
    t.clone().try_into_primitive::<CubeBackend>().ok()
}

/// Workgroups per grid dimension (WebGPU guarantees 65,535).
const MAX_GROUPS: usize = 65_535;

/// A grid of `workgroups` workgroups in rows of at most 65,535 (a kernel numbers them
/// `y·count_x + x`; the last row may run past `workgroups`, those must do nothing); `None` past
/// 65,535².
pub(super) fn grid_2d(workgroups: usize) -> Option<CubeCount> {
    let (gx, gy) = (workgroups.min(MAX_GROUPS), workgroups.div_ceil(MAX_GROUPS));
    (gy <= MAX_GROUPS).then_some(CubeCount::Static(gx as u32, gy as u32, 1))
}

pub fn is_cube<const D: usize>(t: &Tensor<D>) -> bool {
    primitive(t).is_some()
}

/// Whether `t` is on the cube backend and contiguous, or elsewhere (where it does not matter here).
pub fn is_contiguous<const D: usize>(t: &Tensor<D>) -> bool {
    primitive(t).is_none_or(|p| p.is_contiguous())
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

/// The adapter's cooperative-matrix (tensor-core) instructions with `dtype` operands, as
/// `(k, n)` tile sizes: cubecl lists them on Vulkan through SPIR-V (`VK_KHR_cooperative_matrix`);
/// WGSL has none.
fn cmma_tiles(t: &CubeTensor, dtype: DType) -> Vec<(u32, u32)> {
    let elem = dtype_to_storage_type(dtype);
    t.client.properties().features.matmul.cmma.iter().filter(|c| c.a_type == elem && c.b_type == elem).map(|c| (c.k, c.n)).collect()
}

fn has_cmma(t: &CubeTensor, dtype: DType) -> bool {
    !cmma_tiles(t, dtype).is_empty()
}

fn strategy(kind: GpuMatmul) -> Strategy {
    let unit = |tile_size| SimpleUnitSelectionArgs { tile_size };
    let double = |tile_size| DoubleUnitSelectionArgs { tile_size };
    match kind {
        GpuMatmul::Backend | GpuMatmul::Auto | GpuMatmul::Tiled => Strategy::Auto,
        GpuMatmul::SimpleUnitMin => Routine::SimpleUnit(BlueprintStrategy::Inferred(unit(TileSizeSelection::MinTileSize))).into(),
        GpuMatmul::SimpleUnitMax => Routine::SimpleUnit(BlueprintStrategy::Inferred(unit(TileSizeSelection::MaxTileSize))).into(),
        GpuMatmul::DoubleUnitMax => Routine::DoubleUnit(BlueprintStrategy::Inferred(double(TileSizeSelection::MaxTileSize))).into(),
        GpuMatmul::DoubleUnitMin => Routine::DoubleUnit(BlueprintStrategy::Inferred(double(TileSizeSelection::MinTileSize))).into(),
        GpuMatmul::Gemm => Routine::Gemm(BlueprintStrategy::Inferred(GemmStrategy { target_num_planes: None })).into(),
        GpuMatmul::SimpleCmma => Routine::SimpleCyclicCmma(BlueprintStrategy::Inferred(SimpleArgs::default())).into(),
        GpuMatmul::DoubleCmma => Routine::DoubleCyclicCmma(BlueprintStrategy::Inferred(DoubleBufferingArgs::default())).into(),
        GpuMatmul::SpecializedCmma => Routine::SpecializedCyclicCmma(BlueprintStrategy::Inferred(SpecializedStrategy::default())).into(),
        GpuMatmul::OrderedCmma => Routine::OrderedDoubleCmma(BlueprintStrategy::Inferred(OrderedSelectionArgs::default())).into(),
    }
}

/// `kind` alone (`None` where it refuses the problem or the adapter lacks what it needs): the
/// tests' proof that a routine really ran.
#[cfg(test)]
pub fn matmul<const D: usize>(lhs: &Tensor<D>, rhs: &Tensor<D>, kind: GpuMatmul) -> Option<Tensor<D>> {
    launch(primitive(lhs)?, primitive(rhs)?, kind)
}

/// `kind`, then, where the adapter has tensor cores for the operands, what burn's matmul would run
/// there (cubek's `Auto`: `simple-cmma`, then the unit routine), each refusal falling through to
/// the next: burn's own `Auto` panics when the cmma routine calls a problem invalid rather than
/// unavailable. `None` where every one refuses, or the tensors are not on the cube backend.
pub fn matmul_or_fallback<const D: usize>(lhs: &Tensor<D>, rhs: &Tensor<D>, kind: GpuMatmul) -> Option<Tensor<D>> {
    let (l, r) = (primitive(lhs)?, primitive(rhs)?);
    let fallbacks = if has_cmma(&l, l.dtype) { [GpuMatmul::SimpleCmma, GpuMatmul::SimpleUnitMax].as_slice() } else { &[] };
    std::iter::once(kind).chain(fallbacks.iter().copied().filter(|k| *k != kind)).find_map(|k| launch(l.clone(), r.clone(), k))
}

fn launch<const D: usize>(mut l: CubeTensor, r: CubeTensor, kind: GpuMatmul) -> Option<Tensor<D>> {
    let dtype = l.dtype;
    // `Backend` / `Auto` are not routines here: cubek's `Strategy::Auto` panics where the cmma
    // routine calls a problem invalid (the caller resolves both); `Tiled` is the engine's (`tiled.rs`)
    if matches!(kind, GpuMatmul::Backend | GpuMatmul::Auto | GpuMatmul::Tiled)
        || r.dtype != dtype
        || !float_ok(dtype)
        || (kind == GpuMatmul::Gemm && !plane_ops(&l))
        || (kind.is_cmma() && !has_cmma(&l, dtype))
    {
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

pub fn tensor_cores<const D: usize>(t: &Tensor<D>) -> bool {
    primitive(t).is_some_and(|p| has_cmma(&p, p.dtype))
}

/// Not in the browser build: opt-in and slower than the explicit attention where measured, and
/// its kernel family is 1.16 MB of engine wasm.
#[cfg(target_arch = "wasm32")]
pub fn flash_attention(_: &Tensor<4>, _: &Tensor<4>, _: &Tensor<4>, _: bool, _: u8) -> Option<Tensor<4>> {
    None
}

#[cfg(not(target_arch = "wasm32"))]
pub fn flash_attention(q: &Tensor<4>, k: &Tensor<4>, v: &Tensor<4>, causal: bool, planes: u8) -> Option<Tensor<4>> {
    use cubek::attention::forward::launch::{BlueprintStrategy, Strategy};
    let (pq, pk, pv) = (primitive(q)?, primitive(k)?, primitive(v)?);
    if !float_ok(pq.dtype) || pk.dtype != pq.dtype || pv.dtype != pq.dtype {
        return None;
    }
    // f16 models only: the kernel multiplies in f16 fragments whatever the tensors' dtype
    if planes > 0 && pq.dtype == DType::F16 {
        if let Some(out) = accelerated_attention(q, k, v, causal, planes, &pq) {
            return Some(out);
        }
    }
    padded_flash(q, k, v, causal, 1, Strategy::Unit(BlueprintStrategy::Inferred(())))
}

/// cubek's tensor-core flash attention (`BlackboxAccelerated`: f16 fragments of 16 rows, f32
/// accumulators). Its tiles must divide the head dims, so these are zero-padded to a multiple
/// of 16 (SD1.5's 40 → 48: zero columns add nothing to `q·kᵀ` and give zero output columns,
/// sliced off), and `q` is scaled by `√(48/40)` since the kernel divides by `√48`.
#[cfg(not(target_arch = "wasm32"))]
fn accelerated_attention(q: &Tensor<4>, k: &Tensor<4>, v: &Tensor<4>, causal: bool, planes: u8, pq: &CubeTensor) -> Option<Tensor<4>> {
    use cubek::attention::forward::launch::{BlueprintStrategy, Strategy};
    use cubek::attention::forward::routines::blackbox_accelerated::BlackboxAcceleratedStrategy;
    // the kernel refuses query counts its stage (planes × 16-row tiles) does not divide (CLIP's 77):
    // leave before padding anything
    if !q.dims()[2].is_multiple_of(planes as usize * 16) {
        return None;
    }
    // pad to a multiple of every f16 instruction tile's k and n, so that whichever tile cubek picks
    // divides both head dims (its value partition truncates rather than refusing); none: no tensor cores
    let multiple = cmma_tiles(pq, DType::F16).into_iter().map(|(k, n)| k.max(n) as usize).max()?;
    let strategy = Strategy::BlackboxAccelerated(BlueprintStrategy::Inferred(BlackboxAcceleratedStrategy { num_planes: planes, seq_q: 1, seq_kv: 1 }));
    padded_flash(q, k, v, causal, multiple.next_power_of_two(), strategy)
}

/// cubek flash attention with the head dims zero-padded to a multiple of `multiple` (the
/// kernel's scale `1/√padded` compensated on `q`, the padded output columns sliced off; 1: as
/// they are).
#[cfg(not(target_arch = "wasm32"))]
pub(super) fn padded_flash(
    q: &Tensor<4>,
    k: &Tensor<4>,
    v: &Tensor<4>,
    causal: bool,
    multiple: usize,
    strategy: cubek::attention::forward::launch::Strategy,
) -> Option<Tensor<4>> {
    use burn::tensor::ops::{AttentionModuleOptions, PadMode};
    use burn_cubecl::kernel::attention::flash_attention as cube_flash;
    let (d, dv) = (q.dims()[3], v.dims()[3]);
    let (dp, dvp) = (d.div_ceil(multiple) * multiple, dv.div_ceil(multiple) * multiple);
    let pad = |x: &Tensor<4>, to: usize, have: usize| if to == have { x.clone() } else { x.clone().pad([(0, to - have)], PadMode::Constant(0.0)) };
    let q = if dp == d { q.clone() } else { pad(&(q.clone() * (dp as f64 / d as f64).sqrt()), dp, d) };
    let (pq, pk, pv) = (primitive(&q)?, primitive(&pad(k, dp, d))?, primitive(&pad(v, dvp, dv))?);
    let opts = AttentionModuleOptions { scale: None, softcap: None, is_causal: causal };
    let out = Tensor::from_primitive::<CubeBackend>(cube_flash(pq, pk, pv, None, None, opts, strategy).ok()?);
    let [b, h, sq, _] = out.dims();
    Some(if dvp == dv { out } else { out.slice([0..b, 0..h, 0..sq, 0..dv]) })
}
