//! The model's WordPiece tokenizer (`tokenizer.json`, HF `BertTokenizerFast`) through the
//! `tokenizers` crate, set up as sentence-transformers calls it: `[CLS] … [SEP]`, truncation to
//! `max_seq_length` tokens (special tokens included), no padding (batches are padded by the caller).
//! The file's own truncation (128) and fixed padding (128) are replaced.

use tokenizers::{Tokenizer, TruncationParams};

use crate::Error;

/// The WordPiece tokenizer with sentence-transformers' truncation.
pub struct WordPiece {
    inner: Tokenizer,
    vocab: Vec<String>,
    max_len: usize,
    cls: u32,
    sep: u32,
}

impl WordPiece {
    /// Loads `tokenizer.json`; `max_len` is the truncation length in tokens (≥ 2).
    pub fn from_json_bytes(bytes: &[u8], max_len: usize) -> Result<Self, Error> {
        let terr = |e: &dyn std::fmt::Display| Error::Tokenizer(e.to_string());
        let mut inner = Tokenizer::from_bytes(bytes).map_err(|e| terr(&e))?;
        if max_len < 2 {
            return Err(Error::Input(format!("max_seq_length {max_len} leaves no room for [CLS] and [SEP]")));
        }
        inner.with_padding(None);
        inner.with_truncation(Some(TruncationParams { max_length: max_len, ..Default::default() })).map_err(|e| terr(&e))?;
        let id = |t: &str| inner.token_to_id(t).ok_or_else(|| Error::Tokenizer(format!("the vocabulary has no {t}")));
        let (cls, sep) = (id("[CLS]")?, id("[SEP]")?);
        let map = inner.get_vocab(true);
        let mut vocab = vec![None; map.len()];
        for (tok, &i) in &map {
            match vocab.get_mut(i as usize) {
                Some(slot @ None) => *slot = Some(tok.clone()),
                _ => return Err(Error::Tokenizer(format!("token ids are not 0..{} without gaps (id {i} of `{tok}`)", map.len()))),
            }
        }
        let vocab = vocab.into_iter().collect::<Option<Vec<_>>>().ok_or_else(|| Error::Tokenizer("token ids have gaps".into()))?;
        Ok(WordPiece { inner, vocab, max_len, cls, sep })
    }

    /// Ids of one text: `[CLS]`, at most `max_len - 2` WordPiece tokens, `[SEP]`.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>, Error> {
        let enc = self.inner.encode(text, true).map_err(|e| Error::Tokenizer(e.to_string()))?;
        Ok(enc.get_ids().to_vec())
    }

    /// The vocabulary strings in id order (`[PAD]`, …, `[CLS]`, …, `##s`, …).
    pub fn vocab(&self) -> &[String] {
        &self.vocab
    }

    pub fn max_len(&self) -> usize {
        self.max_len
    }

    pub fn cls(&self) -> u32 {
        self.cls
    }

    pub fn sep(&self) -> u32 {
        self.sep
    }
}
