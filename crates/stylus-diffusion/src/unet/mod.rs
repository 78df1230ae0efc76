//! SD1.5's noise predictor: a port of diffusers `UNet2DConditionModel` (`unet_2d_condition.py`)
//! for the SD1.5 block layout — `CrossAttnDownBlock2D ×3 + DownBlock2D`,
//! `UNetMidBlock2DCrossAttn`, `UpBlock2D + CrossAttnUpBlock2D ×3` — with the sinusoidal timestep
//! embedding (`embeddings.py` `get_timestep_embedding`, `flip_sin_to_cos=True`,
//! `downscale_freq_shift=0`) followed by `TimestepEmbedding` (linear → SiLU → linear).

pub mod attention;
pub mod blocks;

use burn::tensor::{Device, Tensor};
use stylus_sd::{Component, UNetConfig};

use crate::attention::AttentionConfig;
use crate::load::Loader;
use crate::nn::{from_vec, silu, Conv2d, GroupNorm, Linear};
use crate::resnet::Norm;
use crate::{Error, Result};
use blocks::{BlockInputs, BlockSpec, DownBlock, DownLayout, MidBlock, UpBlock, UpChannels};

/// diffusers `TimestepEmbedding`.
#[derive(Debug, Clone)]
pub struct TimestepEmbedding {
    pub linear_1: Linear,
    pub linear_2: Linear,
}

#[derive(Debug, Clone)]
pub struct UNet2DConditionModel {
    pub conv_in: Conv2d,
    pub time_embedding: TimestepEmbedding,
    pub down_blocks: Vec<DownBlock>,
    pub mid_block: MidBlock,
    pub up_blocks: Vec<UpBlock>,
    pub conv_norm_out: GroupNorm,
    pub conv_out: Conv2d,
    cfg: UNetConfig,
}

/// Sinusoidal features `[cos(t·f_i), sin(t·f_i)]` with `f_i = exp(-ln(10⁴)·i/half)`, computed in f32
/// in the same order as torch (`exponent / half`, `exp`, `t × freq`), row-major `[len(t), dim]`.
pub fn timestep_features(timesteps: &[f32], dim: usize) -> Vec<f32> {
    let half = dim / 2;
    let freqs: Vec<f32> = (0..half).map(|i| ((-(10000f64.ln()) as f32 * i as f32) / half as f32).exp()).collect();
    let mut out = Vec::with_capacity(timesteps.len() * dim);
    for &t in timesteps {
        let args: Vec<f32> = freqs.iter().map(|f| t * f).collect();
        out.extend(args.iter().map(|a| a.cos()));
        out.extend(args.iter().map(|a| a.sin()));
        out.extend(std::iter::repeat_n(0.0, dim - 2 * half)); // odd dim: zero pad, as diffusers
    }
    out
}

impl UNet2DConditionModel {
    /// Loads the UNet (diffusers paths without prefix) for `cfg`.
    pub fn load(cfg: &UNetConfig, ld: &mut Loader<'_>) -> Result<Self> {
        let ch = &cfg.block_out_channels;
        let n = ch.len();
        if n < 2 || ch.iter().any(|&c| cfg.attention_heads == 0 || !c.is_multiple_of(cfg.attention_heads)) || cfg.layers_per_block == 0 {
            return Err(Error::Request(format!("UNet config not supported: channels {ch:?}, {} heads", cfg.attention_heads)));
        }
        ld.set_component(Component::Unet);
        let lpb = cfg.layers_per_block;
        let temb = 4 * ch[0];
        let s = BlockSpec { temb, ctx: cfg.cross_attention_dim, heads: cfg.attention_heads, norm: Norm { groups: cfg.norm_num_groups, eps: cfg.norm_eps } };
        let conv_in = Conv2d::load(ld, "conv_in", cfg.in_channels, ch[0], 3)?;
        let time_embedding = TimestepEmbedding {
            linear_1: Linear::load(ld, "time_embedding.linear_1", ch[0], temb, true)?,
            linear_2: Linear::load(ld, "time_embedding.linear_2", temb, temb, true)?,
        };
        // Skip widths in push order: conv_in, then each down block's resnets and downsampler.
        let mut skip_widths = vec![ch[0]];
        let mut down_blocks = Vec::with_capacity(n);
        let mut cin = ch[0];
        for (i, &cout) in ch.iter().enumerate() {
            let last = i + 1 == n;
            down_blocks.push(DownBlock::load(ld, &format!("down_blocks.{i}"), DownLayout { cin, cout, layers: lpb, attn: !last, down: !last }, &s)?);
            skip_widths.extend(std::iter::repeat_n(cout, lpb + usize::from(!last)));
            cin = cout;
        }
        let mid_block = MidBlock::load(ld, "mid_block", ch[n - 1], &s)?;
        let mut up_blocks = Vec::with_capacity(n);
        let mut prev = ch[n - 1];
        for (i, &cout) in ch.iter().rev().enumerate() {
            let skips: Vec<usize> = (0..=lpb).map(|_| skip_widths.pop().unwrap_or(0)).collect();
            let up_ch = UpChannels { prev, cout, skips };
            up_blocks.push(UpBlock::load(ld, &format!("up_blocks.{i}"), &up_ch, i > 0, i + 1 < n, &s)?);
            prev = cout;
        }
        let conv_norm_out = GroupNorm::load(ld, "conv_norm_out", cfg.norm_num_groups, ch[0], cfg.norm_eps)?;
        let conv_out = Conv2d::load(ld, "conv_out", ch[0], cfg.out_channels, 3)?;
        Ok(UNet2DConditionModel { conv_in, time_embedding, down_blocks, mid_block, up_blocks, conv_norm_out, conv_out, cfg: cfg.clone() })
    }

    pub fn config(&self) -> &UNetConfig {
        &self.cfg
    }

    fn device(&self) -> Device {
        self.conv_in.weight.device()
    }

    /// Predicts ε for `sample` `[B, 4, h, w]` at `timesteps` (one per batch row, or one for all)
    /// conditioned on `ctx` `[B, S, cross_attention_dim]`.
    pub fn forward(&self, sample: Tensor<4>, timesteps: &[f32], ctx: &Tensor<3>, attn: &AttentionConfig) -> Result<Tensor<4>> {
        let [b, c, h, w] = sample.dims();
        let [cb, _, cw] = ctx.dims();
        if c != self.cfg.in_channels || cb != b || cw != self.cfg.cross_attention_dim || h == 0 || w == 0 {
            return Err(Error::Request(format!(
                "UNet input [{b}, {c}, {h}, {w}] with context {:?}: expected [B, {}, h, w] and [B, S, {}]",
                ctx.dims(),
                self.cfg.in_channels,
                self.cfg.cross_attention_dim
            )));
        }
        let ts: Vec<f32> = match timesteps.len() {
            1 => vec![timesteps[0]; b],
            n if n == b => timesteps.to_vec(),
            n => return Err(Error::Request(format!("{n} timesteps for a batch of {b}"))),
        };
        let dim = self.cfg.block_out_channels[0];
        let t_feat = from_vec(timestep_features(&ts, dim), [b, dim], &self.device())?;
        let temb = self.time_embedding.linear_2.forward(silu(self.time_embedding.linear_1.forward(t_feat)));
        let temb_act = silu(temb);
        let inp = BlockInputs { temb_act: &temb_act, ctx, attn };

        let mut x = self.conv_in.forward(sample);
        let mut skips = vec![x.clone()];
        for block in &self.down_blocks {
            x = block.forward(x, &inp, &mut skips);
        }
        x = self.mid_block.forward(x, &inp);
        for block in &self.up_blocks {
            x = block.forward(x, &inp, &mut skips);
        }
        Ok(self.conv_out.forward(self.conv_norm_out.forward_silu(x)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `get_timestep_embedding(t, 8, flip_sin_to_cos=True, downscale_freq_shift=0)` layout:
    /// cos half first, frequencies 1, 10⁻¹, 10⁻², 10⁻³.
    #[test]
    fn timestep_features_layout() {
        let f = timestep_features(&[0.0, 500.0], 8);
        assert_eq!(&f[..8], &[1.0, 1.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0]);
        let want = [500f32, 50.0, 5.0, 0.5];
        for (i, &a) in want.iter().enumerate() {
            assert!((f[8 + i] - a.cos()).abs() < 1e-4 && (f[12 + i] - a.sin()).abs() < 1e-4);
        }
    }
}
