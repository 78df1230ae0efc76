//! Kernel choices on burn's cubecl backend (wgpu: Vulkan/Metal/DX12 natively, WebGPU in the
//! browser), reached through burn's extension API (`Tensor::try_into_primitive::<CubeBackend>`):
//! which matmul routine the engine's GEMMs run (linears, GEMM convolutions, explicit attention:
//! one of `cubek`'s, or the engine's own register-blocked kernel of `tiled.rs`, opt-in), split-k
//! for GEMMs with few output tiles (opt-in, [`set_split_k_tiles`]), and the engine's own kernels
//! for what burn runs as several: the fused attention of `rows.rs`, a convolution's im2col matrix
//! in one launch (`im2col.rs`), GroupNorm (± SiLU) and LayerNorm in one launch (`norm.rs`), the
//! bias and residual additions after a GEMM and diffusers' GEGLU in one launch (`epilogue.rs`); and
//! cubek's flash attention (Dao et al. 2022, "FlashAttention": online softmax over key blocks, no
//! score matrix). burn 0.22.1 without `autotune` runs every matmul with one routine (`SimpleUnit`,
//! largest tile) and attention as the fallback; autotune is off in the engine (its first calls cost
//! seconds to tens of seconds each, BENCHMARKS.md). The routine is process-wide
//! ([`set_gpu_matmul`]), measured per shape on a lent GPU by `benches/unet_step.rs --ops`; the
//! default, [`GpuMatmul::Auto`], takes cubek's `Gemm` for small outputs (the UNet's low
//! resolutions) and burn's routine elsewhere.
//! Attention on the cube backend defaults to the fused kernel of `rows.rs` ([`fused_attention`]:
//! one launch, online softmax, no score matrix, nothing WebGPU lacks; 2.3× faster than the
//! explicit attention on lavapipe, not yet timed on a GPU). cubek's
//! flash attention is opt-in ([`crate::attention::AttentionKernel::Flash`]): on an H200 through
//! WGSL it ran 2× slower than the explicit attention (46 vs 21.7 ms for [1, 8, 4096, 40]), and its
//! first call per shape compiles for ~4 s. Where the adapter lists cooperative matrices (tensor
//! cores: SPIR-V on Vulkan, feature `gpu-bench`; never WGSL, so never the browser) the `*Cmma`
//! routines and the tensor-core flash attention run on them in f16 (not yet measured: `PLAN=tc` of
//! `benches/gpu/`). Anything not on the cube backend, or a routine that refuses a problem or lacks
//! the adapter feature it needs, takes burn's own op: results never depend on the choice beyond
//! rounding (tested on lavapipe; on tensor cores by the benchmark's `--check`).

use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};

use burn::tensor::module::linear as backend_linear;
use burn::tensor::Tensor;

/// Which routine [`matmul`] launches on the cube backend (cubek's, or the engine's `Tiled`).
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
    /// with `Gemm` on an H200), [`GpuMatmul::Backend`] otherwise ([`set_auto_routines`]).
    Auto = 5,
    /// Tensor-core routines (cooperative matrices: SPIR-V on Vulkan with `VK_KHR_cooperative_matrix`,
    /// f16/bf16 operands on NVIDIA; never WGSL, so never the browser): cubek's single-buffered
    /// cyclic stage…
    SimpleCmma = 6,
    /// …double-buffered…
    DoubleCmma = 7,
    /// …with producer/consumer planes…
    SpecializedCmma = 8,
    /// …and ordered double buffering. Where the adapter has no cooperative matrix for the operand
    /// type, burn's routine runs instead.
    OrderedCmma = 9,
    /// `SimpleUnit`, largest register tile: burn's routine where there are no tensor cores.
    SimpleUnitMax = 10,
    /// The engine's own register-blocked GEMM (`tiled.rs`: 128² or 64² output tiles per workgroup,
    /// 8×8 or 4×4 per unit, nothing WebGPU lacks). Not yet measured on a GPU.
    Tiled = 11,
}

impl GpuMatmul {
    pub const ALL: [GpuMatmul; 12] = [
        GpuMatmul::Backend,
        GpuMatmul::SimpleUnitMin,
        GpuMatmul::DoubleUnitMax,
        GpuMatmul::DoubleUnitMin,
        GpuMatmul::Gemm,
        GpuMatmul::Auto,
        GpuMatmul::SimpleCmma,
        GpuMatmul::DoubleCmma,
        GpuMatmul::SpecializedCmma,
        GpuMatmul::OrderedCmma,
        GpuMatmul::SimpleUnitMax,
        GpuMatmul::Tiled,
    ];

    pub fn name(self) -> &'static str {
        match self {
            GpuMatmul::Backend => "backend",
            GpuMatmul::SimpleUnitMin => "simple-min",
            GpuMatmul::DoubleUnitMax => "double-max",
            GpuMatmul::DoubleUnitMin => "double-min",
            GpuMatmul::Gemm => "gemm",
            GpuMatmul::Auto => "auto",
            GpuMatmul::SimpleCmma => "simple-cmma",
            GpuMatmul::DoubleCmma => "double-cmma",
            GpuMatmul::SpecializedCmma => "specialized-cmma",
            GpuMatmul::OrderedCmma => "ordered-cmma",
            GpuMatmul::SimpleUnitMax => "simple-max",
            GpuMatmul::Tiled => "tiled",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.name() == name)
    }

    /// Whether the routine runs on tensor cores (cooperative matrices).
    pub fn is_cmma(self) -> bool {
        matches!(self, GpuMatmul::SimpleCmma | GpuMatmul::DoubleCmma | GpuMatmul::SpecializedCmma | GpuMatmul::OrderedCmma)
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

const AUTO_SMALL_DEFAULT: GpuMatmul = GpuMatmul::Gemm;
const AUTO_LARGE_DEFAULT: GpuMatmul = GpuMatmul::Backend;
static AUTO_SMALL: AtomicU8 = AtomicU8::new(AUTO_SMALL_DEFAULT as u8);
static AUTO_LARGE: AtomicU8 = AtomicU8::new(AUTO_LARGE_DEFAULT as u8);

/// The two routines [`GpuMatmul::Auto`] chooses between: `small` for outputs within
/// [`set_small_output_limit`] (default [`GpuMatmul::Gemm`]), `large` for the others (default
/// [`GpuMatmul::Backend`]). `Auto` itself is not a choice here (it stands for the default).
pub fn set_auto_routines(small: GpuMatmul, large: GpuMatmul) {
    let pick = |k: GpuMatmul, def: GpuMatmul| if k == GpuMatmul::Auto { def } else { k } as u8;
    AUTO_SMALL.store(pick(small, AUTO_SMALL_DEFAULT), Ordering::Relaxed);
    AUTO_LARGE.store(pick(large, AUTO_LARGE_DEFAULT), Ordering::Relaxed);
}

fn from_u8(v: u8) -> GpuMatmul {
    GpuMatmul::ALL.into_iter().find(|k| *k as u8 == v).unwrap_or(GpuMatmul::Backend)
}

/// The routine [`GpuMatmul::Auto`] picks for an output of `elems` elements (batch included) and
/// inner dimension `k`.
pub fn auto_routine(elems: usize, k: usize) -> GpuMatmul {
    let ratio = MIN_K_RATIO.load(Ordering::Relaxed) as f64;
    if elems <= SMALL_OUTPUT.load(Ordering::Relaxed) && k as f64 >= ratio * (elems as f64).sqrt() {
        from_u8(AUTO_SMALL.load(Ordering::Relaxed))
    } else {
        from_u8(AUTO_LARGE.load(Ordering::Relaxed))
    }
}

/// Chooses the matmul routine for every engine GEMM of this process on the cube backend (default
/// [`GpuMatmul::Auto`]).
pub fn set_gpu_matmul(kind: GpuMatmul) {
    MATMUL.store(kind as u8, Ordering::Relaxed);
}

pub fn gpu_matmul() -> GpuMatmul {
    from_u8(MATMUL.load(Ordering::Relaxed))
}

/// `lhs.matmul(rhs)` (batch dims broadcast as burn does) with the process-wide routine.
pub fn matmul<const D: usize>(lhs: Tensor<D>, rhs: Tensor<D>) -> Tensor<D> {
    matmul_with(lhs, rhs, gpu_matmul())
}

/// [`matmul`] with an explicit routine (`Auto` resolved on the whole problem); `k` split per
/// [`split_k`] where that is on.
pub fn matmul_with<const D: usize>(lhs: Tensor<D>, rhs: Tensor<D>, kind: GpuMatmul) -> Tensor<D> {
    let kind = match kind {
        GpuMatmul::Auto => {
            let (a, b) = (lhs.dims(), rhs.dims());
            let batch: usize = (0..D.saturating_sub(2)).map(|i| a[i].max(b[i])).product();
            auto_routine(batch * a[D - 2] * b[D - 1], a[D - 1])
        }
        k => k,
    };
    match split_matmul(&lhs, &rhs, kind) {
        Some(y) => y,
        None => matmul_once(lhs, rhs, kind),
    }
}

/// `lhs · rhs` as [`split_k`] slices of `k` with `kind` (one batched launch, summed after);
/// `None` where the problem does not split (split-k off, enough tiles already, a `k` it does not
/// divide, batches that do not flatten to one dim each) or is not on the cube backend.
fn split_matmul<const D: usize>(lhs: &Tensor<D>, rhs: &Tensor<D>, kind: GpuMatmul) -> Option<Tensor<D>> {
    let (ba, bb, out) = split_batches(lhs, rhs)?;
    // the slices reshape each side's batch to one dim: a batch of 1 or the output's only
    if !cube::is_cube(lhs) || !(ba == 1 || bb == 1 || ba == bb) {
        return None;
    }
    let [m, k, n] = [lhs.dims()[D - 2], lhs.dims()[D - 1], rhs.dims()[D - 1]];
    let s = split_k(ba.max(bb), m, k, n);
    if s < 2 {
        return None;
    }
    // [ba, m, k] → [ba, s, m, k/s] (a strided view), [bb, k, n] → [bb, s, k/s, n]
    let l = lhs.clone().reshape([ba, m, s, k / s]).swap_dims(1, 2);
    let r = rhs.clone().reshape([bb, s, k / s, n]);
    Some(matmul_once(l, r, kind).sum_dim(1).reshape(out))
}

static SPLIT_K: AtomicUsize = AtomicUsize::new(0);

/// Output tile (rows and columns) by which [`split_k`] counts a GEMM's workgroups.
const SPLIT_TILE: usize = 64;
/// Shortest slice of `k` a split leaves.
const SPLIT_MIN_K: usize = 256;
/// Most slices.
const SPLIT_MAX: usize = 16;

/// Turns on split-k for the cube backend's GEMMs (0, the default: off): a GEMM whose output has
/// fewer than `target` tiles of 64×64 (batch included) runs as `s` GEMMs over slices of `k`, one
/// batched launch, summed after. The UNet's low-resolution convolutions have few output tiles and a
/// long `k` (1280×11520·11520×256 at 16²: 160 tiles, k = 11520), which the unit routines walk with
/// a few workgroups while most of a large GPU idles (0.8–1.6 TFLOP/s on an H200 against 5.7 at
/// 64²). The routine is chosen on the whole problem ([`GpuMatmul::Auto`] as without the split).
/// Not yet measured on a GPU (`benches/gpu/`, `PLAN=next`), so off by default.
pub fn set_split_k_tiles(target: usize) {
    SPLIT_K.store(target, Ordering::Relaxed);
}

/// The slices of `k` [`matmul`] runs a `batch × (m × k · k × n)` product in: 1 when split-k is off
/// or the output already has the target's tiles, else the smallest power of two (at most 16)
/// that reaches it, as long as it divides `k` and leaves slices of at least 256.
pub fn split_k(batch: usize, m: usize, k: usize, n: usize) -> usize {
    split_k_with(SPLIT_K.load(Ordering::Relaxed), batch, m, k, n)
}

/// [`split_k`] for a target of `target` tiles (0: off).
pub fn split_k_with(target: usize, batch: usize, m: usize, k: usize, n: usize) -> usize {
    let tiles = batch * m.div_ceil(SPLIT_TILE) * n.div_ceil(SPLIT_TILE);
    if tiles == 0 {
        return 1;
    }
    let mut s = 1;
    while tiles * s < target && s < SPLIT_MAX && k.is_multiple_of(2 * s) && k / (2 * s) >= SPLIT_MIN_K {
        s *= 2;
    }
    s
}

/// The batches of `lhs` and `rhs` flattened (`ba`, `bb`) and the output's dims, where each side's
/// batch dims are the output's after leading ones (so that output batch `z` takes that side's
/// `z mod ba`: all ones broadcast, all equal is one to one); `None` for other broadcasts (a side
/// broadcasting on an inner batch dim).
fn split_batches<const D: usize>(lhs: &Tensor<D>, rhs: &Tensor<D>) -> Option<(usize, usize, [usize; D])> {
    let (a, b) = (lhs.dims(), rhs.dims());
    if D < 2 || a[D - 1] != b[D.saturating_sub(2)] {
        return None;
    }
    let mut out = a;
    for i in 0..D - 2 {
        out[i] = a[i].max(b[i]);
    }
    out[D - 1] = b[D - 1];
    let flat = |dims: [usize; D]| -> Option<usize> {
        let lead = dims[..D - 2].iter().take_while(|&&d| d == 1).count();
        (dims[lead..D - 2] == out[lead..D - 2]).then(|| dims[..D - 2].iter().product())
    };
    Some((flat(a)?, flat(b)?, out))
}

/// One launch of `kind` (no split; `Auto` already resolved by [`matmul_with`]).
fn matmul_once<const D: usize>(lhs: Tensor<D>, rhs: Tensor<D>, kind: GpuMatmul) -> Tensor<D> {
    if kind == GpuMatmul::Tiled {
        if let Some(y) = tiled_matmul(&lhs, &rhs) {
            return y;
        }
    }
    // on a tensor-core adapter burn's matmul would panic where its cmma routine calls a problem
    // invalid: the cube side runs its routines itself (`Backend` there is only the fallbacks)
    cube::matmul_or_fallback(&lhs, &rhs, kind).unwrap_or_else(|| lhs.matmul(rhs))
}

/// [`GpuMatmul::Tiled`]: the batch dims flattened (see [`split_batches`]); `None` off the cube
/// backend or where the batches do not flatten.
fn tiled_matmul<const D: usize>(lhs: &Tensor<D>, rhs: &Tensor<D>) -> Option<Tensor<D>> {
    let (ba, bb, out) = split_batches(lhs, rhs)?;
    let [m, k, n] = [lhs.dims()[D - 2], lhs.dims()[D - 1], rhs.dims()[D - 1]];
    let y = tiled::matmul_auto(&lhs.clone().reshape([ba, m, k]), &rhs.clone().reshape([bb, k, n]))?;
    Some(y.reshape(out))
}

/// `x · W + b` (`W` `[in, out]`, as burn's `module::linear`) through [`matmul`]: the leading dims
/// fold into the rows of one GEMM.
pub fn linear<const D: usize>(x: Tensor<D>, weight: Tensor<2>, bias: Option<Tensor<1>>) -> Tensor<D> {
    let backend = gpu_matmul() == GpuMatmul::Backend && !cube::tensor_cores(&x);
    if D < 2 || backend || !cube::is_cube(&x) || x.dtype() != weight.dtype() {
        return backend_linear(x, weight, bias);
    }
    let dims = x.dims();
    let rows: usize = dims[..D - 1].iter().product();
    let [cin, cout] = weight.dims();
    if D == 3 && !cube::is_contiguous(&x) {
        // a strided `[B, S, in]` (the VAE's pixels read as tokens): batched, as it is, rather than
        // copied into rows first
        let y = matmul(x, weight.unsqueeze::<D>());
        return match bias {
            Some(b) => y + b.unsqueeze::<D>(),
            None => y,
        };
    }
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
    cube::flash_attention(q, k, v, causal, FLASH_PLANES.load(Ordering::Relaxed))
}

static FLASH_PLANES: AtomicU8 = AtomicU8::new(4);

/// Planes (query tiles of 16 rows) per workgroup of the tensor-core flash attention (cubek's
/// `BlackboxAccelerated` routine, f16 fragments), which [`flash_attention`] tries first on f16
/// tensors where the adapter has f16 cooperative matrices; 0 turns it off (then cubek's `Unit`
/// routine runs).
pub fn set_flash_planes(planes: u8) {
    FLASH_PLANES.store(planes, Ordering::Relaxed);
}

/// Fused attention (`rows.rs`: one launch, no score matrix, nothing WebGPU lacks) of `q`
/// `[B, Sq, H, d]` over `k` `[B, Sk, H, d]`, `v` `[B, Sk, H, dv]` → `[B, Sq, H, dv]` (scale `1/√d`;
/// `causal` needs `Sq == Sk`); `None` off the cube backend or for head dims over 160.
pub fn fused_attention(q: &Tensor<4>, k: &Tensor<4>, v: &Tensor<4>, causal: bool) -> Option<Tensor<4>> {
    rows::attention(q, k, v, causal)
}

static FUSED_ROWS: AtomicUsize = AtomicUsize::new(0);

/// Query rows each unit of [`fused_attention`] holds in registers (1–4; 0, the default: by head
/// dim, see [`fused_rows_per_unit`]). More rows reuse each staged key more often, at the price of
/// registers (`rows · (d + dv)` floats per unit). For the GPU benchmark; not measured on a GPU yet.
pub fn set_fused_rows_per_unit(rows: usize) {
    FUSED_ROWS.store(rows.min(4), Ordering::Relaxed);
}

/// The rows per unit [`fused_attention`] uses for head dims `d`, `dv`: the setting, else as many
/// as keep `rows · (d + dv)` ≤ 160 floats (SD1.5: 2 at d = 40, 1 at 80 and 160), at most 4.
pub fn fused_rows_per_unit(d: usize, dv: usize) -> usize {
    match FUSED_ROWS.load(Ordering::Relaxed) {
        0 => (160 / (d + dv).max(1)).clamp(1, 4),
        n => n,
    }
}

/// The im2col matrix `[n, c·kh·kw, len·ow]` of `x` `[n, c, h, w]` for a `kh×kw` convolution with
/// `stride` (both directions) padded by `pt` rows on top and `pl` columns on the left, over output
/// rows `r0..r0 + len` of width `ow`, in one launch (`im2col.rs`); `None` off the cube backend.
#[allow(clippy::too_many_arguments)]
pub fn im2col(x: &Tensor<4>, stride: usize, kh: usize, kw: usize, pt: usize, pl: usize, r0: usize, len: usize, ow: usize) -> Option<Tensor<3>> {
    im2col::im2col(x, stride, kh, kw, pt, pl, r0, len, ow)
}

/// `GroupNorm(groups, eps)` of `x` `[B, C, H, W]` with per-channel `weight`/`bias`, then SiLU
/// where `silu`, in one launch (`norm.rs`); `None` off the cube backend or for a non-contiguous `x`.
pub fn group_norm(x: &Tensor<4>, weight: &Tensor<1>, bias: &Tensor<1>, groups: usize, eps: f64, silu: bool) -> Option<Tensor<4>> {
    norm::group_norm(x, weight, bias, groups, eps, silu)
}

/// `LayerNorm(eps)` of `x` over its last dim in one launch (`norm.rs`); `None` off the cube
/// backend or for a non-contiguous `x`.
pub fn layer_norm<const D: usize>(x: &Tensor<D>, weight: &Tensor<1>, bias: &Tensor<1>, eps: f64) -> Option<Tensor<D>> {
    norm::layer_norm(x, weight, bias, eps)
}

/// `y + bias`, then `+ (sample + sample_bias)`, then `(residual + residual_bias) +`, over `y`
/// `[o, c, i]` with per-channel `bias`, `sample_bias`, `residual_bias` `[c]`, a per-row-and-channel
/// `sample` `[o, c]` and `residual` `[o, c, i]`, in one launch (`epilogue.rs`); `None` off the cube
/// backend or where the shapes or dtypes do not match. `nn::add_terms` is the caller.
pub fn epilogue(
    y: &Tensor<3>,
    bias: Option<&Tensor<1>>,
    sample: Option<(&Tensor<2>, Option<&Tensor<1>>)>,
    residual: Option<(&Tensor<3>, Option<&Tensor<1>>)>,
) -> Option<Tensor<3>> {
    epilogue::epilogue(y, bias, sample, residual)
}

/// diffusers' GEGLU of `h` `[rows, 2n]` with the projection's `bias` `[2n]` still to add, in one
/// launch (`epilogue.rs`); `None` off the cube backend, for a non-contiguous `h` or an odd width.
pub fn geglu(h: &Tensor<2>, bias: Option<&Tensor<1>>) -> Option<Tensor<2>> {
    epilogue::geglu(h, bias)
}

/// Whether `t`'s adapter runs `t`'s dtype on tensor cores (the `*Cmma` routines of [`GpuMatmul`]).
pub fn tensor_cores<const D: usize>(t: &Tensor<D>) -> bool {
    cube::tensor_cores(t)
}

#[cfg(feature = "wgpu")]
mod cube;
#[cfg(feature = "wgpu")]
mod epilogue;
#[cfg(feature = "wgpu")]
mod im2col;
#[cfg(feature = "wgpu")]
mod norm;
#[cfg(feature = "wgpu")]
mod rows;
#[cfg(feature = "wgpu")]
mod tiled;

#[cfg(not(feature = "wgpu"))]
mod stubs;
#[cfg(not(feature = "wgpu"))]
use stubs::{cube, epilogue, im2col, norm, rows, tiled};

#[cfg(test)]
mod epilogue_tests;
#[cfg(test)]
mod tests;
