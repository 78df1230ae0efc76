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
use crate::nn::{geglu, Conv2d, GroupNorm, LayerNorm, Linear};
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
        self.to_out.0.forward(self.attend(x, ctx, attn))
    }

    /// `residual + self.forward(x, ctx)`, the bias and residual added in one launch on the cube
    /// backend.
    pub fn forward_add(&self, x: Tensor<3>, ctx: Option<&Tensor<3>>, attn: &AttentionConfig, residual: Tensor<3>) -> Tensor<3> {
        self.to_out.0.forward_add(self.attend(x, ctx, attn), residual)
    }

    /// The heads' outputs before `to_out`.
    fn attend(&self, x: Tensor<3>, ctx: Option<&Tensor<3>>, attn: &AttentionConfig) -> Tensor<3> {
        let kv = ctx.cloned().unwrap_or_else(|| x.clone());
        let q = self.to_q.forward(x);
        let (k, v) = (self.to_k.forward(kv.clone()), self.to_v.forward(kv));
        multi_head_attention(q, k, v, self.heads, false, attn)
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

    /// `residual + FF(x)`: the projection's bias, GELU and gating in one launch on the cube backend,
    /// the output's bias and the residual in another.
    fn forward_add(&self, x: Tensor<3>, residual: Tensor<3>) -> Tensor<3> {
        let (h, bias) = self.net.0.proj.parts(x);
        self.net.2.forward_add(geglu(h, bias), residual)
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
        let x = self.attn1.forward_add(self.norm1.forward(x.clone()), None, attn, x);
        let x = self.attn2.forward_add(self.norm2.forward(x.clone()), Some(ctx), attn, x);
        self.ff.forward_add(self.norm3.forward(x.clone()), x)
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
        let [_, _, h, w] = x.dims();
        let residual = x.clone();
        let mut t = self.proj_in.to_tokens(self.norm.forward(x));
        for block in &self.transformer_blocks {
            t = block.forward(t, ctx, attn);
        }
        self.proj_out.from_tokens_add(t, h, w, residual)
    }
}
