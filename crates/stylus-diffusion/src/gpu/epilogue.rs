//! What follows a GEMM, in one launch on the cube backend: the bias add with the additions after it
//! (`y + b` then `+ (t + t_b)` per sample and channel, then `(r + r_b) +` a residual), and
//! diffusers' GEGLU (`(h + b)[.., :n] · gelu((h + b)[.., n:])`, `attention.py` `GEGLU`; exact
//! erf GELU: Hendrycks & Gimpel 2016) with the projection's bias. burn 0.22.1 runs each addition
//! as a kernel of its own (a full pass each), and the GEGLU as seven: the bias add, then GELU's
//! division, erf, add, multiply and halving, and the product. The arithmetic and its order are
//! the ops' (`nn::gelu` is burn's `x · (1 + erf(x / √2)) / 2`), in the tensors' dtype.

use burn::tensor::{DType, Tensor};
use burn_backend::cubecl::dtype_to_storage_type;
use burn_cubecl::cubecl::prelude::CubeDim;
use burn_cubecl::ops::numeric::empty_device_contiguous_dtype;
use burn_cubecl::tensor::CubeTensor;
use burn_cubecl::CubeBackend;

use super::cube::{float_ok, grid_2d, primitive};

/// Units per workgroup (WebGPU guarantees 256 invocations).
const UNITS: usize = 256;

/// The kernels, apart: cubecl's `Tensor` is not burn's.
mod kernel {
    use burn_cubecl::cubecl::{self, prelude::*};

    /// One unit per element `e` of `out` `[o, c, i]` (contiguous): `y[e] + bias[c]`, then
    /// `+ (sample[o, c] + sample_bias[c])`, then `(res[e] + res_bias[c]) +`; the bits of `terms`
    /// (1: bias, 2: sample, 4: its bias, 8: residual, 16: its bias) say which exist (an absent tensor is a one-element stand-in, never read).
    /// `y` and `res` are read through their strides. `terms` is a run-time value, the same for
    /// every unit: one kernel to compile for every combination (a browser compiles each variant
    /// on the CPU, in SwiftShader for hundreds of milliseconds).
    #[cube(launch)]
    #[allow(clippy::too_many_arguments)]
    pub fn epilogue<F: Float>(
        y: &Tensor<F>,
        bias: &Tensor<F>,
        sample: &Tensor<F>,
        sample_bias: &Tensor<F>,
        res: &Tensor<F>,
        res_bias: &Tensor<F>,
        out: &mut Tensor<F>,
        terms: u32,
        #[define(F)] _dtype: ElemType,
    ) {
        let e = (CUBE_POS_Y as usize * CUBE_COUNT_X as usize + CUBE_POS_X as usize) * CUBE_DIM_X as usize + UNIT_POS_X as usize;
        if e < out.len() {
            let (channels, inner) = (out.shape(1), out.shape(2));
            let i = e % inner;
            let c = (e / inner) % channels;
            let o = e / (inner * channels);
            let mut v = y[o * y.stride(0) + c * y.stride(1) + i * y.stride(2)];
            if terms & 1 != 0 {
                v += bias[c];
            }
            if terms & 2 != 0 {
                let mut t = sample[o * channels + c];
                if terms & 4 != 0 {
                    t += sample_bias[c];
                }
                v += t;
            }
            if terms & 8 != 0 {
                let mut r = res[o * res.stride(0) + c * res.stride(1) + i * res.stride(2)];
                if terms & 16 != 0 {
                    r += res_bias[c];
                }
                v = r + v;
            }
            out[e] = v;
        }
    }

    /// One unit per element of `out` `[rows, n]` (contiguous) from `h` `[rows, 2n]` (contiguous):
    /// `a · gelu(g)` with `a = h[r, j] + bias[j]`, `g = h[r, n + j] + bias[n + j]`, GELU as burn's
    /// ops compute it.
    #[cube(launch)]
    pub fn geglu<F: Float>(h: &Tensor<F>, bias: &Tensor<F>, out: &mut Tensor<F>, #[comptime] has_bias: bool, #[define(F)] _dtype: ElemType) {
        let e = (CUBE_POS_Y as usize * CUBE_COUNT_X as usize + CUBE_POS_X as usize) * CUBE_DIM_X as usize + UNIT_POS_X as usize;
        if e < out.len() {
            let n = out.shape(1);
            let (r, j) = (e / n, e % n);
            let mut a = h[r * 2 * n + j];
            let mut g = h[r * 2 * n + n + j];
            if has_bias {
                a += bias[j];
                g += bias[n + j];
            }
            let gelu = g * (F::erf(g / F::new(core::f32::consts::SQRT_2)) + F::new(1.0)) / F::new(2.0);
            out[e] = a * gelu;
        }
    }
}

/// A term's tensor on the cube backend in `dtype` (and its dims), or `None` to decline.
fn cube_of<const D: usize>(t: &Tensor<D>, dtype: DType) -> Option<(CubeTensor, [usize; D])> {
    let p = primitive(t)?;
    (p.dtype == dtype).then(|| (p, t.dims()))
}

/// `y + bias`, `+ (sample + sample_bias)`, `(residual + residual_bias) +`, over `y` `[o, c, i]`
/// with `bias`, `sample_bias`, `residual_bias` `[c]`, `sample` `[o, c]` (these contiguous),
/// `residual` `[o, c, i]`, in one launch; `None` off the cube backend, for mixed or non-float
/// dtypes, shapes that do not match, strided per-channel terms, or more than 65,535² workgroups.
/// Seven tensors and cubecl's info buffer: eight storage bindings, WebGPU's default per-stage
/// limit (`maxStorageBuffersPerShaderStage`), so no term can be added without splitting the kernel.
pub fn epilogue(
    y: &Tensor<3>,
    bias: Option<&Tensor<1>>,
    sample: Option<(&Tensor<2>, Option<&Tensor<1>>)>,
    residual: Option<(&Tensor<3>, Option<&Tensor<1>>)>,
) -> Option<Tensor<3>> {
    let py = primitive(y)?;
    let dtype = py.dtype;
    let [o, c, i] = y.dims();
    let total = o * c * i;
    if !float_ok(dtype) || total == 0 {
        return None;
    }
    let (client, device) = (py.client.clone(), py.device.clone());
    let stand_in = || empty_device_contiguous_dtype(client.clone(), device.clone(), [1].into(), dtype);
    let channel = |t: Option<&Tensor<1>>| -> Option<Option<CubeTensor>> {
        t.map(|t| cube_of(t, dtype).and_then(|(p, d)| (d == [c] && p.is_contiguous()).then_some(p))).map_or(Some(None), |p| p.map(Some))
    };
    let pb = channel(bias)?;
    let (ps, psb) = match sample {
        Some((t, tb)) => (Some(cube_of(t, dtype).and_then(|(p, d)| (d == [o, c] && p.is_contiguous()).then_some(p))?), channel(tb)?),
        None => (None, None),
    };
    let (pr, prb) = match residual {
        Some((r, rb)) => (Some(cube_of(r, dtype).and_then(|(p, d)| (d == [o, c, i]).then_some(p))?), channel(rb)?),
        None => (None, None),
    };
    let grid = grid_2d(total.div_ceil(UNITS))?;
    let terms = [&pb, &ps, &psb, &pr, &prb].iter().enumerate().fold(0u32, |t, (bit, p)| t | (u32::from(p.is_some()) << bit));
    let arg = |p: Option<CubeTensor>| p.unwrap_or_else(stand_in).into_tensor_arg();
    let out = empty_device_contiguous_dtype(client.clone(), device.clone(), [o, c, i].into(), dtype);
    kernel::epilogue::launch(
        &client,
        grid,
        CubeDim::new_1d(UNITS as u32),
        py.into_tensor_arg(),
        arg(pb),
        arg(ps),
        arg(psb),
        arg(pr),
        arg(prb),
        out.clone().into_tensor_arg(),
        terms,
        dtype_to_storage_type(dtype),
    );
    Some(Tensor::from_primitive::<CubeBackend>(out))
}

/// GEGLU of `h` `[rows, 2n]` (contiguous) with the projection's `bias` `[2n]` still to add:
/// `[rows, n]`; `None` off the cube backend, for mixed or non-float dtypes, an odd width, a
/// non-contiguous `h`, or more than 65,535² workgroups.
pub fn geglu(h: &Tensor<2>, bias: Option<&Tensor<1>>) -> Option<Tensor<2>> {
    let ph = primitive(h)?;
    let dtype = ph.dtype;
    let [rows, width] = h.dims();
    let n = width / 2;
    if !float_ok(dtype) || !ph.is_contiguous() || width % 2 != 0 || rows * n == 0 {
        return None;
    }
    let pb = match bias {
        Some(b) => Some(cube_of(b, dtype).and_then(|(p, d)| (d == [width] && p.is_contiguous()).then_some(p))?),
        None => None,
    };
    let grid = grid_2d((rows * n).div_ceil(UNITS))?;
    let client = ph.client.clone();
    let has_bias = pb.is_some();
    let pb = pb.unwrap_or_else(|| empty_device_contiguous_dtype(client.clone(), ph.device.clone(), [1].into(), dtype));
    let out = empty_device_contiguous_dtype(client.clone(), ph.device.clone(), [rows, n].into(), dtype);
    kernel::geglu::launch(
        &client,
        grid,
        CubeDim::new_1d(UNITS as u32),
        ph.into_tensor_arg(),
        pb.into_tensor_arg(),
        out.clone().into_tensor_arg(),
        has_bias,
        dtype_to_storage_type(dtype),
    );
    Some(Tensor::from_primitive::<CubeBackend>(out))
}
