//! CLIP text encoder (SD1.5's `cond_stage_model.transformer` / diffusers `text_encoder`): a port
//! of transformers' `CLIPTextModel` (`modeling_clip.py`): token + position embeddings, pre-norm
//! encoder layers with causal self-attention and a quick-GELU MLP, final layer norm.
//!
//! Clip skip follows diffusers' convention: `clip_skip = n` returns
//! `final_layer_norm(hidden_states[-(n + 1)])`, i.e. the encoder stops `n` layers early and the
//! final layer norm is still applied (`n = 0`: the ordinary output).

use burn::tensor::{Int, Tensor, TensorData};
use stylus_sd::{ClipConfig, Component};

use crate::attention::{multi_head_attention, AttentionConfig};
use crate::load::Loader;
use crate::nn::{quick_gelu, Embedding, LayerNorm, Linear};
use crate::{Error, Result};

/// transformers' `CLIPTextModel` (its only child is `text_model`).
#[derive(Debug, Clone)]
pub struct ClipTextModel {
    pub text_model: ClipTextTransformer,
}

#[derive(Debug, Clone)]
pub struct ClipTextTransformer {
    pub embeddings: ClipEmbeddings,
    pub encoder: ClipEncoder,
    pub final_layer_norm: LayerNorm,
}

#[derive(Debug, Clone)]
pub struct ClipEmbeddings {
    pub token_embedding: Embedding,
    pub position_embedding: Embedding,
}

#[derive(Debug, Clone)]
pub struct ClipEncoder {
    pub layers: Vec<ClipEncoderLayer>,
}

#[derive(Debug, Clone)]
pub struct ClipEncoderLayer {
    pub self_attn: ClipAttention,
    pub layer_norm1: LayerNorm,
    pub mlp: ClipMlp,
    pub layer_norm2: LayerNorm,
}

#[derive(Debug, Clone)]
pub struct ClipAttention {
    pub q_proj: Linear,
    pub k_proj: Linear,
    pub v_proj: Linear,
    pub out_proj: Linear,
    heads: usize,
}

#[derive(Debug, Clone)]
pub struct ClipMlp {
    pub fc1: Linear,
    pub fc2: Linear,
}

impl ClipAttention {
    fn load(ld: &mut Loader<'_>, p: &str, h: usize, heads: usize) -> Result<Self> {
        let lin = |ld: &mut Loader<'_>, n: &str| Linear::load(ld, &format!("{p}.{n}"), h, h, true);
        Ok(ClipAttention { q_proj: lin(ld, "q_proj")?, k_proj: lin(ld, "k_proj")?, v_proj: lin(ld, "v_proj")?, out_proj: lin(ld, "out_proj")?, heads })
    }

    /// `residual + attention(x)` (`out_proj`'s bias and the residual in one launch on the cube backend).
    fn forward_add(&self, x: Tensor<3>, attn: &AttentionConfig, residual: Tensor<3>) -> Tensor<3> {
        let (q, k, v) = (self.q_proj.forward(x.clone()), self.k_proj.forward(x.clone()), self.v_proj.forward(x));
        self.out_proj.forward_add(multi_head_attention(q, k, v, self.heads, true, attn), residual)
    }
}

impl ClipEncoderLayer {
    fn load(ld: &mut Loader<'_>, p: &str, cfg: &ClipConfig) -> Result<Self> {
        let (h, eps) = (cfg.hidden_size, cfg.layer_norm_eps);
        Ok(ClipEncoderLayer {
            self_attn: ClipAttention::load(ld, &format!("{p}.self_attn"), h, cfg.num_attention_heads)?,
            layer_norm1: LayerNorm::load(ld, &format!("{p}.layer_norm1"), h, eps)?,
            mlp: ClipMlp {
                fc1: Linear::load(ld, &format!("{p}.mlp.fc1"), h, cfg.intermediate_size, true)?,
                fc2: Linear::load(ld, &format!("{p}.mlp.fc2"), cfg.intermediate_size, h, true)?,
            },
            layer_norm2: LayerNorm::load(ld, &format!("{p}.layer_norm2"), h, eps)?,
        })
    }

    fn forward(&self, x: Tensor<3>, attn: &AttentionConfig) -> Tensor<3> {
        let x = self.self_attn.forward_add(self.layer_norm1.forward(x.clone()), attn, x);
        let h = quick_gelu(self.mlp.fc1.forward(self.layer_norm2.forward(x.clone())));
        self.mlp.fc2.forward_add(h, x)
    }
}

impl ClipTextModel {
    /// Loads `text_model.*` from the loader.
    pub fn load(cfg: &ClipConfig, ld: &mut Loader<'_>) -> Result<Self> {
        if cfg.num_attention_heads == 0 || !cfg.hidden_size.is_multiple_of(cfg.num_attention_heads) {
            return Err(Error::Request(format!("CLIP: hidden size {} is not divisible by {} heads", cfg.hidden_size, cfg.num_attention_heads)));
        }
        ld.set_component(Component::TextEncoder);
        let h = cfg.hidden_size;
        let embeddings = ClipEmbeddings {
            token_embedding: Embedding::load(ld, "text_model.embeddings.token_embedding", cfg.vocab_size, h)?,
            position_embedding: Embedding::load(ld, "text_model.embeddings.position_embedding", cfg.max_position_embeddings, h)?,
        };
        let layers = (0..cfg.num_hidden_layers)
            .map(|i| ClipEncoderLayer::load(ld, &format!("text_model.encoder.layers.{i}"), cfg))
            .collect::<Result<Vec<_>>>()?;
        let final_layer_norm = LayerNorm::load(ld, "text_model.final_layer_norm", h, cfg.layer_norm_eps)?;
        Ok(ClipTextModel { text_model: ClipTextTransformer { embeddings, encoder: ClipEncoder { layers }, final_layer_norm } })
    }

    /// Number of encoder layers.
    pub fn num_layers(&self) -> usize {
        self.text_model.encoder.layers.len()
    }

    /// Encodes `batch` rows of token ids (`ids.len() == batch × seq`, seq ≤ 77) to the hidden
    /// states `[batch, seq, hidden]` SD conditions on. `clip_skip` as in the module docs.
    pub fn forward(&self, ids: &[u32], batch: usize, clip_skip: usize, attn: &AttentionConfig) -> Result<Tensor<3>> {
        let t = &self.text_model;
        let max_pos = t.embeddings.position_embedding.num_embeddings();
        let vocab = t.embeddings.token_embedding.num_embeddings();
        if batch == 0 || ids.is_empty() || !ids.len().is_multiple_of(batch) {
            return Err(Error::Request(format!("{} token ids do not split into {batch} rows", ids.len())));
        }
        let seq = ids.len() / batch;
        if seq > max_pos {
            return Err(Error::Request(format!("{seq} tokens per row; the text encoder takes at most {max_pos}")));
        }
        if let Some(bad) = ids.iter().find(|&&i| i as usize >= vocab) {
            return Err(Error::Request(format!("token id {bad} is outside the vocabulary ({vocab})")));
        }
        if clip_skip >= self.num_layers() {
            return Err(Error::Request(format!("clip_skip {clip_skip} must be below the number of layers ({})", self.num_layers())));
        }
        let device = t.final_layer_norm.weight.device();
        let ids_t = Tensor::<2, Int>::from_data(TensorData::new(ids.iter().map(|&i| i as i64).collect::<Vec<_>>(), [batch, seq]), &device);
        let pos = Tensor::<1, Int>::arange(0..seq as i64, &device).reshape([1, seq]);
        let mut x = t.embeddings.token_embedding.forward(ids_t) + t.embeddings.position_embedding.forward(pos);
        for layer in &t.encoder.layers[..self.num_layers() - clip_skip] {
            x = layer.forward(x, attn);
        }
        Ok(t.final_layer_norm.forward(x))
    }
}
