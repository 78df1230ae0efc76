//! The convolutional building blocks shared by the UNet and the VAE: diffusers `ResnetBlock2D`
//! (`resnet.py`, "default" time-embedding norm, output scale 1), `Downsample2D`
//! (`downsampling.py`: 3×3 stride-2 conv; the VAE's variant pads right/bottom by one instead of
//! symmetric padding) and `Upsample2D` (`upsampling.py`: nearest ×2, or to an explicit size, then
//! a 3×3 conv).

use burn::tensor::module::interpolate;
use burn::tensor::ops::{InterpolateMode, InterpolateOptions};
use burn::tensor::Tensor;

use crate::load::Loader;
use crate::nn::{add_terms_nchw, Conv2d, GroupNorm, Linear};
use crate::Result;

/// GroupNorm settings of a network: groups and epsilon.
#[derive(Debug, Clone, Copy)]
pub struct Norm {
    pub groups: usize,
    pub eps: f64,
}

#[derive(Debug, Clone)]
pub struct ResnetBlock2D {
    pub norm1: GroupNorm,
    pub conv1: Conv2d,
    /// Absent in the VAE (no time embedding).
    pub time_emb_proj: Option<Linear>,
    pub norm2: GroupNorm,
    pub conv2: Conv2d,
    /// 1×1 conv when the channel count changes.
    pub conv_shortcut: Option<Conv2d>,
}

impl ResnetBlock2D {
    pub fn load(ld: &mut Loader<'_>, p: &str, cin: usize, cout: usize, temb: Option<usize>, norm: Norm) -> Result<Self> {
        Ok(ResnetBlock2D {
            norm1: GroupNorm::load(ld, &format!("{p}.norm1"), norm.groups, cin, norm.eps)?,
            conv1: Conv2d::load(ld, &format!("{p}.conv1"), cin, cout, 3)?,
            time_emb_proj: temb.map(|t| Linear::load(ld, &format!("{p}.time_emb_proj"), t, cout, true)).transpose()?,
            norm2: GroupNorm::load(ld, &format!("{p}.norm2"), norm.groups, cout, norm.eps)?,
            conv2: Conv2d::load(ld, &format!("{p}.conv2"), cout, cout, 3)?,
            conv_shortcut: (cin != cout).then(|| Conv2d::load(ld, &format!("{p}.conv_shortcut"), cin, cout, 1)).transpose()?,
        })
    }

    /// `x` `[B, Cin, H, W]`; `temb_act` = SiLU(time embedding) `[B, T]` for UNet blocks.
    pub fn forward(&self, x: Tensor<4>, temb_act: Option<&Tensor<2>>) -> Tensor<4> {
        // each convolution's bias goes in with what is added after it: one launch on the cube backend
        let (h, bias) = self.conv1.parts(self.norm1.forward_silu(x.clone()));
        let temb = match (&self.time_emb_proj, temb_act) {
            (Some(proj), Some(t)) => Some(proj.parts(t.clone())),
            _ => None,
        };
        let h = add_terms_nchw(h, bias, temb, None);
        let (h, bias) = self.conv2.parts(self.norm2.forward_silu(h));
        let shortcut = match &self.conv_shortcut {
            Some(conv) => conv.parts(x),
            None => (x, None),
        };
        add_terms_nchw(h, bias, None, Some(shortcut))
    }
}

#[derive(Debug, Clone)]
pub struct Downsample2D {
    pub conv: Conv2d,
}

impl Downsample2D {
    /// UNet variant: symmetric padding 1.
    pub fn load_unet(ld: &mut Loader<'_>, p: &str, c: usize) -> Result<Self> {
        Ok(Downsample2D { conv: Conv2d::load(ld, &format!("{p}.conv"), c, c, 3)?.with_stride(2) })
    }

    /// VAE encoder variant: `F.pad(x, (0, 1, 0, 1))` then an unpadded stride-2 conv.
    pub fn load_vae(ld: &mut Loader<'_>, p: &str, c: usize) -> Result<Self> {
        let conv = Conv2d::load(ld, &format!("{p}.conv"), c, c, 3)?.with_stride(2).with_padding([(0, 1), (0, 1)]);
        Ok(Downsample2D { conv })
    }

    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        self.conv.forward(x)
    }
}

#[derive(Debug, Clone)]
pub struct Upsample2D {
    pub conv: Conv2d,
}

impl Upsample2D {
    pub fn load(ld: &mut Loader<'_>, p: &str, c: usize) -> Result<Self> {
        Ok(Upsample2D { conv: Conv2d::load(ld, &format!("{p}.conv"), c, c, 3)? })
    }

    /// Nearest-neighbour upsampling to `size` (the skip connection's, when the latent size is not
    /// a multiple of 8) or ×2, then the conv.
    pub fn forward(&self, x: Tensor<4>, size: Option<[usize; 2]>) -> Tensor<4> {
        let [_, _, h, w] = x.dims();
        let opts = InterpolateOptions::new(InterpolateMode::Nearest).with_output_size(size.unwrap_or([2 * h, 2 * w]));
        self.conv.forward(interpolate(x, opts))
    }
}
