//! `config.json` of a BERT encoder (HF transformers `BertConfig`), parsed and checked for what this
//! port implements: absolute position embeddings, exact (erf) GELU, heads dividing the hidden size.

use serde::Deserialize;

use crate::Error;

/// The `BertConfig` fields the encoder needs (`config.json`; other fields are ignored).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct BertConfig {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub intermediate_size: usize,
    pub max_position_embeddings: usize,
    /// Segment (token type) vocabulary; BERT's default is 2.
    #[serde(default = "default_type_vocab")]
    pub type_vocab_size: usize,
    #[serde(default = "default_eps")]
    pub layer_norm_eps: f64,
    /// Must be `gelu` (transformers' `ACT2FN["gelu"]` = exact erf GELU).
    #[serde(default = "default_act")]
    pub hidden_act: String,
    /// Must be `absolute` (the only kind this port has).
    #[serde(default = "default_pos")]
    pub position_embedding_type: String,
    /// `bert` when present (other architectures are refused).
    #[serde(default)]
    pub model_type: Option<String>,
}

fn default_type_vocab() -> usize {
    2
}
fn default_eps() -> f64 {
    1e-12
}
fn default_act() -> String {
    "gelu".into()
}
fn default_pos() -> String {
    "absolute".into()
}

impl BertConfig {
    /// all-MiniLM-L6-v2's `config.json` (`nreimers/MiniLM-L6-H384-uncased`): 6 layers, 384 hidden,
    /// 12 heads, 1536 intermediate, 30522 WordPiece tokens, 512 positions.
    pub fn minilm_l6_h384() -> Self {
        BertConfig {
            vocab_size: 30522,
            hidden_size: 384,
            num_hidden_layers: 6,
            num_attention_heads: 12,
            intermediate_size: 1536,
            max_position_embeddings: 512,
            type_vocab_size: 2,
            layer_norm_eps: 1e-12,
            hidden_act: "gelu".into(),
            position_embedding_type: "absolute".into(),
            model_type: Some("bert".into()),
        }
    }

    /// Parses and validates `config.json` bytes.
    pub fn from_json_bytes(bytes: &[u8]) -> Result<Self, Error> {
        let cfg: BertConfig = serde_json::from_slice(bytes).map_err(|e| Error::Config(e.to_string()))?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Refuses configurations this port does not implement (named in the error).
    pub fn validate(&self) -> Result<(), Error> {
        let bad = |m: String| Err(Error::Config(m));
        if let Some(t) = &self.model_type {
            if t != "bert" {
                return bad(format!("model_type `{t}` is not `bert`"));
            }
        }
        for (name, v) in [
            ("vocab_size", self.vocab_size),
            ("hidden_size", self.hidden_size),
            ("num_hidden_layers", self.num_hidden_layers),
            ("num_attention_heads", self.num_attention_heads),
            ("intermediate_size", self.intermediate_size),
            ("max_position_embeddings", self.max_position_embeddings),
            ("type_vocab_size", self.type_vocab_size),
        ] {
            if v == 0 {
                return bad(format!("{name} is 0"));
            }
        }
        if !self.hidden_size.is_multiple_of(self.num_attention_heads) {
            return bad(format!("hidden_size {} is not divisible by {} attention heads", self.hidden_size, self.num_attention_heads));
        }
        if self.hidden_act != "gelu" {
            return bad(format!("hidden_act `{}` is not supported (only `gelu`, the exact erf GELU)", self.hidden_act));
        }
        if self.position_embedding_type != "absolute" {
            return bad(format!("position_embedding_type `{}` is not supported (only `absolute`)", self.position_embedding_type));
        }
        if !(self.layer_norm_eps.is_finite() && self.layer_norm_eps > 0.0) {
            return bad(format!("layer_norm_eps {} is not a positive number", self.layer_norm_eps));
        }
        Ok(())
    }

    /// Width of one attention head.
    pub fn head_dim(&self) -> usize {
        self.hidden_size / self.num_attention_heads
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINILM: &str = r#"{"_name_or_path": "nreimers/MiniLM-L6-H384-uncased", "architectures": ["BertModel"],
        "attention_probs_dropout_prob": 0.1, "gradient_checkpointing": false, "hidden_act": "gelu",
        "hidden_dropout_prob": 0.1, "hidden_size": 384, "initializer_range": 0.02, "intermediate_size": 1536,
        "layer_norm_eps": 1e-12, "max_position_embeddings": 512, "model_type": "bert", "num_attention_heads": 12,
        "num_hidden_layers": 6, "pad_token_id": 0, "position_embedding_type": "absolute",
        "transformers_version": "4.8.2", "type_vocab_size": 2, "use_cache": true, "vocab_size": 30522}"#;

    #[test]
    fn parses_the_minilm_config() {
        let cfg = BertConfig::from_json_bytes(MINILM.as_bytes()).unwrap();
        assert_eq!(cfg, BertConfig::minilm_l6_h384());
        assert_eq!(cfg.head_dim(), 32);
    }

    #[test]
    fn bad_configs_are_named_errors() {
        let with = |k: &str, v: serde_json::Value| {
            let mut j: serde_json::Value = serde_json::from_str(MINILM).unwrap();
            j[k] = v;
            BertConfig::from_json_bytes(j.to_string().as_bytes()).unwrap_err().to_string()
        };
        assert!(with("hidden_act", "gelu_new".into()).contains("hidden_act `gelu_new`"));
        assert!(with("num_attention_heads", 5.into()).contains("not divisible by 5"));
        assert!(with("position_embedding_type", "relative_key".into()).contains("relative_key"));
        assert!(with("model_type", "roberta".into()).contains("roberta"));
        assert!(with("num_hidden_layers", 0.into()).contains("num_hidden_layers is 0"));
        assert!(with("hidden_size", "big".into()).starts_with("config.json"));
        let e = BertConfig::from_json_bytes(b"{\"hidden_size\": 384").unwrap_err();
        assert!(matches!(e, Error::Config(_)), "{e}");
        let e = BertConfig::from_json_bytes(b"{}").unwrap_err().to_string();
        assert!(e.contains("missing field"), "{e}");
    }
}
