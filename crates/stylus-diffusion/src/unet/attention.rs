//! The UNet's spatial transformer: diffusers `Transformer2DModel` (`transformer_2d.py`, SD1.5's
//! `use_linear_projection=False`: 1×1-conv `proj_in`/`proj_out`, GroupNorm eps 1e-6) with one
//! `BasicTransformerBlock` (`attention.py`: LayerNorm → self-attention, LayerNorm →
//! cross-attention on the text embeddings, LayerNorm → GEGLU feed-forward, each residual) and its
//! `Attention` (`attention_processor.py`: bias-free q/k/v, `to_out.0` with bias, `heads` heads).
//!
//! Torch `ModuleList`s are tuples here so field access reads like the keys: `attn1.to_out.0`,
//! `ff.net.0.proj`, `ff.net.2` (index 1 is the inference-time no-op dropout).

use burn::tensor::Tensor;

use crate::attention::{multi_head_attention, AttentionConfig};
use crate::load::Loader;
use crate::nn::{gelu, Conv2d, GroupNorm, LayerNorm, Linear};
use crate::resnet::Norm;
use crate::Result;

/// `nn.Dropout`: the identity at inference; kept so module-list indices match the checkpoint.
#[derive(Debug, Clone, Copy, Default)]
pub struct Dropout;

#[derive(Debug, Clone)]
pub struct Attention {
    pub to_q: Linear,
    pub to_k: Linear,
    pub to_v: Linear,
    pub to_out: (Linear, Dropout),
    heads: usize,
}

impl Attention {
    /// `dim` query width, `ctx` key/value input width (= `dim` for self-attention).
    pub fn load(ld: &mut Loader<'_>, p: &str, dim: usize, ctx: usize, heads: usize) -> Result<Self> {
        Ok(Attention {
            to_q: Linear::load(ld, &format!("{p}.to_q"), dim, dim, false)?,
            to_k: Linear::load(ld, &format!("{p}.to_k"), ctx, dim, false)?,
            to_v: Linear::load(ld, &format!("{p}.to_v"), ctx, dim, false)?,
            to_out: (Linear::load(ld, &format!("{p}.to_out.0"), dim, dim, true)?, Dropout),
            heads,
        })
    }

    /// `x` `[B, S, dim]`, `ctx` `[B, Sk, ctx]` (None: self-attention).
    pub fn forward(&self, x: Tensor<3>, ctx: Option<&Tensor<3>>, attn: &AttentionConfig) -> Tensor<3> {
        let kv = ctx.cloned().unwrap_or_else(|| x.clone());
        let q = self.to_q.forward(x);
        let (k, v) = (self.to_k.forward(kv.clone()), self.to_v.forward(kv));
        self.to_out.0.forward(multi_head_attention(q, k, v, self.heads, false, attn))
    }
}

/// diffusers `GEGLU`: `proj` to 2 × inner, `hidden · gelu(gate)`.
#[derive(Debug, Clone)]
pub struct Geglu {
    pub proj: Linear,
}

#[derive(Debug, Clone)]
pub struct FeedForward {
    pub net: (Geglu, Dropout, Linear),
}

impl FeedForward {
    fn load(ld: &mut Loader<'_>, p: &str, dim: usize) -> Result<Self> {
        let inner = 4 * dim;
        let proj = Linear::load(ld, &format!("{p}.net.0.proj"), dim, 2 * inner, true)?;
        let out = Linear::load(ld, &format!("{p}.net.2"), inner, dim, true)?;
        Ok(FeedForward { net: (Geglu { proj }, Dropout, out) })
    }

    fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        let h = self.net.0.proj.forward(x);
        let inner = h.dims()[2] / 2;
        let hidden = h.clone().narrow(2, 0, inner);
        let gate = h.narrow(2, inner, inner);
        self.net.2.forward(hidden * gelu(gate))
    }
}

#[derive(Debug, Clone)]
pub struct BasicTransformerBlock {
    pub norm1: LayerNorm,
    pub attn1: Attention,
    pub norm2: LayerNorm,
    pub attn2: Attention,
    pub norm3: LayerNorm,
    pub ff: FeedForward,
}

impl BasicTransformerBlock {
    fn load(ld: &mut Loader<'_>, p: &str, dim: usize, ctx: usize, heads: usize) -> Result<Self> {
        const EPS: f64 = 1e-5;
        Ok(BasicTransformerBlock {
            norm1: LayerNorm::load(ld, &format!("{p}.norm1"), dim, EPS)?,
            attn1: Attention::load(ld, &format!("{p}.attn1"), dim, dim, heads)?,
            norm2: LayerNorm::load(ld, &format!("{p}.norm2"), dim, EPS)?,
            attn2: Attention::load(ld, &format!("{p}.attn2"), dim, ctx, heads)?,
            norm3: LayerNorm::load(ld, &format!("{p}.norm3"), dim, EPS)?,
            ff: FeedForward::load(ld, &format!("{p}.ff"), dim)?,
        })
    }

    fn forward(&self, x: Tensor<3>, ctx: &Tensor<3>, attn: &AttentionConfig) -> Tensor<3> {
        let x = x.clone() + self.attn1.forward(self.norm1.forward(x), None, attn);
        let x = x.clone() + self.attn2.forward(self.norm2.forward(x), Some(ctx), attn);
        x.clone() + self.ff.forward(self.norm3.forward(x))
    }
}

#[derive(Debug, Clone)]
pub struct Transformer2DModel {
    pub norm: GroupNorm,
    pub proj_in: Conv2d,
    pub transformer_blocks: Vec<BasicTransformerBlock>,
    pub proj_out: Conv2d,
}

impl Transformer2DModel {
    /// `c` channels, `ctx` cross-attention width, `heads` heads, the UNet's norm groups.
    pub fn load(ld: &mut Loader<'_>, p: &str, c: usize, ctx: usize, heads: usize, norm: Norm) -> Result<Self> {
        Ok(Transformer2DModel {
            norm: GroupNorm::load(ld, &format!("{p}.norm"), norm.groups, c, 1e-6)?,
            proj_in: Conv2d::load(ld, &format!("{p}.proj_in"), c, c, 1)?,
            transformer_blocks: vec![BasicTransformerBlock::load(ld, &format!("{p}.transformer_blocks.0"), c, ctx, heads)?],
            proj_out: Conv2d::load(ld, &format!("{p}.proj_out"), c, c, 1)?,
        })
    }

    /// `x` `[B, C, H, W]`, `ctx` `[B, 77, ctx]`.
    pub fn forward(&self, x: Tensor<4>, ctx: &Tensor<3>, attn: &AttentionConfig) -> Tensor<4> {
        let [b, c, h, w] = x.dims();
        let residual = x.clone();
        let x = self.proj_in.forward(self.norm.forward(x));
        let mut t = x.permute([0, 2, 3, 1]).reshape([b, h * w, c]);
        for block in &self.transformer_blocks {
            t = block.forward(t, ctx, attn);
        }
        let x = t.reshape([b, h, w, c]).permute([0, 3, 1, 2]);
        self.proj_out.forward(x) + residual
    }
}
