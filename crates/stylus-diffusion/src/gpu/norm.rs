//! GroupNorm and LayerNorm (`torch.nn` semantics: biased variance, per-channel affine; Wu & He
//! 2018, "Group Normalization"; Ba et al. 2016, "Layer Normalization") in one launch on the cube
//! backend, optionally followed by SiLU (the resnets' `silu(norm(x))`): one workgroup per
//! normalised segment (a (batch, group) of `[B, C, H, W]`, or a row of `[…, C]`) sums it, then the
//! squared deviations from the mean (two passes, as the ops did), through a tree reduction in
//! workgroup memory (no subgroups needed), and writes the normalised values. burn 0.22.1 runs
//! these as eight to ten kernels (two `mean_dim`s, a subtraction, a square, a square root, a
//! division, the affine multiply and add, then sigmoid and multiply), each a full pass.

use burn::tensor::Tensor;
use burn_backend::cubecl::dtype_to_storage_type;
use burn_cubecl::cubecl::prelude::CubeDim;
use burn_cubecl::ops::numeric::empty_device_contiguous_dtype;
use burn_cubecl::CubeBackend;

use super::cube::{float_ok, grid_2d, primitive};

/// Units per workgroup for a segment of `len` values: 256 for long segments (GroupNorm's 40,960
/// at 64² latents), 64 up to 4096, 32 up to 1024 (LayerNorm's rows of 320–1280: one subgroup
/// on most GPUs; on lavapipe, `[2, 4096, 320]`, 64 units ran 47.0 ms and 32 ran 30.4 ms, burn's
/// ops 38.9–44.5 ms).
pub fn units_for(len: usize) -> usize {
    if len >= 4096 {
        256
    } else if len > 1024 {
        64
    } else {
        32
    }
}

/// The kernel, apart: cubecl's `Tensor` is not burn's.
mod kernel {
    use burn_cubecl::cubecl::{self, prelude::*};

    /// Sums `red` (one value per unit) into `red[0]`; every unit reaches every barrier.
    #[cube]
    fn reduce(red: &mut Shared<[f32]>, unit: usize, #[comptime] units: usize) {
        let first_half = comptime!(units / 2);
        let mut half = first_half.runtime();
        while half > 0 {
            if unit < half {
                red[unit] += red[unit + half];
            }
            sync_cube();
            half /= 2;
        }
    }

    /// Segment `s` (workgroup `y·count_x + x`) is `x[s·len .. (s + 1)·len]` of the contiguous
    /// `x`; value `i` of it takes affine parameter `(s mod groups)·(len / inner) + i / inner`
    /// (GroupNorm: `inner` = H·W, the channel; LayerNorm: `inner` = 1, `groups` = 1).
    #[cube(launch)]
    #[allow(clippy::too_many_arguments)]
    pub fn segment_norm<F: Float>(
        x: &Tensor<F>,
        weight: &Tensor<F>,
        bias: &Tensor<F>,
        out: &mut Tensor<F>,
        segment_len: u32,
        inner: u32,
        groups: u32,
        eps: f32,
        #[comptime] units: usize,
        #[comptime] silu: bool,
        #[define(F)] _dtype: ElemType,
    ) {
        let len = segment_len as usize;
        let segments = x.len() / len;
        let s = CUBE_POS_Y as usize * CUBE_COUNT_X as usize + CUBE_POS_X as usize;
        // a workgroup past the last segment reads the last one and writes nothing: every unit
        // must reach each barrier
        let seg = min(s, segments - 1);
        let base = seg * len;
        let unit = UNIT_POS_X as usize;
        let mut red = Shared::<[f32]>::new_slice(units);

        let mut sum = f32::new(0.0);
        let mut i = unit;
        while i < len {
            sum += f32::cast_from(x[base + i]);
            i += units;
        }
        red[unit] = sum;
        sync_cube();
        reduce(&mut red, unit, units);
        let mean = red[0] / f32::cast_from(len);
        sync_cube();

        let mut squares = f32::new(0.0);
        let mut i = unit;
        while i < len {
            let d = f32::cast_from(x[base + i]) - mean;
            squares += d * d;
            i += units;
        }
        red[unit] = squares;
        sync_cube();
        reduce(&mut red, unit, units);
        let rstd = f32::new(1.0) / (red[0] / f32::cast_from(len) + eps).sqrt();

        if s < segments {
            let inner = inner as usize;
            let first = (seg % groups as usize) * (len / inner);
            let mut i = unit;
            while i < len {
                let p = first + i / inner;
                let mut v = (f32::cast_from(x[base + i]) - mean) * rstd * f32::cast_from(weight[p]) + f32::cast_from(bias[p]);
                if silu {
                    v /= f32::new(1.0) + (-v).exp();
                }
                out[base + i] = F::cast_from(v);
                i += units;
            }
        }
    }
}

/// Normalises `x` (contiguous, `segments·len` values) per segment of `len` values, each value
/// `i` scaled and shifted by `weight`/`bias` entry `(segment mod groups)·(len / inner) + i / inner`,
/// then SiLU where `silu`; `None` off the cube backend, for a non-contiguous `x`, dtypes that
/// differ or are not float, or sizes that do not fit.
#[allow(clippy::too_many_arguments)]
fn segment_norm<const D: usize>(
    x: &Tensor<D>,
    weight: &Tensor<1>,
    bias: &Tensor<1>,
    len: usize,
    inner: usize,
    groups: usize,
    eps: f64,
    silu: bool,
) -> Option<Tensor<D>> {
    let (px, pw, pb) = (primitive(x)?, primitive(weight)?, primitive(bias)?);
    let dtype = px.dtype;
    let total = x.shape().num_elements();
    let params = groups * (len / inner.max(1));
    let fits = total > 0
        && len > 0
        && inner > 0
        && groups > 0
        && total.is_multiple_of(len)
        && len.is_multiple_of(inner)
        && weight.dims() == [params]
        && bias.dims() == [params];
    if !fits || !px.is_contiguous() || !float_ok(dtype) || pw.dtype != dtype || pb.dtype != dtype {
        return None;
    }
    let (len32, inner32, groups32) = (u32::try_from(len).ok()?, u32::try_from(inner).ok()?, u32::try_from(groups).ok()?);
    let grid = grid_2d(total / len)?;
    let units = units_for(len);
    let client = px.client.clone();
    let out = empty_device_contiguous_dtype(client.clone(), px.device.clone(), x.dims().into(), dtype);
    kernel::segment_norm::launch(
        &client,
        grid,
        CubeDim::new_1d(units as u32),
        px.into_tensor_arg(),
        pw.into_tensor_arg(),
        pb.into_tensor_arg(),
        out.clone().into_tensor_arg(),
        len32,
        inner32,
        groups32,
        eps as f32,
        units,
        silu,
        dtype_to_storage_type(dtype),
    );
    Some(Tensor::from_primitive::<CubeBackend>(out))
}

/// `GroupNorm(groups)` of `x` `[B, C, H, W]` with per-channel `weight`/`bias` `[C]`, then SiLU
/// where `silu`.
pub fn group_norm(x: &Tensor<4>, weight: &Tensor<1>, bias: &Tensor<1>, groups: usize, eps: f64, silu: bool) -> Option<Tensor<4>> {
    let [_, c, h, w] = x.dims();
    if groups == 0 || !c.is_multiple_of(groups) {
        return None;
    }
    segment_norm(x, weight, bias, (c / groups) * h * w, h * w, groups, eps, silu)
}

/// `LayerNorm` of `x` over its last dim with `weight`/`bias` of that size.
pub fn layer_norm<const D: usize>(x: &Tensor<D>, weight: &Tensor<1>, bias: &Tensor<1>, eps: f64) -> Option<Tensor<D>> {
    let c = *x.dims().last()?;
    segment_norm(x, weight, bias, c, 1, 1, eps, false)
}
