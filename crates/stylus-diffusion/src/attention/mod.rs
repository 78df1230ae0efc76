//! Memory-bounded multi-head scaled-dot-product attention, shared by CLIP, the UNet's transformer
//! blocks and the VAE's mid-block attention (diffusers `AttnProcessor` /
//! `F.scaled_dot_product_attention`, transformers `eager_attention_forward`).
//!
//! Browsers refuse storage bindings over 128 MiB (WebGPU default `maxStorageBufferBindingSize`),
//! and full-size SD1.5 at 64×64 latents has 4096×4096 scores per head (CFG batch 2 × 8 heads:
//! 1 GiB in f32). Queries are therefore processed in chunks sized so that one chunk's score
//! matrix `[batch, heads, rows, keys]` stays within [`AttentionConfig::max_scores_bytes`]
//! (64 MiB by default); keys/values are used whole. Chunking changes no arithmetic per query row,
//! so chunked and unchunked results agree (tested).
//!
//! The default kernel ([`AttentionKernel::Host`]) needs neither: on the CPU backend it runs in host
//! memory (`host.rs`: blocked GEMMs on the projections as they are, bounded scratch, no chunk
//! copies), on the cube backend (wgpu, WebGPU) as one fused kernel per attention (`gpu/rows.rs`:
//! online softmax, no score matrix; 2.3× faster than the explicit attention on lavapipe).

use burn::tensor::activation::softmax;
use burn::tensor::module::attention as backend_attention;
use burn::tensor::ops::AttentionModuleOptions;
use burn::tensor::{Bool, Tensor, TensorData};

#[cfg(feature = "flex")]
pub mod host;

/// How one chunk's attention is computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttentionKernel {
    /// The default: on the CPU backend (burn `flex`, f32) the host kernel of `host.rs`, on the
    /// cube backend (wgpu) [`AttentionKernel::Fused`], elsewhere [`AttentionKernel::Backend`].
    Host,
    /// burn's `module::attention` op (flash/fused where the backend has it).
    Backend,
    /// `softmax(q kᵀ · scale) v` written out with matmul + softmax.
    Explicit,
    /// Flash attention on the cube backend (`gpu/`: no score matrix, so no chunking): the
    /// tensor-core kernel where the adapter has f16 cooperative matrices (SPIR-V on Vulkan; never
    /// WGSL), else cubek's unit kernel; where neither runs (another backend, an adapter without
    /// plane operations) [`AttentionKernel::Explicit`].
    Flash,
    /// One fused kernel on the cube backend (`gpu/rows.rs`: 1–4 query rows per unit, keys staged in
    /// workgroup memory, online softmax; no score matrix, so no chunking; nothing WebGPU lacks);
    /// elsewhere, or for head dims over 160, [`AttentionKernel::Explicit`].
    Fused,
}

impl AttentionKernel {
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "host" => Some(AttentionKernel::Host),
            "backend" => Some(AttentionKernel::Backend),
            "explicit" => Some(AttentionKernel::Explicit),
            "flash" => Some(AttentionKernel::Flash),
            "fused" => Some(AttentionKernel::Fused),
            _ => None,
        }
    }
}

/// Attention memory policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AttentionConfig {
    /// Upper bound for one chunk's f32 score matrix, in bytes.
    pub max_scores_bytes: usize,
    pub kernel: AttentionKernel,
}

impl Default for AttentionConfig {
    fn default() -> Self {
        AttentionConfig { max_scores_bytes: 64 << 20, kernel: AttentionKernel::Host }
    }
}

impl AttentionConfig {
    /// Query rows per chunk for `batch × heads` score rows of `keys` columns (at least 1).
    pub fn rows_per_chunk(&self, batch: usize, heads: usize, keys: usize) -> usize {
        let per_row = (batch * heads * keys * 4).max(1);
        (self.max_scores_bytes / per_row).max(1)
    }
}

/// `q` `[B, Sq, H·d]`, `k` `[B, Sk, H·d]`, `v` `[B, Sk, H·dv]` → `[B, Sq, H·dv]`, scale `1/√d`.
/// `causal` masks key positions after the query's own (CLIP; requires `Sq == Sk`).
pub fn multi_head_attention(q: Tensor<3>, k: Tensor<3>, v: Tensor<3>, heads: usize, causal: bool, cfg: &AttentionConfig) -> Tensor<3> {
    let mut kernel = cfg.kernel;
    if kernel == AttentionKernel::Host {
        if let Some(out) = on_host(&q, &k, &v, heads, causal) {
            return out;
        }
        kernel = if crate::gpu::on_cube(&q) { AttentionKernel::Fused } else { AttentionKernel::Backend };
    }
    let [b, sq, c] = q.dims();
    let [_, sk, cv] = v.dims();
    let (d, dv) = (c / heads, cv / heads);
    if kernel == AttentionKernel::Fused {
        let heads_last = |x: &Tensor<3>, s: usize, d: usize| x.clone().reshape([b, s, heads, d]);
        if let Some(out) = crate::gpu::fused_attention(&heads_last(&q, sq, d), &heads_last(&k, sk, d), &heads_last(&v, sk, dv), causal) {
            return out.reshape([b, sq, heads * dv]);
        }
        kernel = AttentionKernel::Explicit;
    }
    let split = |x: Tensor<3>, s: usize, d: usize| x.reshape([b, s, heads, d]).swap_dims(1, 2);
    let (q, k, v) = (split(q, sq, d), split(k, sk, d), split(v, sk, dv));
    if kernel == AttentionKernel::Flash {
        if let Some(out) = crate::gpu::flash_attention(&q, &k, &v, causal) {
            return out.swap_dims(1, 2).reshape([b, sq, heads * dv]);
        }
        kernel = AttentionKernel::Explicit;
    }
    let rows = cfg.rows_per_chunk(b, heads, sk).min(sq);
    let out = if rows >= sq {
        attend(q, k, v, causal.then_some(0), kernel)
    } else {
        let mut parts = Vec::with_capacity(sq.div_ceil(rows));
        let mut start = 0;
        while start < sq {
            let len = rows.min(sq - start);
            let qc = q.clone().narrow(2, start, len);
            parts.push(attend(qc, k.clone(), v.clone(), causal.then_some(start), kernel));
            start += len;
        }
        Tensor::cat(parts, 2)
    };
    out.swap_dims(1, 2).reshape([b, sq, heads * dv])
}

/// [`host::attention`] when the tensors are f32 on the CPU backend; `None` elsewhere.
#[cfg(feature = "flex")]
fn on_host(q: &Tensor<3>, k: &Tensor<3>, v: &Tensor<3>, heads: usize, causal: bool) -> Option<Tensor<3>> {
    use burn::tensor::{DType, Device};
    let device = q.device();
    if device != Device::flex() || [q, k, v].iter().any(|t| t.dtype() != DType::F32) {
        return None;
    }
    let ([b, sq, c], [_, sk, cv]) = (q.dims(), v.dims());
    if heads == 0 || c % heads != 0 || cv % heads != 0 {
        return None;
    }
    let read = |t: &Tensor<3>| crate::nn::to_vec(t.clone()).ok();
    let dims = host::Dims { batch: b, heads, sq, sk, d: c / heads, dv: cv / heads };
    let out = host::attention(&read(q)?, &read(k)?, &read(v)?, dims, causal)?;
    Some(Tensor::from_data(TensorData::new(out, [b, sq, cv]), &device))
}

#[cfg(not(feature = "flex"))]
fn on_host(_: &Tensor<3>, _: &Tensor<3>, _: &Tensor<3>, _: usize, _: bool) -> Option<Tensor<3>> {
    None
}

/// Attention of `q` `[B, H, n, d]` (query rows `offset..offset+n` when causal) over all keys.
fn attend(q: Tensor<4>, k: Tensor<4>, v: Tensor<4>, causal_offset: Option<usize>, kernel: AttentionKernel) -> Tensor<4> {
    let [b, h, n, d] = q.dims();
    let sk = k.dims()[2];
    let mask = causal_offset.map(|off| {
        let m: Vec<bool> = (0..n).flat_map(|i| (0..sk).map(move |j| j > off + i)).collect();
        Tensor::<4, Bool>::from_data(TensorData::new(m, [1, 1, n, sk]), &q.device()).expand([b, h, n, sk])
    });
    match kernel {
        AttentionKernel::Backend | AttentionKernel::Host => {
            let opts = AttentionModuleOptions { scale: None, softcap: None, is_causal: false };
            backend_attention(q, k, v, mask, None, opts)
        }
        AttentionKernel::Explicit | AttentionKernel::Flash | AttentionKernel::Fused => {
            let scores = crate::gpu::matmul(q, k.swap_dims(2, 3)) * (1.0 / (d as f64).sqrt());
            let scores = match mask {
                Some(m) => scores.mask_fill(m, f32::NEG_INFINITY),
                None => scores,
            };
            crate::gpu::matmul(softmax(scores, 3), v)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::{from_vec, to_vec};
    use crate::testing::{max_diff, pseudo};

    /// Chunked (tiny budget: 3 query rows per chunk, uneven last chunk) equals unchunked, for every
    /// kernel (the host kernel ignores the budget: its own row blocks are tested in `host.rs`),
    /// self/cross attention and the causal mask.
    #[test]
    fn chunked_equals_unchunked() {
        let dev = crate::cpu_device();
        let (b, heads, sq, sk, c) = (2, 4, 17, 11, 16);
        for kernel in [AttentionKernel::Host, AttentionKernel::Backend, AttentionKernel::Explicit, AttentionKernel::Flash, AttentionKernel::Fused] {
            for (causal, keys) in [(false, sk), (true, sq)] {
                let q = from_vec(pseudo(b * sq * c, 1), [b, sq, c], &dev).unwrap();
                let k = from_vec(pseudo(b * keys * c, 2), [b, keys, c], &dev).unwrap();
                let v = from_vec(pseudo(b * keys * c, 3), [b, keys, c], &dev).unwrap();
                let whole = AttentionConfig { max_scores_bytes: usize::MAX, kernel };
                let small = AttentionConfig { max_scores_bytes: b * heads * keys * 4 * 3, kernel };
                assert_eq!(small.rows_per_chunk(b, heads, keys), 3);
                let a = to_vec(multi_head_attention(q.clone(), k.clone(), v.clone(), heads, causal, &whole)).unwrap();
                let z = to_vec(multi_head_attention(q, k, v, heads, causal, &small)).unwrap();
                assert_eq!(a.len(), b * sq * c);
                assert!(max_diff(&a, &z) <= 1e-6, "{kernel:?} causal={causal}: {}", max_diff(&a, &z));
            }
        }
    }

    /// The three kernels agree, and the causal mask makes row 0 attend to key 0 only.
    #[test]
    fn kernels_agree_and_mask_is_causal() {
        let dev = crate::cpu_device();
        let (b, heads, s, c) = (1, 2, 5, 4);
        let q = from_vec(pseudo(b * s * c, 4), [b, s, c], &dev).unwrap();
        let k = from_vec(pseudo(b * s * c, 5), [b, s, c], &dev).unwrap();
        let vv = pseudo(b * s * c, 6);
        let v = from_vec(vv.clone(), [b, s, c], &dev).unwrap();
        let cfg = |kernel| AttentionConfig { kernel, ..Default::default() };
        let a = to_vec(multi_head_attention(q.clone(), k.clone(), v.clone(), heads, true, &cfg(AttentionKernel::Backend))).unwrap();
        let e = to_vec(multi_head_attention(q.clone(), k.clone(), v.clone(), heads, true, &cfg(AttentionKernel::Explicit))).unwrap();
        let h = to_vec(multi_head_attention(q, k, v, heads, true, &cfg(AttentionKernel::Host))).unwrap();
        assert!(max_diff(&a, &e) <= 1e-5, "{}", max_diff(&a, &e));
        assert!(max_diff(&a, &h) <= 1e-5, "{}", max_diff(&a, &h));
        assert!(max_diff(&a[..c], &vv[..c]) <= 1e-6, "first query sees only the first value");
    }

    /// f32 tensors on the CPU backend do take the host kernel (not a silent fallback).
    #[test]
    fn cpu_tensors_take_the_host_kernel() {
        let dev = crate::cpu_device();
        let t = |seed| from_vec(pseudo(2 * 5 * 8, seed), [2, 5, 8], &dev).unwrap();
        let (q, k, v) = (t(1), t(2), t(3));
        assert!(on_host(&q, &k, &v, 2, false).is_some());
        assert!(on_host(&q, &k, &v, 3, false).is_none(), "8 channels do not split into 3 heads");
    }

    /// The default budget keeps full-size SD1.5's largest score chunk (CFG batch 2, 8 heads,
    /// 4096 keys) within 64 MiB.
    #[test]
    fn full_size_chunks_fit_the_budget() {
        let cfg = AttentionConfig::default();
        let rows = cfg.rows_per_chunk(2, 8, 4096);
        assert_eq!(rows, 256);
        assert!(2 * 8 * rows * 4096 * 4 <= 64 << 20);
    }
}
