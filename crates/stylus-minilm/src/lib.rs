//! all-MiniLM-L6-v2 sentence embeddings in burn 0.22: the sentence-transformers pipeline of that
//! model (`Transformer` → `Pooling(mean)` → `Normalize`) as a port of HF transformers' `BertModel`
//! (`bert`), its WordPiece tokenizer (`tokenize`), one checkpoint-key remap table (`load`) and
//! `config.json` checks (`config`). No file I/O: callers pass the three files' bytes.
//!
//! Backend: burn 0.22 tensors carry no backend type parameter; the [`Device`] passed to
//! [`MiniLm::from_bytes`] picks the backend at run time (`cpu_device()` = burn `flex` with the default
//! feature; a wgpu device works unchanged), so the model is backend-generic by construction.
//!
//! * [`MiniLm::encode`]: texts → L2-normalised 384-d embeddings, exactly sentence-transformers'
//!   `encode` for this model (truncation to `max_seq_length` 256 from `sentence_bert_config.json`,
//!   attention-masked mean over `last_hidden_state`, `F.normalize`). Texts are batched by length.
//! * [`MiniLm::token_table`]: for every vocabulary id `t`, the un-normalised mean-pooled output for
//!   `[CLS] t [SEP]` — the model2vec-style distillation input of a static embedder.

pub mod bert;
pub mod config;
pub mod load;
pub mod nn;
pub mod tokenize;

pub use burn::tensor::Device;
use burn::tensor::{Int, Tensor, TensorData};

pub use bert::BertModel;
pub use config::BertConfig;
pub use load::{bert_params, remap_key, Mapped, ParamSpec, Weights};
pub use tokenize::WordPiece;

/// sentence-transformers' `max_seq_length` for all-MiniLM-L6-v2 (`sentence_bert_config.json`).
pub const MAX_SEQ_LENGTH: usize = 256;
/// Texts per forward pass in [`MiniLm::encode`].
pub const DEFAULT_BATCH: usize = 32;

/// The CPU device of the default build (burn's `flex` backend).
#[cfg(feature = "flex")]
pub fn cpu_device() -> Device {
    Device::flex()
}

/// Every failure of this crate; bad input gives one of these, never a panic.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("config.json: {0}")]
    Config(String),
    #[error("tokenizer.json: {0}")]
    Tokenizer(String),
    /// The weights file is not valid safetensors (truncated, bad header, …).
    #[error("model.safetensors: {0}")]
    Safetensors(String),
    #[error("checkpoint key `{key}` (module path `{path}`) is not a parameter of this BERT model")]
    UnknownKey { key: String, path: String },
    #[error("the model needs parameter `{0}`, which the checkpoint does not provide")]
    MissingKey(String),
    #[error("checkpoint keys `{first}` and `{second}` both hold parameter `{path}`")]
    DuplicateKey { first: String, second: String, path: String },
    #[error("checkpoint tensor `{key}` has shape {found:?}, the model expects {expected:?}")]
    Shape { key: String, expected: Vec<usize>, found: Vec<usize> },
    #[error("checkpoint tensor `{key}` has dtype {dtype}; only F32, F16 and BF16 are supported")]
    Dtype { key: String, dtype: String },
    #[error("invalid input: {0}")]
    Input(String),
    #[error("backend: {0}")]
    Backend(String),
}

/// all-MiniLM-L6-v2 (or any BERT sentence encoder with mean pooling) on one device.
pub struct MiniLm {
    model: BertModel,
    tokenizer: WordPiece,
    device: Device,
}

impl MiniLm {
    /// Builds the encoder from the bytes of `config.json`, `tokenizer.json` and `model.safetensors`.
    /// Every checkpoint key is checked against the remap table first (`load`).
    pub fn from_bytes(config_json: &[u8], tokenizer_json: &[u8], safetensors: &[u8], device: &Device) -> Result<Self, Error> {
        let cfg = BertConfig::from_json_bytes(config_json)?;
        let tokenizer = WordPiece::from_json_bytes(tokenizer_json, MAX_SEQ_LENGTH.min(cfg.max_position_embeddings))?;
        if tokenizer.vocab().len() != cfg.vocab_size {
            return Err(Error::Tokenizer(format!("{} tokens, config.json says vocab_size {}", tokenizer.vocab().len(), cfg.vocab_size)));
        }
        let mut w = Weights::from_safetensors(&cfg, safetensors, device)?;
        let model = BertModel::load(&cfg, &mut w)?;
        Ok(MiniLm { model, tokenizer, device: device.clone() })
    }

    /// Embedding width (384).
    pub fn dim(&self) -> usize {
        self.model.config().hidden_size
    }

    /// The WordPiece vocabulary in id order (30522 strings).
    pub fn vocab(&self) -> &[String] {
        self.tokenizer.vocab()
    }

    pub fn config(&self) -> &BertConfig {
        self.model.config()
    }

    pub fn tokenizer(&self) -> &WordPiece {
        &self.tokenizer
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Token ids of one text as [`Self::encode`] feeds them (`[CLS] … [SEP]`, at most 256).
    pub fn tokenize(&self, text: &str) -> Result<Vec<u32>, Error> {
        self.tokenizer.encode(text)
    }

    /// L2-normalised sentence embeddings, one `dim()`-vector per text, in input order.
    pub fn encode(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, Error> {
        self.encode_with(texts, DEFAULT_BATCH, &mut |_, _| {})
    }

    /// [`Self::encode`] with `batch` texts per forward pass and `progress(done, total)` after each.
    /// Texts are sorted by token count so that a batch pads little; results are in input order.
    pub fn encode_with(&self, texts: &[&str], batch: usize, progress: &mut dyn FnMut(usize, usize)) -> Result<Vec<Vec<f32>>, Error> {
        let ids = texts.iter().map(|t| self.tokenizer.encode(t)).collect::<Result<Vec<_>, _>>()?;
        self.encode_ids(&ids, batch, progress)
    }

    /// [`Self::encode_with`] on token ids (each `[CLS] … [SEP]`, at most `max_position_embeddings`).
    pub fn encode_ids(&self, ids: &[Vec<u32>], batch: usize, progress: &mut dyn FnMut(usize, usize)) -> Result<Vec<Vec<f32>>, Error> {
        let batch = batch.max(1);
        let mut order: Vec<usize> = (0..ids.len()).collect();
        order.sort_by_key(|&i| std::cmp::Reverse(ids[i].len()));
        let mut out = vec![Vec::new(); ids.len()];
        for (n, chunk) in order.chunks(batch).enumerate() {
            let rows: Vec<&[u32]> = chunk.iter().map(|&i| ids[i].as_slice()).collect();
            let pooled = self.mean_pool(&rows)?;
            for (&i, v) in chunk.iter().zip(pooled.chunks_exact(self.dim())) {
                out[i] = normalize(v);
            }
            progress((n * batch + chunk.len()).min(ids.len()), ids.len());
        }
        Ok(out)
    }

    /// Attention-masked mean of `last_hidden_state` for rows of ids (right-padded with 0 to the
    /// longest), `[rows, dim]` row-major, not normalised.
    pub fn mean_pool(&self, rows: &[&[u32]]) -> Result<Vec<f32>, Error> {
        let cfg = self.model.config();
        let (b, s) = (rows.len(), rows.iter().map(|r| r.len()).max().unwrap_or(0));
        if b == 0 {
            return Ok(Vec::new());
        }
        if rows.iter().any(|r| r.is_empty()) {
            return Err(Error::Input("an empty row of token ids".into()));
        }
        if s > cfg.max_position_embeddings {
            return Err(Error::Input(format!("{s} tokens in a row; the model takes at most {}", cfg.max_position_embeddings)));
        }
        if let Some(bad) = rows.iter().flat_map(|r| r.iter()).find(|&&t| t as usize >= cfg.vocab_size) {
            return Err(Error::Input(format!("token id {bad} is outside the vocabulary ({})", cfg.vocab_size)));
        }
        let mut flat = vec![0i64; b * s];
        let mut mask = vec![0i64; b * s];
        for (r, row) in rows.iter().enumerate() {
            for (j, &t) in row.iter().enumerate() {
                flat[r * s + j] = t as i64;
                mask[r * s + j] = 1;
            }
        }
        let padded = rows.iter().any(|r| r.len() < s);
        let ids_t = Tensor::<2, Int>::from_data(TensorData::new(flat, [b, s]), &self.device);
        let mask_t = Tensor::<2, Int>::from_data(TensorData::new(mask, [b, s]), &self.device);
        let h = self.model.forward(ids_t, padded.then(|| mask_t.clone()));
        let m = mask_t.float().reshape([b, s, 1]);
        let summed = (h * m.clone()).sum_dim(1).reshape([b, self.dim()]);
        let counts = m.sum_dim(1).reshape([b, 1]).clamp_min(1e-9);
        nn::to_vec(summed / counts)
    }

    /// The distillation table: for every vocabulary id `t` (in id order), the un-normalised mean of
    /// `last_hidden_state` over `[CLS] t [SEP]` (all three attended). `[vocab, dim]` row-major;
    /// `batch` ids per forward pass, `progress(done, vocab)` after each.
    pub fn token_table(&self, batch: usize, progress: &mut dyn FnMut(usize, usize)) -> Result<Vec<f32>, Error> {
        self.token_rows(0..self.vocab().len(), batch, progress)
    }

    /// The rows `ids` of [`Self::token_table`] (`[ids.len(), dim]`; `progress(done, ids.len())`).
    pub fn token_rows(&self, ids: std::ops::Range<usize>, batch: usize, progress: &mut dyn FnMut(usize, usize)) -> Result<Vec<f32>, Error> {
        let (v, cls, sep) = (self.vocab().len(), self.tokenizer.cls(), self.tokenizer.sep());
        if ids.end > v {
            return Err(Error::Input(format!("token ids {ids:?} exceed the vocabulary ({v})")));
        }
        let mut out = Vec::with_capacity(ids.len() * self.dim());
        let batch = batch.max(1);
        let mut start = ids.start;
        while start < ids.end {
            let end = (start + batch).min(ids.end);
            let rows: Vec<[u32; 3]> = (start as u32..end as u32).map(|t| [cls, t, sep]).collect();
            let refs: Vec<&[u32]> = rows.iter().map(|r| r.as_slice()).collect();
            out.extend(self.mean_pool(&refs)?);
            progress(end - ids.start, ids.len());
            start = end;
        }
        Ok(out)
    }
}

/// Name of the one tensor of a distilled token table file ([`token_table_safetensors`]).
pub const TOKEN_TABLE_TENSOR: &str = "token_embeddings";

/// A token table (`MiniLm::token_table`) as safetensors bytes: one F32 tensor
/// [`TOKEN_TABLE_TENSOR`] `[vocab, dim]` and the metadata
/// `{"embedder": "all-MiniLM-L6-v2", "source": "distilled [CLS] t [SEP] mean-pool"}`.
pub fn token_table_safetensors(table: &[f32], vocab: usize, dim: usize) -> Result<Vec<u8>, Error> {
    if table.len() != vocab * dim {
        return Err(Error::Input(format!("{} values for a [{vocab}, {dim}] token table", table.len())));
    }
    let bytes: Vec<u8> = table.iter().flat_map(|x| x.to_le_bytes()).collect();
    let view = safetensors::tensor::TensorView::new(safetensors::Dtype::F32, vec![vocab, dim], &bytes).map_err(|e| Error::Safetensors(e.to_string()))?;
    let meta = [("embedder", "all-MiniLM-L6-v2"), ("source", "distilled [CLS] t [SEP] mean-pool")];
    let meta = meta.into_iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    safetensors::serialize([(TOKEN_TABLE_TENSOR, view)], Some(meta)).map_err(|e| Error::Safetensors(e.to_string()))
}

/// `F.normalize(x, p=2, dim=-1)`: `x / max(‖x‖₂, 1e-12)`.
pub fn normalize(x: &[f32]) -> Vec<f32> {
    let n = x.iter().map(|v| v * v).sum::<f32>().sqrt().max(1e-12);
    x.iter().map(|v| v / n).collect()
}
