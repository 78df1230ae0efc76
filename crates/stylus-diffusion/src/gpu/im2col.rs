//! The im2col matrix of a convolution in one launch on the cube backend (the textbook lowering:
//! Chellapilla et al. 2006, "High performance convolutional neural networks for document
//! processing"): column `(c, dy, dx)` × position `(y, x)` holds the input at
//! `(c, s·y + dy − pt, s·x + dx − pl)` for stride `s`, zero outside it. It replaces the padded
//! copy, the k² shifted views and their stack (some twenty copy kernels per convolution) with one
//! pass that reads the unpadded input (any strides) and writes each column element once.

use burn::tensor::Tensor;
use burn_backend::cubecl::dtype_to_storage_type;
use burn_cubecl::cubecl::prelude::CubeDim;
use burn_cubecl::ops::numeric::empty_device_contiguous_dtype;
use burn_cubecl::CubeBackend;

use super::cube::{float_ok, grid_2d, primitive};

/// Units per workgroup (WebGPU guarantees 256 invocations).
const UNITS: usize = 256;

/// The kernel, apart: cubecl's `Tensor` is not burn's.
mod kernel {
    use burn_cubecl::cubecl::{self, prelude::*};

    /// One unit per element of `cols` `[n, c·kh·kw, len·ow]` (contiguous); output rows start at
    /// `r0` (a band of the output), `ow` output columns per row.
    #[cube(launch)]
    pub fn im2col<F: Float>(
        x: &Tensor<F>,
        cols: &mut Tensor<F>,
        r0: u32,
        ow: u32,
        #[comptime] stride: usize,
        #[comptime] kh: usize,
        #[comptime] kw: usize,
        #[comptime] pt: usize,
        #[comptime] pl: usize,
        #[define(F)] _dtype: ElemType,
    ) {
        let e = (CUBE_POS_Y as usize * CUBE_COUNT_X as usize + CUBE_POS_X as usize) * CUBE_DIM_X as usize + UNIT_POS_X as usize;
        if e < cols.len() {
            let positions = cols.shape(2);
            let rows = cols.shape(1);
            let p = e % positions;
            let kk = (e / positions) % rows;
            let b = e / (positions * rows);
            let ow = ow as usize;
            // padded input coordinates of this element
            let iy = (r0 as usize + p / ow) * stride + (kk / kw) % kh;
            let ix = (p % ow) * stride + kk % kw;
            let c = kk / comptime!(kh * kw);
            let (h, w) = (x.shape(2), x.shape(3));
            let inside = iy >= pt && iy < h + pt && ix >= pl && ix < w + pl;
            // clamped, so that the read stays in bounds where the element is padding
            let y = min(max(iy, pt) - pt, h - 1);
            let xx = min(max(ix, pl) - pl, w - 1);
            let value = x[b * x.stride(0) + c * x.stride(1) + y * x.stride(2) + xx * x.stride(3)];
            cols[e] = select(inside, value, F::new(0.0));
        }
    }
}

/// The im2col matrix `[n, c·kh·kw, len·ow]` of `x` `[n, c, h, w]` for a dilation-1 `kh×kw`
/// convolution with `stride` in both directions, padded by `pt` rows on top and `pl` columns on the left, over output rows
/// `r0..r0 + len` of width `ow`; rows `(c, dy, dx)` in the weight's `[co, c, kh, kw]` order.
/// `None` where `x` is not on the cube backend or not a float it takes, a size is empty, or the
/// matrix needs more than 65,535² workgroups.
#[allow(clippy::too_many_arguments)]
pub fn im2col(x: &Tensor<4>, stride: usize, kh: usize, kw: usize, pt: usize, pl: usize, r0: usize, len: usize, ow: usize) -> Option<Tensor<3>> {
    let px = primitive(x)?;
    let [n, c, h, w] = x.dims();
    let (rows, positions) = (c * kh * kw, len * ow);
    let total = n * rows * positions;
    if !float_ok(px.dtype) || total == 0 || h == 0 || w == 0 || stride == 0 || u32::try_from(r0 + len).is_err() || u32::try_from(ow).is_err() {
        return None;
    }
    let grid = grid_2d(total.div_ceil(UNITS))?;
    let client = px.client.clone();
    let out = empty_device_contiguous_dtype(client.clone(), px.device.clone(), [n, rows, positions].into(), px.dtype);
    let dtype = px.dtype;
    kernel::im2col::launch(
        &client,
        grid,
        CubeDim::new_1d(UNITS as u32),
        px.into_tensor_arg(),
        out.clone().into_tensor_arg(),
        r0 as u32,
        ow as u32,
        stride,
        kh,
        kw,
        pt,
        pl,
        dtype_to_storage_type(dtype),
    );
    Some(Tensor::from_primitive::<CubeBackend>(out))
}
