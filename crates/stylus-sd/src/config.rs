//! Model configurations for the SD1.5 architecture: the `v1_5()` preset and the tiny fixture preset.
//!
//! Field meanings follow diffusers' `UNet2DConditionModel`, `AutoencoderKL` and transformers'
//! `CLIPTextConfig`; only the values that change tensor shapes or numerics are kept.

use serde::{Deserialize, Serialize};

/// UNet2DConditionModel with the SD1.5 block types (3 cross-attention down blocks + 1 plain,
/// a cross-attention mid block, 1 plain up block + 3 cross-attention up blocks).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UNetConfig {
    pub in_channels: usize,
    pub out_channels: usize,
    pub block_out_channels: Vec<usize>,
    pub layers_per_block: usize,
    pub cross_attention_dim: usize,
    /// diffusers calls this `attention_head_dim`, but for SD1.5 it is the number of heads (8).
    pub attention_heads: usize,
    pub norm_num_groups: usize,
    pub norm_eps: f64,
}

/// AutoencoderKL (VAE) with SD's DownEncoderBlock2D / UpDecoderBlock2D stacks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VaeConfig {
    pub in_channels: usize,
    pub latent_channels: usize,
    pub block_out_channels: Vec<usize>,
    pub layers_per_block: usize,
    pub norm_num_groups: usize,
    pub scaling_factor: f64,
}

/// CLIP ViT-L/14 text transformer (SD1.5's `cond_stage_model.transformer`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClipConfig {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub max_position_embeddings: usize,
    pub layer_norm_eps: f64,
}

/// The three networks of an SD1.5 pipeline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SdConfig {
    pub unet: UNetConfig,
    pub vae: VaeConfig,
    pub text: ClipConfig,
}

impl SdConfig {
    /// Stable Diffusion 1.5 (runwayml/stable-diffusion-v1-5).
    pub fn v1_5() -> Self {
        SdConfig {
            unet: UNetConfig {
                in_channels: 4,
                out_channels: 4,
                block_out_channels: vec![320, 640, 1280, 1280],
                layers_per_block: 2,
                cross_attention_dim: 768,
                attention_heads: 8,
                norm_num_groups: 32,
                norm_eps: 1e-5,
            },
            vae: VaeConfig {
                in_channels: 3,
                latent_channels: 4,
                block_out_channels: vec![128, 256, 512, 512],
                layers_per_block: 2,
                norm_num_groups: 32,
                scaling_factor: 0.18215,
            },
            text: ClipConfig {
                vocab_size: 49408,
                hidden_size: 768,
                intermediate_size: 3072,
                num_hidden_layers: 12,
                num_attention_heads: 12,
                max_position_embeddings: 77,
                layer_norm_eps: 1e-5,
            },
        }
    }

    /// The tiny random-weight model in `tests/fixtures/tiny_sd` (same topology and key names as
    /// SD1.5, small widths; see `tests/reference/README.md`).
    pub fn tiny() -> Self {
        SdConfig {
            unet: UNetConfig {
                in_channels: 4,
                out_channels: 4,
                block_out_channels: vec![8, 16, 24, 24],
                layers_per_block: 2,
                cross_attention_dim: 8,
                attention_heads: 8,
                norm_num_groups: 4,
                norm_eps: 1e-5,
            },
            vae: VaeConfig {
                in_channels: 3,
                latent_channels: 4,
                block_out_channels: vec![8, 16, 24, 24],
                layers_per_block: 2,
                norm_num_groups: 4,
                scaling_factor: 0.18215,
            },
            text: ClipConfig {
                vocab_size: 49408,
                hidden_size: 8,
                intermediate_size: 32,
                num_hidden_layers: 3,
                num_attention_heads: 4,
                max_position_embeddings: 77,
                layer_norm_eps: 1e-5,
            },
        }
    }
}
