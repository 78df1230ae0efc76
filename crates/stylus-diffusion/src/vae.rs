//! SD1.5's VAE: a port of diffusers `AutoencoderKL` (`autoencoder_kl.py`) with its `Encoder` /
//! `Decoder` (`vae.py`: `DownEncoderBlock2D` / `UpDecoderBlock2D` stacks, `UNetMidBlock2D` with one
//! single-head `Attention` whose q/k/v/out have biases, GroupNorm eps 1e-6) and the
//! `quant_conv` / `post_quant_conv` 1×1 convs. `encode` returns the diagonal Gaussian's mean and
//! log-variance (clamped to [-30, 20] as diffusers does); latents are `mean × scaling_factor`.

use burn::tensor::Tensor;
use stylus_sd::{Component, VaeConfig};

use crate::attention::{multi_head_attention, AttentionConfig};
use crate::load::Loader;
use crate::nn::{add_terms, Conv2d, GroupNorm, Linear};
use crate::resnet::{Downsample2D, Norm, ResnetBlock2D, Upsample2D};
use crate::unet::attention::Dropout;
use crate::{Error, Result};

const EPS: f64 = 1e-6;

/// The VAE mid block's self-attention over all pixels (one head of width C).
#[derive(Debug, Clone)]
pub struct VaeAttention {
    pub group_norm: GroupNorm,
    pub to_q: Linear,
    pub to_k: Linear,
    pub to_v: Linear,
    pub to_out: (Linear, Dropout),
}

impl VaeAttention {
    fn load(ld: &mut Loader<'_>, p: &str, c: usize, groups: usize) -> Result<Self> {
        let lin = |ld: &mut Loader<'_>, n: &str| Linear::load(ld, &format!("{p}.{n}"), c, c, true);
        Ok(VaeAttention {
            group_norm: GroupNorm::load(ld, &format!("{p}.group_norm"), groups, c, EPS)?,
            to_q: lin(ld, "to_q")?,
            to_k: lin(ld, "to_k")?,
            to_v: lin(ld, "to_v")?,
            to_out: (lin(ld, "to_out.0")?, Dropout),
        })
    }

    fn forward(&self, x: Tensor<4>, attn: &AttentionConfig) -> Tensor<4> {
        let [b, c, h, w] = x.dims();
        // pixels as tokens `[B, H·W, C]`: a transposed view, which the GEMMs read in place on the cube backend
        let t = self.group_norm.forward(x.clone()).reshape([b, c, h * w]).swap_dims(1, 2);
        let (q, k, v) = (self.to_q.forward(t.clone()), self.to_k.forward(t.clone()), self.to_v.forward(t));
        // back to `[B, C, H·W]` as a view too: one launch adds `to_out`'s bias and the residual
        let (o, bias) = self.to_out.0.parts(multi_head_attention(q, k, v, 1, false, attn));
        add_terms(o.swap_dims(1, 2), bias, None, Some((x.reshape([b, c, h * w]), None))).reshape([b, c, h, w])
    }
}

/// diffusers `UNetMidBlock2D` as the VAE uses it: resnet, attention, resnet (no time embedding).
#[derive(Debug, Clone)]
pub struct VaeMidBlock {
    pub resnets: Vec<ResnetBlock2D>,
    pub attentions: Vec<VaeAttention>,
}

impl VaeMidBlock {
    fn load(ld: &mut Loader<'_>, p: &str, c: usize, norm: Norm) -> Result<Self> {
        let r0 = ResnetBlock2D::load(ld, &format!("{p}.resnets.0"), c, c, None, norm)?;
        let a = VaeAttention::load(ld, &format!("{p}.attentions.0"), c, norm.groups)?;
        let r1 = ResnetBlock2D::load(ld, &format!("{p}.resnets.1"), c, c, None, norm)?;
        Ok(VaeMidBlock { resnets: vec![r0, r1], attentions: vec![a] })
    }

    fn forward(&self, x: Tensor<4>, attn: &AttentionConfig) -> Tensor<4> {
        let x = self.resnets[0].forward(x, None);
        let x = self.attentions[0].forward(x, attn);
        self.resnets[1].forward(x, None)
    }
}

/// `DownEncoderBlock2D`.
#[derive(Debug, Clone)]
pub struct EncoderBlock {
    pub resnets: Vec<ResnetBlock2D>,
    pub downsamplers: Vec<Downsample2D>,
}

/// `UpDecoderBlock2D`.
#[derive(Debug, Clone)]
pub struct DecoderBlock {
    pub resnets: Vec<ResnetBlock2D>,
    pub upsamplers: Vec<Upsample2D>,
}

#[derive(Debug, Clone)]
pub struct Encoder {
    pub conv_in: Conv2d,
    pub down_blocks: Vec<EncoderBlock>,
    pub mid_block: VaeMidBlock,
    pub conv_norm_out: GroupNorm,
    pub conv_out: Conv2d,
}

#[derive(Debug, Clone)]
pub struct Decoder {
    pub conv_in: Conv2d,
    pub mid_block: VaeMidBlock,
    pub up_blocks: Vec<DecoderBlock>,
    pub conv_norm_out: GroupNorm,
    pub conv_out: Conv2d,
}

impl Encoder {
    /// `encoder.*` of the VAE.
    fn load(cfg: &VaeConfig, ld: &mut Loader<'_>, norm: Norm) -> Result<Self> {
        let ch = &cfg.block_out_channels;
        let (n, lpb, lat, top) = (ch.len(), cfg.layers_per_block, cfg.latent_channels, ch[ch.len() - 1]);
        let conv_in = Conv2d::load(ld, "encoder.conv_in", cfg.in_channels, ch[0], 3)?;
        let mut down_blocks = Vec::with_capacity(n);
        let mut cin = ch[0];
        for (i, &cout) in ch.iter().enumerate() {
            let p = format!("encoder.down_blocks.{i}");
            let resnets = (0..lpb)
                .map(|j| ResnetBlock2D::load(ld, &format!("{p}.resnets.{j}"), if j == 0 { cin } else { cout }, cout, None, norm))
                .collect::<Result<Vec<_>>>()?;
            let downsamplers = if i + 1 < n { vec![Downsample2D::load_vae(ld, &format!("{p}.downsamplers.0"), cout)?] } else { Vec::new() };
            down_blocks.push(EncoderBlock { resnets, downsamplers });
            cin = cout;
        }
        Ok(Encoder {
            conv_in,
            down_blocks,
            mid_block: VaeMidBlock::load(ld, "encoder.mid_block", top, norm)?,
            conv_norm_out: GroupNorm::load(ld, "encoder.conv_norm_out", norm.groups, top, EPS)?,
            conv_out: Conv2d::load(ld, "encoder.conv_out", top, 2 * lat, 3)?,
        })
    }
}

#[derive(Debug, Clone)]
pub struct AutoencoderKL {
    /// `None` in a text-to-image conversion (`Loader::lacks_vae_encoder`): [`AutoencoderKL::encode`] is refused.
    pub encoder: Option<Encoder>,
    pub decoder: Decoder,
    pub quant_conv: Option<Conv2d>,
    pub post_quant_conv: Conv2d,
    cfg: VaeConfig,
}

impl AutoencoderKL {
    /// Loads `encoder.*`, `decoder.*`, `quant_conv`, `post_quant_conv` for `cfg` (the decoder half
    /// only when the loader's model has no encoder).
    pub fn load(cfg: &VaeConfig, ld: &mut Loader<'_>) -> Result<Self> {
        let ch = &cfg.block_out_channels;
        let n = ch.len();
        if n == 0 || cfg.layers_per_block == 0 {
            return Err(Error::Request(format!("VAE config not supported: channels {ch:?}")));
        }
        ld.set_component(Component::Vae);
        let norm = Norm { groups: cfg.norm_num_groups, eps: EPS };
        let (lpb, lat, top) = (cfg.layers_per_block, cfg.latent_channels, ch[n - 1]);

        let (encoder, quant_conv) = if ld.lacks_vae_encoder() {
            (None, None)
        } else {
            (Some(Encoder::load(cfg, ld, norm)?), Some(Conv2d::load(ld, "quant_conv", 2 * lat, 2 * lat, 1)?))
        };
        let post_quant_conv = Conv2d::load(ld, "post_quant_conv", lat, lat, 1)?;

        let conv_in = Conv2d::load(ld, "decoder.conv_in", lat, top, 3)?;
        let mid_block = VaeMidBlock::load(ld, "decoder.mid_block", top, norm)?;
        let mut up_blocks = Vec::with_capacity(n);
        let mut prev = top;
        for (i, &cout) in ch.iter().rev().enumerate() {
            let p = format!("decoder.up_blocks.{i}");
            let resnets = (0..=lpb)
                .map(|j| ResnetBlock2D::load(ld, &format!("{p}.resnets.{j}"), if j == 0 { prev } else { cout }, cout, None, norm))
                .collect::<Result<Vec<_>>>()?;
            let upsamplers = if i + 1 < n { vec![Upsample2D::load(ld, &format!("{p}.upsamplers.0"), cout)?] } else { Vec::new() };
            up_blocks.push(DecoderBlock { resnets, upsamplers });
            prev = cout;
        }
        let decoder = Decoder {
            conv_in,
            mid_block,
            up_blocks,
            conv_norm_out: GroupNorm::load(ld, "decoder.conv_norm_out", norm.groups, ch[0], EPS)?,
            conv_out: Conv2d::load(ld, "decoder.conv_out", ch[0], cfg.in_channels, 3)?,
        };
        Ok(AutoencoderKL { encoder, decoder, quant_conv, post_quant_conv, cfg: cfg.clone() })
    }

    pub fn config(&self) -> &VaeConfig {
        &self.cfg
    }

    /// Latents `[B, latent_channels, h, w]` (already divided by the scaling factor) → image
    /// `[B, 3, 8h, 8w]` in about [-1, 1].
    pub fn decode(&self, z: Tensor<4>, attn: &AttentionConfig) -> Result<Tensor<4>> {
        let [_, c, h, w] = z.dims();
        if c != self.cfg.latent_channels || h == 0 || w == 0 {
            return Err(Error::Request(format!("VAE decode input {:?}: expected [B, {}, h, w]", z.dims(), self.cfg.latent_channels)));
        }
        let d = &self.decoder;
        let mut x = d.mid_block.forward(d.conv_in.forward(self.post_quant_conv.forward(z)), attn);
        for block in &d.up_blocks {
            for r in &block.resnets {
                x = r.forward(x, None);
            }
            for u in &block.upsamplers {
                x = u.forward(x, None);
            }
        }
        Ok(d.conv_out.forward(d.conv_norm_out.forward_silu(x)))
    }

    /// Image `[B, 3, H, W]` in [-1, 1] (H, W multiples of 8) → (mean, logvar) `[B, latent_channels, H/8, W/8]`.
    pub fn encode(&self, image: Tensor<4>, attn: &AttentionConfig) -> Result<(Tensor<4>, Tensor<4>)> {
        let [_, c, h, w] = image.dims();
        let f = 1 << (self.cfg.block_out_channels.len() - 1);
        if c != self.cfg.in_channels || h == 0 || w == 0 || !h.is_multiple_of(f) || !w.is_multiple_of(f) {
            return Err(Error::Request(format!(
                "VAE encode input {:?}: expected [B, {}, H, W] with H, W multiples of {f}",
                image.dims(),
                self.cfg.in_channels
            )));
        }
        let (Some(e), Some(quant_conv)) = (&self.encoder, &self.quant_conv) else {
            return Err(Error::Request(
                "this model has no VAE encoder (converted with --no-vae-encoder for text-to-image); image-to-image needs a conversion with it".into(),
            ));
        };
        let mut x = e.conv_in.forward(image);
        for block in &e.down_blocks {
            for r in &block.resnets {
                x = r.forward(x, None);
            }
            for d in &block.downsamplers {
                x = d.forward(x);
            }
        }
        let x = e.mid_block.forward(x, attn);
        let moments = quant_conv.forward(e.conv_out.forward(e.conv_norm_out.forward_silu(x)));
        let lat = self.cfg.latent_channels;
        let mean = moments.clone().narrow(1, 0, lat);
        let logvar = moments.narrow(1, lat, lat).clamp(-30.0, 20.0);
        Ok((mean, logvar))
    }
}
