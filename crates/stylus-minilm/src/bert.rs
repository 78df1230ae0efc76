//! The BERT encoder: a port of HF transformers' `BertModel` (`modeling_bert.py`: `BertEmbeddings`,
//! `BertSelfAttention`, `BertSelfOutput`, `BertIntermediate`, `BertOutput`, `BertLayer`,
//! `BertEncoder`) in burn, inference only (no dropout), returning `last_hidden_state`. Post-norm
//! layers, absolute position embeddings, token type 0 everywhere, exact erf GELU.
//!
//! Struct fields are named after the checkpoint's key segments (`embeddings.word_embeddings`,
//! `encoder.layer.N.attention.self.query`, …; see `load.rs`). Two names cannot be Rust fields as
//! written: `self` (a keyword) is the field `self_`, and `LayerNorm` keeps its capitals.
#![allow(non_snake_case)]

use burn::tensor::activation::gelu;
use burn::tensor::module::attention;
use burn::tensor::ops::AttentionModuleOptions;
use burn::tensor::{Bool, Int, Tensor};

use crate::config::BertConfig;
use crate::load::Weights;
use crate::nn::{Embedding, LayerNorm, Linear};
use crate::Error;

/// transformers' `BertModel` without the pooler (mean pooling does not use it).
#[derive(Debug, Clone)]
pub struct BertModel {
    pub embeddings: BertEmbeddings,
    pub encoder: BertEncoder,
    cfg: BertConfig,
}

#[derive(Debug, Clone)]
pub struct BertEmbeddings {
    pub word_embeddings: Embedding,
    pub position_embeddings: Embedding,
    pub token_type_embeddings: Embedding,
    pub LayerNorm: LayerNorm,
}

#[derive(Debug, Clone)]
pub struct BertEncoder {
    pub layer: Vec<BertLayer>,
}

#[derive(Debug, Clone)]
pub struct BertLayer {
    pub attention: BertAttention,
    pub intermediate: BertIntermediate,
    pub output: BertOutput,
}

#[derive(Debug, Clone)]
pub struct BertAttention {
    /// Checkpoint segment `self`.
    pub self_: BertSelfAttention,
    pub output: BertSelfOutput,
}

#[derive(Debug, Clone)]
pub struct BertSelfAttention {
    pub query: Linear,
    pub key: Linear,
    pub value: Linear,
    heads: usize,
}

#[derive(Debug, Clone)]
pub struct BertSelfOutput {
    pub dense: Linear,
    pub LayerNorm: LayerNorm,
}

#[derive(Debug, Clone)]
pub struct BertIntermediate {
    pub dense: Linear,
}

#[derive(Debug, Clone)]
pub struct BertOutput {
    pub dense: Linear,
    pub LayerNorm: LayerNorm,
}

impl BertLayer {
    fn load(w: &mut Weights<'_>, p: &str, cfg: &BertConfig) -> Result<Self, Error> {
        let (h, i, eps) = (cfg.hidden_size, cfg.intermediate_size, cfg.layer_norm_eps);
        let lin = |w: &mut Weights<'_>, n: &str, d_in, d_out| Linear::load(w, &format!("{p}.{n}"), d_in, d_out);
        let self_ = BertSelfAttention {
            query: lin(w, "attention.self.query", h, h)?,
            key: lin(w, "attention.self.key", h, h)?,
            value: lin(w, "attention.self.value", h, h)?,
            heads: cfg.num_attention_heads,
        };
        let output = BertSelfOutput {
            dense: lin(w, "attention.output.dense", h, h)?,
            LayerNorm: LayerNorm::load(w, &format!("{p}.attention.output.LayerNorm"), h, eps)?,
        };
        Ok(BertLayer {
            attention: BertAttention { self_, output },
            intermediate: BertIntermediate { dense: lin(w, "intermediate.dense", h, i)? },
            output: BertOutput { dense: lin(w, "output.dense", i, h)?, LayerNorm: LayerNorm::load(w, &format!("{p}.output.LayerNorm"), h, eps)? },
        })
    }

    /// `x` `[B, S, H]`; `mask` `[B, heads, S, S]`, true where a key is padding.
    fn forward(&self, x: Tensor<3>, mask: Option<Tensor<4, Bool>>) -> Tensor<3> {
        let a = &self.attention;
        let ctx = a.self_.forward(x.clone(), mask);
        let x = a.output.LayerNorm.forward(a.output.dense.forward(ctx) + x);
        let h = gelu(self.intermediate.dense.forward(x.clone()));
        self.output.LayerNorm.forward(self.output.dense.forward(h) + x)
    }
}

impl BertSelfAttention {
    /// softmax(q kᵀ / √d, padding keys masked) v per head (`eager_attention_forward` / SDPA).
    fn forward(&self, x: Tensor<3>, mask: Option<Tensor<4, Bool>>) -> Tensor<3> {
        let [b, s, c] = x.dims();
        let d = c / self.heads;
        let split = |t: Tensor<3>| t.reshape([b, s, self.heads, d]).swap_dims(1, 2);
        let (q, k, v) = (split(self.query.forward(x.clone())), split(self.key.forward(x.clone())), split(self.value.forward(x)));
        let opts = AttentionModuleOptions { scale: None, softcap: None, is_causal: false };
        attention(q, k, v, mask, None, opts).swap_dims(1, 2).reshape([b, s, c])
    }
}

impl BertModel {
    /// Loads every parameter of [`crate::load::bert_params`] from `w` (then checks none is left).
    pub fn load(cfg: &BertConfig, w: &mut Weights<'_>) -> Result<Self, Error> {
        cfg.validate()?;
        let (h, eps) = (cfg.hidden_size, cfg.layer_norm_eps);
        let embeddings = BertEmbeddings {
            word_embeddings: Embedding::load(w, "embeddings.word_embeddings", cfg.vocab_size, h)?,
            position_embeddings: Embedding::load(w, "embeddings.position_embeddings", cfg.max_position_embeddings, h)?,
            token_type_embeddings: Embedding::load(w, "embeddings.token_type_embeddings", cfg.type_vocab_size, h)?,
            LayerNorm: LayerNorm::load(w, "embeddings.LayerNorm", h, eps)?,
        };
        let layer = (0..cfg.num_hidden_layers).map(|n| BertLayer::load(w, &format!("encoder.layer.{n}"), cfg)).collect::<Result<Vec<_>, _>>()?;
        w.finish()?;
        Ok(BertModel { embeddings, encoder: BertEncoder { layer }, cfg: cfg.clone() })
    }

    pub fn config(&self) -> &BertConfig {
        &self.cfg
    }

    /// `last_hidden_state` `[B, S, H]` for token ids `[B, S]` with `attention_mask` `[B, S]`
    /// (1 = token, 0 = padding; `None` = no padding). Token type ids are all 0, positions `0..S`.
    /// Ids and `S` must be within the vocabulary and `max_position_embeddings` (checked by the caller).
    pub fn forward(&self, ids: Tensor<2, Int>, attention_mask: Option<Tensor<2, Int>>) -> Tensor<3> {
        let [b, s] = ids.dims();
        let e = &self.embeddings;
        let device = ids.device();
        let h = self.cfg.hidden_size;
        let token_type = e.token_type_embeddings.weight.clone().narrow(0, 0, 1).reshape([1, 1, h]);
        let pos = Tensor::<1, Int>::arange(0..s as i64, &device).reshape([1, s]);
        let x = e.word_embeddings.forward(ids) + token_type + e.position_embeddings.forward(pos);
        let mut x = e.LayerNorm.forward(x);
        let heads = self.cfg.num_attention_heads;
        let mask = attention_mask.map(|m| m.equal_elem(0).reshape([b, 1, 1, s]).expand([b, heads, s, s]));
        for layer in &self.encoder.layer {
            x = layer.forward(x, mask.clone());
        }
        x
    }
}
