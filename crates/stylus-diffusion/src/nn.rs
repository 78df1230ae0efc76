//! The few layers SD1.5 is made of — Linear, Conv2d, GroupNorm, LayerNorm, Embedding — as plain
//! structs whose fields are the checkpoint's `weight`/`bias`, plus the activations and host
//! read-back helpers. Semantics follow `torch.nn` (GroupNorm/LayerNorm with biased variance).

use burn::tensor::activation;
use burn::tensor::module::{embedding, layer_norm};
use burn::tensor::ops::ConvOptions;
use burn::tensor::{Int, Tensor, TensorData};

use crate::load::Loader;
use crate::lora::{conv_forward, conv_weight, linear_forward, linear_weight, ConvPatch, LinearPatch, PatchSlot};
use crate::{Error, Result};

/// `nn.Linear`. `weight` is stored `[in, out]` (burn's convention; the loader transposes the
/// checkpoint's `[out, in]`). `adapters` holds the LoRA patch, if any (`crate::lora`); `weight`
/// itself is never modified.
#[derive(Debug, Clone)]
pub struct Linear {
    pub weight: Tensor<2>,
    pub bias: Option<Tensor<1>>,
    adapters: PatchSlot<LinearPatch>,
}

impl Linear {
    /// From its parameters: `weight` `[in, out]`, `bias` `[out]`.
    pub fn new(weight: Tensor<2>, bias: Option<Tensor<1>>) -> Self {
        Linear { weight, bias, adapters: PatchSlot::default() }
    }

    pub fn load(ld: &mut Loader<'_>, path: &str, d_in: usize, d_out: usize, bias: bool) -> Result<Self> {
        let weight = ld.take::<2>(&format!("{path}.weight"), [d_out, d_in])?.transpose();
        let bias = if bias { Some(ld.take::<1>(&format!("{path}.bias"), [d_out])?) } else { None };
        let adapters = ld.register_linear(path, &weight);
        Ok(Linear { weight, bias, adapters })
    }

    pub fn forward<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        linear_forward(&self.adapters, x, &self.weight, &self.bias)
    }

    /// `x·W` and the bias still to add, so that the caller adds it together with what follows
    /// ([`add_terms`], [`geglu`]: one launch on the cube backend). Elsewhere, and with per-image
    /// adapters (whose terms follow the bias), the whole [`Linear::forward`] and `None`.
    pub fn parts<const D: usize>(&self, x: Tensor<D>) -> (Tensor<D>, Option<Tensor<1>>) {
        if self.bias.is_some() && crate::gpu::on_cube(&x) {
            if let Some(w) = linear_weight(&self.adapters, &self.weight) {
                return (crate::gpu::linear(x, w, None), self.bias.clone());
            }
        }
        (self.forward(x), None)
    }

    /// `residual + (x·W + b)`, the additions in one launch on the cube backend.
    pub fn forward_add<const D: usize>(&self, x: Tensor<D>, residual: Tensor<D>) -> Tensor<D> {
        let (y, bias) = self.parts(x);
        let dims = y.dims();
        let c = dims[D - 1];
        let rows = dims[..D - 1].iter().product();
        add_terms(y.reshape([rows, c, 1]), bias, None, Some((residual.reshape([rows, c, 1]), None))).reshape(dims)
    }
}

/// `nn.Conv2d` with square kernel, symmetric padding unless `pad` says otherwise; LoRA patch in
/// `adapters` as for [`Linear`].
#[derive(Debug, Clone)]
pub struct Conv2d {
    pub weight: Tensor<4>,
    pub bias: Tensor<1>,
    adapters: PatchSlot<ConvPatch>,
    stride: usize,
    /// (top, bottom) and (left, right) padding.
    pad: [(usize, usize); 2],
}

impl Conv2d {
    /// From its parameters: `weight` `[cout, cin, k, k]`, `bias` `[cout]`; padding `k / 2`, stride 1.
    pub fn new(weight: Tensor<4>, bias: Tensor<1>) -> Self {
        let k = weight.dims()[2];
        Conv2d { weight, bias, adapters: PatchSlot::default(), stride: 1, pad: [(k / 2, k / 2); 2] }
    }

    /// Loads `{path}.weight` `[cout, cin, k, k]` and `{path}.bias`; padding `k / 2`, stride 1.
    pub fn load(ld: &mut Loader<'_>, path: &str, cin: usize, cout: usize, k: usize) -> Result<Self> {
        let weight = ld.take::<4>(&format!("{path}.weight"), [cout, cin, k, k])?;
        let bias = ld.take::<1>(&format!("{path}.bias"), [cout])?;
        let adapters = ld.register_conv(path, &weight);
        Ok(Conv2d { weight, bias, adapters, stride: 1, pad: [(k / 2, k / 2); 2] })
    }

    pub fn with_stride(mut self, stride: usize) -> Self {
        self.stride = stride;
        self
    }

    /// Explicit padding `[(top, bottom), (left, right)]`.
    pub fn with_padding(mut self, pad: [(usize, usize); 2]) -> Self {
        self.pad = pad;
        self
    }

    /// The layer's stride and padding as burn's options.
    fn options(&self) -> ConvOptions<2> {
        ConvOptions::new_with_padding([self.stride; 2], self.pad, [1, 1], 1)
    }

    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        conv_forward(&self.adapters, x, &self.weight, &self.bias, self.options())
    }

    /// This 1×1 convolution's `[Cin, Cout]` matrix on the cube backend, where the layer is one
    /// (unpadded, stride 1) and has no per-image adapters: what [`Conv2d::to_tokens`] and
    /// [`Conv2d::from_tokens_add`] multiply by directly.
    fn pointwise_matrix(&self, x_on_cube: bool) -> Option<Tensor<2>> {
        let [co, ci, kh, kw] = self.weight.dims();
        let gemm = crate::kernels::conv_kernel() == crate::kernels::ConvKernel::Gemm;
        if !x_on_cube || !gemm || (kh, kw, self.stride) != (1, 1, 1) || self.pad != [(0, 0); 2] {
            return None;
        }
        Some(conv_weight(&self.adapters, &self.weight)?.reshape([co, ci]).transpose())
    }

    /// This 1×1 convolution of `x` `[B, C, H, W]` as tokens `[B, H·W, Cout]` (the transformer's
    /// `proj_in` and its permute). On the cube backend one GEMM reads `x` transposed in place and
    /// writes the tokens, then one launch adds the bias (burn's ops: the convolution, then a copy).
    pub fn to_tokens(&self, x: Tensor<4>) -> Tensor<3> {
        let [b, c, h, w] = x.dims();
        let cout = self.weight.dims()[0];
        match self.pointwise_matrix(crate::gpu::on_cube(&x)) {
            Some(m) => {
                let y = crate::gpu::matmul(x.reshape([b, c, h * w]).swap_dims(1, 2), m.unsqueeze::<3>());
                add_terms(y.reshape([b * h * w, cout, 1]), Some(self.bias.clone()), None, None).reshape([b, h * w, cout])
            }
            None => self.forward(x).permute([0, 2, 3, 1]).reshape([b, h * w, cout]),
        }
    }

    /// `residual + conv(tokens)` for tokens `[B, H·W, C]` of an `h × w` map, `residual` `[B, Cout, H, W]`
    /// (the transformer's `proj_out`): on the cube backend one GEMM reads the tokens transposed in
    /// place and writes `[B, Cout, H·W]`, one launch adds the bias and the residual.
    pub fn from_tokens_add(&self, tokens: Tensor<3>, h: usize, w: usize, residual: Tensor<4>) -> Tensor<4> {
        let [b, _, c] = tokens.dims();
        match self.pointwise_matrix(crate::gpu::on_cube(&tokens)) {
            Some(m) => {
                let y = crate::gpu::matmul(m.transpose().unsqueeze::<3>(), tokens.swap_dims(1, 2));
                let cout = y.dims()[1];
                add_terms(y, Some(self.bias.clone()), None, Some((residual.reshape([b, cout, h * w]), None))).reshape([b, cout, h, w])
            }
            None => {
                let (y, bias) = self.parts(tokens.reshape([b, h, w, c]).permute([0, 3, 1, 2]));
                add_terms_nchw(y, bias, None, Some((residual, None)))
            }
        }
    }

    /// The convolution and the bias still to add, as [`Linear::parts`].
    /// With [`crate::kernels::ConvKernel::Backend`] burn's conv2d keeps its bias.
    pub fn parts(&self, x: Tensor<4>) -> (Tensor<4>, Option<Tensor<1>>) {
        if crate::gpu::on_cube(&x) && crate::kernels::conv_kernel() == crate::kernels::ConvKernel::Gemm {
            if let Some(w) = conv_weight(&self.adapters, &self.weight) {
                return (crate::kernels::conv2d_with(x, w, None, self.options()), Some(self.bias.clone()));
            }
        }
        (self.forward(x), None)
    }
}

/// The additions after a GEMM over `y` `[o, c, i]`: `y + bias`, then `+ (sample + sample_bias)`
/// (`sample` `[o, c]`: a resnet's time embedding per batch row and channel), then
/// `(residual + residual_bias) +` (`residual` `[o, c, i]`), the biases per channel `[c]`. One launch
/// on the cube backend (`gpu/epilogue.rs`), else burn's ops in the same order: the same values.
pub fn add_terms(
    y: Tensor<3>,
    bias: Option<Tensor<1>>,
    sample: Option<(Tensor<2>, Option<Tensor<1>>)>,
    residual: Option<(Tensor<3>, Option<Tensor<1>>)>,
) -> Tensor<3> {
    if bias.is_none() && sample.is_none() && residual.is_none() {
        return y;
    }
    let fused = crate::gpu::epilogue(&y, bias.as_ref(), sample.as_ref().map(|(t, b)| (t, b.as_ref())), residual.as_ref().map(|(r, b)| (r, b.as_ref())));
    if let Some(out) = fused {
        return out;
    }
    let [_, c, _] = y.dims();
    let per_channel = |b: Tensor<1>| b.reshape([1, c, 1]);
    let mut v = match bias {
        Some(b) => y + per_channel(b),
        None => y,
    };
    if let Some((t, tb)) = sample {
        let t = match tb {
            Some(b) => t + b.reshape([1, c]),
            None => t,
        };
        // `[o, c]`, or one row for all (the kernel declines that)
        let rows = t.dims()[0];
        v = v + t.reshape([rows, c, 1]);
    }
    if let Some((r, rb)) = residual {
        let r = match rb {
            Some(b) => r + per_channel(b),
            None => r,
        };
        v = r + v;
    }
    v
}

/// [`add_terms`] over `[B, C, H, W]` (`sample` `[B, C]`).
pub fn add_terms_nchw(
    y: Tensor<4>,
    bias: Option<Tensor<1>>,
    sample: Option<(Tensor<2>, Option<Tensor<1>>)>,
    residual: Option<(Tensor<4>, Option<Tensor<1>>)>,
) -> Tensor<4> {
    let [b, c, h, w] = y.dims();
    let flat = |t: Tensor<4>| t.reshape([b, c, h * w]);
    add_terms(flat(y), bias, sample, residual.map(|(r, rb)| (flat(r), rb))).reshape([b, c, h, w])
}

/// diffusers' GEGLU after its projection: `h` `[…, 2n]` plus `bias` (the projection's, still to
/// add), then `h[…, :n] · gelu(h[…, n:])`. One launch on the cube backend (`gpu/epilogue.rs`),
/// else burn's ops.
pub fn geglu<const D: usize>(h: Tensor<D>, bias: Option<Tensor<1>>) -> Tensor<D> {
    let mut dims = h.dims();
    let width = dims[D - 1];
    let n = width / 2;
    dims[D - 1] = n;
    if crate::gpu::on_cube(&h) {
        let rows = h.shape().num_elements() / width.max(1);
        if let Some(out) = crate::gpu::geglu(&h.clone().reshape([rows, width]), bias.as_ref()) {
            return out.reshape(dims);
        }
    }
    let h = match bias {
        Some(b) => h + b.unsqueeze::<D>(),
        None => h,
    };
    let hidden = h.clone().narrow(D - 1, 0, n);
    let gate = h.narrow(D - 1, n, n);
    hidden * gelu(gate)
}

/// `nn.GroupNorm(groups, C, eps, affine=True)` over `[B, C, H, W]`, two-pass mean/variance (one
/// launch on the cube backend, `gpu/norm.rs`).
#[derive(Debug, Clone)]
pub struct GroupNorm {
    pub weight: Tensor<1>,
    pub bias: Tensor<1>,
    groups: usize,
    eps: f64,
}

impl GroupNorm {
    /// From its parameters (`weight`, `bias` `[C]`, `C` divisible into `groups`).
    pub fn new(weight: Tensor<1>, bias: Tensor<1>, groups: usize, eps: f64) -> Result<Self> {
        let ([c], [cb]) = (weight.dims(), bias.dims());
        Self::check_groups("GroupNorm", c, groups)?;
        if cb != c {
            return Err(Error::Request(format!("GroupNorm: {c} weights but {cb} biases")));
        }
        Ok(GroupNorm { weight, bias, groups, eps })
    }

    pub fn load(ld: &mut Loader<'_>, path: &str, groups: usize, c: usize, eps: f64) -> Result<Self> {
        Self::check_groups(&format!("GroupNorm `{path}`"), c, groups)?;
        let weight = ld.take::<1>(&format!("{path}.weight"), [c])?;
        let bias = ld.take::<1>(&format!("{path}.bias"), [c])?;
        Ok(GroupNorm { weight, bias, groups, eps })
    }

    /// `c` channels must divide into `groups` (`what` names the layer in the error).
    fn check_groups(what: &str, c: usize, groups: usize) -> Result<()> {
        if groups == 0 || !c.is_multiple_of(groups) {
            return Err(Error::Request(format!("{what}: {c} channels are not divisible into {groups} groups")));
        }
        Ok(())
    }

    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        crate::gpu::group_norm(&x, &self.weight, &self.bias, self.groups, self.eps, false).unwrap_or_else(|| self.forward_ops(x))
    }

    /// `silu(self.forward(x))`, one launch on the cube backend.
    pub fn forward_silu(&self, x: Tensor<4>) -> Tensor<4> {
        crate::gpu::group_norm(&x, &self.weight, &self.bias, self.groups, self.eps, true).unwrap_or_else(|| silu(self.forward_ops(x)))
    }

    /// The definition in burn's tensor ops (every backend; on the cube backend where `gpu/norm.rs`
    /// declines: a non-contiguous input).
    pub fn forward_ops(&self, x: Tensor<4>) -> Tensor<4> {
        let [b, c, h, w] = x.dims();
        let g = self.groups;
        let xg = x.reshape([b, g, (c / g) * h * w]);
        let mean = xg.clone().mean_dim(2);
        let centered = xg - mean;
        let var = centered.clone().square().mean_dim(2);
        let normed = (centered / (var + self.eps).sqrt()).reshape([b, c, h, w]);
        normed * self.weight.clone().reshape([1, c, 1, 1]) + self.bias.clone().reshape([1, c, 1, 1])
    }
}

/// `nn.LayerNorm(C, eps)` over the last dimension (one launch on the cube backend, `gpu/norm.rs`).
#[derive(Debug, Clone)]
pub struct LayerNorm {
    pub weight: Tensor<1>,
    pub bias: Tensor<1>,
    eps: f64,
}

impl LayerNorm {
    /// From its parameters (`weight`, `bias` of the normalised dim's size).
    pub fn new(weight: Tensor<1>, bias: Tensor<1>, eps: f64) -> Self {
        LayerNorm { weight, bias, eps }
    }

    pub fn load(ld: &mut Loader<'_>, path: &str, c: usize, eps: f64) -> Result<Self> {
        let weight = ld.take::<1>(&format!("{path}.weight"), [c])?;
        let bias = ld.take::<1>(&format!("{path}.bias"), [c])?;
        Ok(LayerNorm { weight, bias, eps })
    }

    pub fn forward<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        crate::gpu::layer_norm(&x, &self.weight, &self.bias, self.eps).unwrap_or_else(|| self.forward_ops(x))
    }

    /// burn's `layer_norm` (every backend; on the cube backend where `gpu/norm.rs` declines).
    pub fn forward_ops<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        layer_norm(x, self.weight.clone(), Some(self.bias.clone()), self.eps)
    }
}

/// `nn.Embedding`: `weight` `[num, dim]`.
#[derive(Debug, Clone)]
pub struct Embedding {
    pub weight: Tensor<2>,
}

impl Embedding {
    pub fn load(ld: &mut Loader<'_>, path: &str, num: usize, dim: usize) -> Result<Self> {
        Ok(Embedding { weight: ld.take::<2>(&format!("{path}.weight"), [num, dim])? })
    }

    pub fn num_embeddings(&self) -> usize {
        self.weight.dims()[0]
    }

    /// `[B, S]` ids → `[B, S, dim]`.
    pub fn forward(&self, ids: Tensor<2, Int>) -> Tensor<3> {
        embedding(self.weight.clone(), ids)
    }
}

pub fn silu<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    activation::silu(x)
}

/// CLIP's `quick_gelu`: `x · σ(1.702 x)`.
pub fn quick_gelu<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    x.clone() * activation::sigmoid(x * 1.702)
}

/// Exact (erf) GELU, as `F.gelu` in diffusers' GEGLU.
pub fn gelu<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    activation::gelu(x)
}

/// Reads a tensor back to host f32 values (row-major), whatever the device's float dtype.
pub fn to_vec<const D: usize>(x: Tensor<D>) -> Result<Vec<f32>> {
    let data = x.try_into_data().map_err(|e| Error::Backend(format!("{e:?}")))?;
    data.convert::<f32>().try_into_vec::<f32>().map_err(|e| Error::Backend(format!("{e:?}")))
}

/// [`to_vec`] without blocking: the only way to read a WebGPU tensor in the browser (wasm32 cannot
/// wait on the GPU synchronously).
pub async fn to_vec_async<const D: usize>(x: Tensor<D>) -> Result<Vec<f32>> {
    let data = x.into_data_async().await.map_err(|e| Error::Backend(format!("{e:?}")))?;
    data.convert::<f32>().try_into_vec::<f32>().map_err(|e| Error::Backend(format!("{e:?}")))
}

thread_local! {
    static UPLOADED: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// Bytes this thread has uploaded through [`from_vec`] (weights at load, adapter factors,
/// latents): how tests and benchmarks see what an operation sent to the device.
pub fn uploaded_bytes() -> u64 {
    UPLOADED.with(|u| u.get())
}

/// Uploads host f32 values as a tensor of `shape`; errors when the lengths disagree.
pub fn from_vec<const D: usize>(values: Vec<f32>, shape: [usize; D], device: &burn::tensor::Device) -> Result<Tensor<D>> {
    let n: usize = shape.iter().product();
    if values.len() != n {
        return Err(Error::Request(format!("{} values for a tensor of shape {shape:?} ({n} values)", values.len())));
    }
    UPLOADED.with(|u| u.set(u.get() + 4 * n as u64));
    Ok(Tensor::from_data(TensorData::new(values, shape), device))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Parameters that cannot form the layer are errors, not panics.
    #[test]
    fn group_norm_refuses_bad_parameters() {
        let dev = crate::cpu_device();
        let t = |n| from_vec(vec![1.0; n], [n], &dev).unwrap();
        assert!(matches!(GroupNorm::new(t(6), t(6), 4, 1e-5), Err(Error::Request(_))));
        assert!(matches!(GroupNorm::new(t(6), t(6), 0, 1e-5), Err(Error::Request(_))));
        assert!(matches!(GroupNorm::new(t(6), t(5), 3, 1e-5), Err(Error::Request(_))));
        assert!(GroupNorm::new(t(6), t(6), 3, 1e-5).is_ok());
    }
}
