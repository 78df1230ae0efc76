//! CLIP BPE tokenizer (SD1.5's `tokenizer/`), through the `tokenizers` crate with its pure-Rust
//! regex backend so native and wasm32 produce identical ids; 77-token windows as the SD pipeline
//! feeds them to the text encoder (bos + 75 tokens + eos, padded with eos).

use tokenizers::Tokenizer;

use crate::Error;

/// Token ids for one prompt, ready for the text encoder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenWindow {
    /// Exactly `max_len` ids: bos, up to `max_len - 2` prompt tokens, eos, then eos padding.
    pub ids: Vec<u32>,
    /// Number of prompt tokens (without bos/eos) before truncation.
    pub prompt_tokens: usize,
    /// Prompt tokens dropped because the window is full (0 when the prompt fits).
    pub truncated: usize,
}

/// SD1.5's CLIP tokenizer.
pub struct ClipTokenizer {
    inner: Tokenizer,
    bos: u32,
    eos: u32,
    max_len: usize,
}

impl ClipTokenizer {
    /// Window length of SD1.x text encoders.
    pub const MAX_LEN: usize = 77;

    /// Loads a `tokenizer.json` (as written by `CLIPTokenizerFast.save_pretrained`).
    pub fn from_json_bytes(bytes: &[u8]) -> Result<Self, Error> {
        let inner = Tokenizer::from_bytes(bytes).map_err(|e| Error::Tokenizer(e.to_string()))?;
        let id = |t: &str| inner.token_to_id(t).ok_or_else(|| Error::Tokenizer(format!("vocabulary has no {t}")));
        let bos = id("<|startoftext|>")?;
        let eos = id("<|endoftext|>")?;
        Ok(ClipTokenizer { inner, bos, eos, max_len: Self::MAX_LEN })
    }

    pub fn bos(&self) -> u32 {
        self.bos
    }
    pub fn eos(&self) -> u32 {
        self.eos
    }

    /// The full encoding with bos/eos and no length limit (what `tokenizer.json` alone produces).
    pub fn encode_raw(&self, prompt: &str) -> Result<Vec<u32>, Error> {
        let enc = self.inner.encode(prompt, true).map_err(|e| Error::Tokenizer(e.to_string()))?;
        Ok(enc.get_ids().to_vec())
    }

    /// One 77-token window: truncates (and reports how much) and pads with eos, as the SD1.5
    /// pipeline's `CLIPTokenizer(padding="max_length", truncation=True)` does.
    pub fn encode(&self, prompt: &str) -> Result<TokenWindow, Error> {
        let raw = self.encode_raw(prompt)?;
        let body: &[u32] = match raw.as_slice() {
            [b, mid @ .., e] if *b == self.bos && *e == self.eos => mid,
            other => other,
        };
        let keep = body.len().min(self.max_len - 2);
        let mut ids = Vec::with_capacity(self.max_len);
        ids.push(self.bos);
        ids.extend_from_slice(&body[..keep]);
        ids.push(self.eos);
        ids.resize(self.max_len, self.eos);
        Ok(TokenWindow { ids, prompt_tokens: body.len(), truncated: body.len() - keep })
    }
}
