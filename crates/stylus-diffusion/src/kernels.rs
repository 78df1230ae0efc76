//! Kernel choices for the two ops a UNet step spends its time in: how a Conv2d runs (burn's
//! `conv2d`, or as a GEMM: a 1×1 conv is a matmul, a k×k conv a matmul over an im2col matrix,
//! one launch on the cube backend (`gpu/im2col.rs`) and elsewhere k² shifted views of the padded
//! input stacked, tiled over output rows so that no column matrix exceeds [`COLS_BUDGET_BYTES`]).
//! The choice is process-wide ([`set_conv_kernel`]), measured by `benches/unet_step.rs --conv`:
//! GEMM is the default, faster on every backend measured (full-size UNet step, BENCHMARKS.md:
//! 2.4× on an H200 through wgpu, 2× on lavapipe, 4–12% on burn-flex).
//! im2col is the textbook lowering (Chellapilla et al. 2006, "High performance convolutional neural
//! networks for document processing"); the arithmetic per output element is the same sum in
//! another order, so results agree with `conv2d` to f32 rounding (tested).

use std::sync::atomic::{AtomicU8, Ordering};

use burn::tensor::module::conv2d;
use burn::tensor::ops::{ConvOptions, PadMode};
use burn::tensor::Tensor;

/// How [`conv2d_with`] computes a convolution.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConvKernel {
    /// burn's `module::conv2d` (direct convolution on wgpu without autotune; im2col on flex).
    Backend = 0,
    /// 1×1 → matmul, k×k (no dilation, one group; equal strides on the cube backend, stride 1
    /// elsewhere) → im2col + matmul; anything else falls back to [`ConvKernel::Backend`]. The default.
    Gemm = 1,
}

impl ConvKernel {
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "backend" | "direct" => Some(ConvKernel::Backend),
            "gemm" | "im2col" => Some(ConvKernel::Gemm),
            _ => None,
        }
    }
}

static CONV: AtomicU8 = AtomicU8::new(ConvKernel::Gemm as u8);

/// Chooses the convolution kernel for every Conv2d of this process (default [`ConvKernel::Gemm`]).
pub fn set_conv_kernel(kernel: ConvKernel) {
    CONV.store(kernel as u8, Ordering::Relaxed);
}

pub fn conv_kernel() -> ConvKernel {
    if CONV.load(Ordering::Relaxed) == ConvKernel::Backend as u8 {
        ConvKernel::Backend
    } else {
        ConvKernel::Gemm
    }
}

/// Largest im2col matrix one GEMM may use (f32 bytes): half the WebGPU default storage binding.
pub const COLS_BUDGET_BYTES: usize = 64 << 20;

/// `conv2d(x, w, b, opts)` with the process-wide kernel ([`set_conv_kernel`]).
pub fn conv2d_with(x: Tensor<4>, weight: Tensor<4>, bias: Option<Tensor<1>>, opts: ConvOptions<2>) -> Tensor<4> {
    match conv_kernel() {
        ConvKernel::Backend => conv2d(x, weight, bias, opts),
        ConvKernel::Gemm => conv2d_gemm(x, weight, bias, opts),
    }
}

/// A convolution as GEMM (see the module docs); unsupported options fall back to `conv2d`.
pub fn conv2d_gemm(x: Tensor<4>, weight: Tensor<4>, bias: Option<Tensor<1>>, opts: ConvOptions<2>) -> Tensor<4> {
    conv2d_gemm_within(x, weight, bias, opts, COLS_BUDGET_BYTES)
}

/// [`conv2d_gemm`] with an explicit column-matrix budget (bytes).
fn conv2d_gemm_within(x: Tensor<4>, weight: Tensor<4>, bias: Option<Tensor<1>>, opts: ConvOptions<2>, budget: usize) -> Tensor<4> {
    let [n, c, h, w] = x.dims();
    let [co, ci, kh, kw] = weight.dims();
    let [s, sw] = opts.stride;
    // strides other than 1 only through the cube backend's im2col (the views below are stride 1)
    let plain = s == sw && s >= 1 && (s == 1 || crate::gpu::on_cube(&x)) && opts.dilation == [1, 1] && opts.groups == 1 && ci == c;
    if !plain {
        return conv2d(x, weight, bias, opts);
    }
    let [(pt, pb), (pl, pr)] = opts.padding;
    let (hp, wp) = (h + pt + pb, w + pl + pr);
    if hp < kh || wp < kw {
        return conv2d(x, weight, bias, opts);
    }
    let (oh, ow) = ((hp - kh) / s + 1, (wp - kw) / s + 1);
    let k = c * kh * kw;
    let wm = weight.clone().reshape([1, co, k]);
    let y = if kh == 1 && kw == 1 && s == 1 && pt + pb + pl + pr == 0 {
        crate::gpu::matmul(wm, x.reshape([n, c, h * w])).reshape([n, co, oh, ow])
    } else {
        // the padded input, for the views of the fallback (made once, only if needed)
        let mut xp: Option<Tensor<4>> = None;
        // Output rows per tile so that one tile's columns `[n, k, rows·ow]` fit the budget.
        let rows = (budget / (4 * n * k * ow).max(1)).clamp(1, oh);
        let mut tiles = Vec::with_capacity(oh.div_ceil(rows));
        let mut r0 = 0;
        while r0 < oh {
            let len = rows.min(oh - r0);
            // one launch on the cube backend, else k² shifted views of the padded input stacked
            let cols = crate::gpu::im2col(&x, s, kh, kw, pt, pl, r0, len, ow).or_else(|| {
                if s != 1 {
                    return None;
                }
                let xp = xp.get_or_insert_with(|| if pt + pb + pl + pr == 0 { x.clone() } else { x.clone().pad([(pt, pb), (pl, pr)], PadMode::Constant(0.0)) });
                stacked_columns(xp, kh, kw, r0, len, ow)
            });
            let Some(cols) = cols else {
                return conv2d(x, weight, bias, opts);
            };
            tiles.push(crate::gpu::matmul(wm.clone(), cols).reshape([n, co, len, ow]));
            r0 += len;
        }
        if tiles.len() == 1 {
            tiles.pop().expect("one tile")
        } else {
            Tensor::cat(tiles, 2)
        }
    };
    match bias {
        Some(b) => y + b.reshape([1, co, 1, 1]),
        None => y,
    }
}

/// The im2col matrix `[n, c·kh·kw, len·ow]` of output rows `r0..r0 + len` from the padded input
/// `xp` `[n, c, hp, wp]`: its k² shifted views stacked (what [`conv2d_gemm`] builds where
/// `crate::gpu::im2col` declines); `None` where the rows or columns fall outside `xp`.
pub fn stacked_columns(xp: &Tensor<4>, kh: usize, kw: usize, r0: usize, len: usize, ow: usize) -> Option<Tensor<3>> {
    let [n, c, hp, wp] = xp.dims();
    if kh == 0 || kw == 0 || len == 0 || ow == 0 || r0 + len + kh - 1 > hp || ow + kw - 1 > wp {
        return None;
    }
    let band = xp.clone().narrow(2, r0, len + kh - 1);
    let mut shifted = Vec::with_capacity(kh * kw);
    for dy in 0..kh {
        for dx in 0..kw {
            shifted.push(band.clone().narrow(2, dy, len).narrow(3, dx, ow));
        }
    }
    // [n, c, kh·kw, len, ow] → [n, c·kh·kw, len·ow]: the weight's [co, c, kh, kw] order.
    Some(Tensor::stack::<5>(shifted, 2).reshape([n, c * kh * kw, len * ow]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::{from_vec, to_vec};
    use crate::testing::pseudo;

    /// GEMM equals burn's conv2d for 1×1, 3×3 with symmetric and asymmetric padding, no padding,
    /// row tiles (a budget of 3 output rows, uneven last tile), stride 2 (the downsamplers: the
    /// UNet's padded, the VAE encoder's padded on the bottom and right only; through im2col on the
    /// cube backend, burn's conv2d elsewhere) and 3.
    #[test]
    fn gemm_equals_conv2d() {
        let dev = crate::device_from_env().unwrap();
        // (batch, channels in, size, channels out, kernel, padding, stride)
        type Case = (usize, usize, usize, usize, usize, [(usize, usize); 2], usize);
        let cases: [Case; 9] = [
            (2, 5, 7, 6, 1, [(0, 0), (0, 0)], 1),
            (2, 5, 7, 6, 3, [(1, 1), (1, 1)], 1),
            (1, 3, 9, 4, 3, [(0, 1), (0, 1)], 1),
            (1, 4, 6, 3, 3, [(0, 0), (0, 0)], 1),
            (2, 3, 8, 5, 3, [(1, 1), (1, 1)], 2),
            (1, 2, 11, 4, 3, [(1, 1), (1, 1)], 1),
            (1, 3, 9, 4, 3, [(0, 1), (0, 1)], 2),
            (2, 2, 10, 3, 3, [(1, 1), (1, 1)], 3),
            (1, 3, 7, 2, 1, [(0, 0), (0, 0)], 2),
        ];
        for (i, &(n, c, hw, co, k, pad, stride)) in cases.iter().enumerate() {
            let x = from_vec(pseudo(n * c * hw * hw, 1 + i as u32), [n, c, hw, hw], &dev).unwrap();
            let w = from_vec(pseudo(co * c * k * k, 7 + i as u32), [co, c, k, k], &dev).unwrap();
            let b = from_vec(pseudo(co, 13), [co], &dev).unwrap();
            let opts = ConvOptions::new_with_padding([stride; 2], pad, [1, 1], 1);
            let want = to_vec(conv2d(x.clone(), w.clone(), Some(b.clone()), opts.clone())).unwrap();
            let ow = (hw + pad[1].0 + pad[1].1 - k) / stride + 1;
            let budget = match i {
                5 => 4 * n * c * k * k * hw * 3,
                // one output row per tile
                7 => 4 * n * c * k * k * ow,
                _ => COLS_BUDGET_BYTES,
            };
            let got = to_vec(conv2d_gemm_within(x, w, Some(b), opts, budget)).unwrap();
            assert_eq!(want.len(), got.len(), "case {i}");
            let diff = want.iter().zip(&got).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
            assert!(diff <= 1e-4, "case {i}: max |diff| {diff}");
        }
    }

    /// The one-launch im2col of the cube backend (`gpu/im2col.rs`) equals the stacked views of the
    /// padded input: symmetric, asymmetric and no padding, 1×1 to 3×3, bands starting inside the
    /// output, a strided (permuted) input, f16 storage, a matrix whose workgroups need a 2-d grid.
    /// Off the cube backend it declines.
    #[test]
    fn im2col_kernel_equals_the_views() {
        use burn::tensor::FloatDType;
        let dev = crate::device_from_env().unwrap();
        // (n, c, h, w, kh, kw, [(pt, pb), (pl, pr)], r0, len)
        type Case = (usize, usize, usize, usize, usize, usize, [(usize, usize); 2], usize, usize);
        let cases: [Case; 6] = [
            // 18·1000² = 18 M elements: more workgroups of 256 than a grid row's 65,535
            (1, 2, 1000, 1000, 3, 3, [(1, 1), (1, 1)], 0, 1000),
            (2, 3, 7, 6, 3, 3, [(1, 1), (1, 1)], 0, 7),
            (1, 4, 9, 5, 3, 3, [(1, 1), (1, 1)], 4, 3),
            (2, 2, 6, 8, 3, 2, [(0, 1), (2, 0)], 1, 4),
            (1, 5, 4, 4, 1, 1, [(0, 0), (0, 0)], 0, 4),
            (1, 3, 5, 6, 3, 3, [(0, 0), (0, 0)], 2, 1),
        ];
        for (i, &(n, c, h, w, kh, kw, pad, r0, len)) in cases.iter().enumerate() {
            let [(pt, pb), (pl, pr)] = pad;
            let ow = w + pl + pr - kw + 1;
            // a permuted view: [n, h, w, c] data read as [n, c, h, w]
            let x = from_vec(pseudo(n * c * h * w, 20 + i as u32), [n, h, w, c], &dev).unwrap().permute([0, 3, 1, 2]);
            let xp = x.clone().pad([(pt, pb), (pl, pr)], PadMode::Constant(0.0));
            let want = to_vec(stacked_columns(&xp, kh, kw, r0, len, ow).expect("in range")).unwrap();
            let Some(got) = crate::gpu::im2col(&x, 1, kh, kw, pt, pl, r0, len, ow) else {
                assert!(!crate::gpu::on_cube(&x), "case {i}: the kernel declined on the cube backend");
                continue;
            };
            assert_eq!(got.dims(), [n, c * kh * kw, len * ow], "case {i}");
            assert_eq!(to_vec(got).unwrap(), want, "case {i}");
            let half = crate::gpu::im2col(&x.clone().cast(FloatDType::F16), 1, kh, kw, pt, pl, r0, len, ow).expect("f16");
            let got16 = to_vec(half.cast(FloatDType::F32)).unwrap();
            let diff = want.iter().zip(&got16).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
            assert!(diff <= 2e-3, "case {i} f16: {diff}");
            // stride 2 and 3: every s-th row and column of the stride-1 matrix over the whole output
            // (not on the 18 M-element case: the grid is the same kernel's)
            if i == 0 {
                continue;
            }
            let (oh1, ow1) = (h + pt + pb - kh + 1, ow);
            let full = to_vec(stacked_columns(&xp, kh, kw, 0, oh1, ow1).expect("in range")).unwrap();
            for s in [2, 3] {
                let (ohs, ows) = ((oh1 - 1) / s + 1, (ow1 - 1) / s + 1);
                let got = to_vec(crate::gpu::im2col(&x, s, kh, kw, pt, pl, 0, ohs, ows).expect("strided")).unwrap();
                let rows = c * kh * kw;
                let want: Vec<f32> = (0..n * rows * ohs * ows)
                    .map(|e| {
                        let (p, r, b) = (e % (ohs * ows), (e / (ohs * ows)) % rows, e / (ohs * ows * rows));
                        full[(b * rows + r) * oh1 * ow1 + (p / ows) * s * ow1 + (p % ows) * s]
                    })
                    .collect();
                assert_eq!(got, want, "case {i} stride {s}");
            }
        }
    }

    #[test]
    fn kernel_names_parse() {
        assert_eq!(ConvKernel::parse("gemm"), Some(ConvKernel::Gemm));
        assert_eq!(ConvKernel::parse("direct"), Some(ConvKernel::Backend));
        assert_eq!(ConvKernel::parse("fast"), None);
    }
}
