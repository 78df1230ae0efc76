//! The UNet's stages: diffusers `CrossAttnDownBlock2D` / `DownBlock2D`, `UNetMidBlock2DCrossAttn`
//! and `UpBlock2D` / `CrossAttnUpBlock2D` (`unet_2d_blocks.py`). A block without attention has an
//! empty `attentions`; `downsamplers` / `upsamplers` hold zero or one sampler, as in diffusers.

use burn::tensor::Tensor;

use crate::attention::AttentionConfig;
use crate::load::Loader;
use crate::resnet::{Downsample2D, Norm, ResnetBlock2D, Upsample2D};
use crate::unet::attention::Transformer2DModel;
use crate::Result;

/// What every block needs to build its layers.
#[derive(Debug, Clone, Copy)]
pub struct BlockSpec {
    pub temb: usize,
    pub ctx: usize,
    pub heads: usize,
    pub norm: Norm,
}

/// The per-forward inputs shared by every block.
pub struct BlockInputs<'a> {
    /// SiLU(time embedding) `[B, temb]`.
    pub temb_act: &'a Tensor<2>,
    /// Text embeddings `[B, 77, ctx]`.
    pub ctx: &'a Tensor<3>,
    pub attn: &'a AttentionConfig,
}

/// Shape of one down block: input/output channels, resnets, and whether it has attention and a
/// downsampler.
#[derive(Debug, Clone, Copy)]
pub struct DownLayout {
    pub cin: usize,
    pub cout: usize,
    pub layers: usize,
    pub attn: bool,
    pub down: bool,
}

#[derive(Debug, Clone)]
pub struct DownBlock {
    pub resnets: Vec<ResnetBlock2D>,
    pub attentions: Vec<Transformer2DModel>,
    pub downsamplers: Vec<Downsample2D>,
}

impl DownBlock {
    pub fn load(ld: &mut Loader<'_>, p: &str, l: DownLayout, s: &BlockSpec) -> Result<Self> {
        let DownLayout { cin, cout, layers, attn, down } = l;
        let mut b = DownBlock { resnets: Vec::new(), attentions: Vec::new(), downsamplers: Vec::new() };
        for j in 0..layers {
            let rin = if j == 0 { cin } else { cout };
            b.resnets.push(ResnetBlock2D::load(ld, &format!("{p}.resnets.{j}"), rin, cout, Some(s.temb), s.norm)?);
            if attn {
                b.attentions.push(Transformer2DModel::load(ld, &format!("{p}.attentions.{j}"), cout, s.ctx, s.heads, s.norm)?);
            }
        }
        if down {
            b.downsamplers.push(Downsample2D::load_unet(ld, &format!("{p}.downsamplers.0"), cout)?);
        }
        Ok(b)
    }

    /// Returns the block output and pushes every intermediate state onto `skips`.
    pub fn forward(&self, mut x: Tensor<4>, inp: &BlockInputs<'_>, skips: &mut Vec<Tensor<4>>) -> Tensor<4> {
        for (j, resnet) in self.resnets.iter().enumerate() {
            x = resnet.forward(x, Some(inp.temb_act));
            if let Some(a) = self.attentions.get(j) {
                x = a.forward(x, inp.ctx, inp.attn);
            }
            skips.push(x.clone());
        }
        for d in &self.downsamplers {
            x = d.forward(x);
            skips.push(x.clone());
        }
        x
    }
}

#[derive(Debug, Clone)]
pub struct MidBlock {
    pub resnets: Vec<ResnetBlock2D>,
    pub attentions: Vec<Transformer2DModel>,
}

impl MidBlock {
    pub fn load(ld: &mut Loader<'_>, p: &str, c: usize, s: &BlockSpec) -> Result<Self> {
        let r0 = ResnetBlock2D::load(ld, &format!("{p}.resnets.0"), c, c, Some(s.temb), s.norm)?;
        let a = Transformer2DModel::load(ld, &format!("{p}.attentions.0"), c, s.ctx, s.heads, s.norm)?;
        let r1 = ResnetBlock2D::load(ld, &format!("{p}.resnets.1"), c, c, Some(s.temb), s.norm)?;
        Ok(MidBlock { resnets: vec![r0, r1], attentions: vec![a] })
    }

    pub fn forward(&self, x: Tensor<4>, inp: &BlockInputs<'_>) -> Tensor<4> {
        let mut x = self.resnets[0].forward(x, Some(inp.temb_act));
        for (a, r) in self.attentions.iter().zip(&self.resnets[1..]) {
            x = a.forward(x, inp.ctx, inp.attn);
            x = r.forward(x, Some(inp.temb_act));
        }
        x
    }
}

#[derive(Debug, Clone)]
pub struct UpBlock {
    pub resnets: Vec<ResnetBlock2D>,
    pub attentions: Vec<Transformer2DModel>,
    pub upsamplers: Vec<Upsample2D>,
}

/// Channel counts of one up block: its input, its output, and the widths of the skip
/// connections its resnets concatenate (last one first).
pub struct UpChannels {
    pub prev: usize,
    pub cout: usize,
    pub skips: Vec<usize>,
}

impl UpBlock {
    pub fn load(ld: &mut Loader<'_>, p: &str, ch: &UpChannels, attn: bool, up: bool, s: &BlockSpec) -> Result<Self> {
        let mut b = UpBlock { resnets: Vec::new(), attentions: Vec::new(), upsamplers: Vec::new() };
        for (j, &skip) in ch.skips.iter().enumerate() {
            let rin = if j == 0 { ch.prev } else { ch.cout };
            b.resnets.push(ResnetBlock2D::load(ld, &format!("{p}.resnets.{j}"), rin + skip, ch.cout, Some(s.temb), s.norm)?);
            if attn {
                b.attentions.push(Transformer2DModel::load(ld, &format!("{p}.attentions.{j}"), ch.cout, s.ctx, s.heads, s.norm)?);
            }
        }
        if up {
            b.upsamplers.push(Upsample2D::load(ld, &format!("{p}.upsamplers.0"), ch.cout)?);
        }
        Ok(b)
    }

    /// Consumes one skip state per resnet from the top of `skips`; upsamples to the size of the
    /// next skip (diffusers' `upsample_size`), which is ×2 for latent sizes divisible by 8.
    pub fn forward(&self, mut x: Tensor<4>, inp: &BlockInputs<'_>, skips: &mut Vec<Tensor<4>>) -> Tensor<4> {
        for (j, resnet) in self.resnets.iter().enumerate() {
            if let Some(skip) = skips.pop() {
                x = Tensor::cat(vec![x, skip], 1);
            }
            x = resnet.forward(x, Some(inp.temb_act));
            if let Some(a) = self.attentions.get(j) {
                x = a.forward(x, inp.ctx, inp.attn);
            }
        }
        for u in &self.upsamplers {
            let size = skips.last().map(|s| {
                let [_, _, h, w] = s.dims();
                [h, w]
            });
            x = u.forward(x, size);
        }
        x
    }
}
