//! The static embedder: a WordPiece token → vector table distilled from all-MiniLM-L6-v2 in the manner
//! of model2vec (Tulkens & van Dongen 2024: the teacher's output for each token alone, PCA, frequency
//! weighting), int8 per row; a text's embedding is the L2-normalised sum of its tokens' rows. It runs
//! in microseconds anywhere (worker, browser), so the edge never runs a transformer.
//!
//! Serialized form (integers little-endian): `b"STYLUSEM" | u32 version (1) | u32 header_len | header
//! JSON | vocab (UTF-8, '\n'-separated, header.vocab_bytes) | scales f32 × vocab | rows i8 × vocab × dim`.
//! [`StaticEmbedder::hash`] is the sha256 of those bytes: index bundles record it so a bundle is never
//! queried with another table.

use super::pca::Pca;
use super::wordpiece::WordPiece;
use super::{l2_normalize, EmbedError};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub const MAGIC: &[u8; 8] = b"STYLUSEM";
pub const VERSION: u32 = 1;
/// Tokens of a text that are embedded (the rest is ignored).
pub const MAX_TOKENS: usize = 512;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StaticHeader {
    /// e.g. "static-minilm-l6-v2-d256".
    pub id: String,
    pub dim: u32,
    pub vocab: u32,
    pub vocab_bytes: u64,
    /// How the table was made (teacher, PCA, weighting), for people.
    pub source: String,
}

/// How token rows are weighted before summing (applied at distillation, folded into the rows).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Weighting {
    /// All tokens equal.
    Uniform,
    /// Smooth inverse frequency `a / (a + p(t))` with `p` the token's frequency in the given corpus.
    Sif { a: f32 },
    /// `ln(1 + N / (1 + df(t)))` over the corpus documents.
    Idf,
}

/// Distillation settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DistillOptions {
    /// Output dimension after PCA (≤ the teacher's).
    pub dim: usize,
    pub weighting: Weighting,
}

impl Default for DistillOptions {
    fn default() -> Self {
        DistillOptions { dim: 256, weighting: Weighting::Idf }
    }
}

#[derive(Debug, Clone)]
pub struct StaticEmbedder {
    header: StaticHeader,
    wp: WordPiece,
    scales: Vec<f32>,
    rows: Vec<i8>,
    hash: String,
}

impl StaticEmbedder {
    /// Distills a table: `teacher` is row-major `[vocab, teacher_dim]` (the teacher's mean-pooled output
    /// for `[CLS] t [SEP]`), `corpus` the texts token weights are counted on (the catalog's cards).
    /// Special tokens (`[PAD]`, `[CLS]`, `[SEP]`, `[MASK]`, `[UNK]`, `[unusedN]`) get zero rows.
    pub fn distill(vocab: Vec<String>, teacher: &[f32], teacher_dim: usize, corpus: &[String], opts: DistillOptions) -> Result<Self, EmbedError> {
        let wp = WordPiece::from_tokens(vocab).map_err(EmbedError::Vocab)?;
        let v = wp.len();
        if teacher_dim == 0 || teacher.len() != v * teacher_dim {
            return Err(EmbedError::Shape(format!("teacher table has {} values; expected {v} × {teacher_dim}", teacher.len())));
        }
        let pca = Pca::fit(teacher, teacher_dim, opts.dim).map_err(EmbedError::Shape)?;
        let weights = token_weights(&wp, corpus, opts.weighting);
        let (mut scales, mut rows) = (Vec::with_capacity(v), Vec::with_capacity(v * opts.dim));
        for (t, tok) in wp.tokens().iter().enumerate() {
            let special = tok.starts_with('[') && tok.ends_with(']');
            let y: Vec<f32> = if special {
                vec![0.0; opts.dim]
            } else {
                pca.project(&teacher[t * teacher_dim..(t + 1) * teacher_dim]).iter().map(|x| x * weights[t]).collect()
            };
            let (q, s) = super::ann::quantize_row(&y);
            rows.extend(q);
            scales.push(s);
        }
        let w = match opts.weighting {
            Weighting::Uniform => "uniform".to_string(),
            Weighting::Sif { a } => format!("SIF a={a}"),
            Weighting::Idf => "IDF".to_string(),
        };
        let header = StaticHeader {
            id: format!("static-minilm-l6-v2-d{}", opts.dim),
            dim: opts.dim as u32,
            vocab: v as u32,
            vocab_bytes: 0,
            source: format!(
                "all-MiniLM-L6-v2 outputs for [CLS] t [SEP], mean-pooled; PCA {teacher_dim}→{}; {w} weights over {} texts; int8 rows",
                opts.dim,
                corpus.len()
            ),
        };
        let mut e = StaticEmbedder { header, wp, scales, rows, hash: String::new() };
        let bytes = e.to_bytes();
        e = Self::from_bytes(&bytes)?;
        Ok(e)
    }

    pub fn id(&self) -> &str {
        &self.header.id
    }

    pub fn dim(&self) -> usize {
        self.header.dim as usize
    }

    /// sha256 (lowercase hex) of the serialized table.
    pub fn hash(&self) -> &str {
        &self.hash
    }

    pub fn header(&self) -> &StaticHeader {
        &self.header
    }

    pub fn tokenizer(&self) -> &WordPiece {
        &self.wp
    }

    /// The unit-length embedding of `text` (all zeros when no token has a row, e.g. empty text).
    pub fn embed(&self, text: &str) -> Vec<f32> {
        let d = self.dim();
        let mut acc = vec![0f32; d];
        for id in self.wp.encode(text, MAX_TOKENS) {
            let i = id as usize;
            let s = self.scales[i];
            if s == 0.0 {
                continue;
            }
            for (a, &c) in acc.iter_mut().zip(&self.rows[i * d..(i + 1) * d]) {
                *a += s * c as f32;
            }
        }
        l2_normalize(&mut acc);
        acc
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let vocab = self.wp.tokens().join("\n");
        let header = StaticHeader { vocab_bytes: vocab.len() as u64, ..self.header.clone() };
        let h = serde_json::to_vec(&header).unwrap_or_default();
        let mut out = Vec::with_capacity(16 + h.len() + vocab.len() + self.scales.len() * 4 + self.rows.len());
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&VERSION.to_le_bytes());
        out.extend_from_slice(&(h.len() as u32).to_le_bytes());
        out.extend_from_slice(&h);
        out.extend_from_slice(vocab.as_bytes());
        super::ann::write_rows(&mut out, &self.scales, &self.rows);
        out
    }

    /// Loads [`StaticEmbedder::to_bytes`] output; every size is checked.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, EmbedError> {
        let bad = |m: String| EmbedError::Format(m);
        if bytes.len() < 16 || &bytes[..8] != MAGIC {
            return Err(bad("not a static embedder table (bad magic)".into()));
        }
        let version = u32::from_le_bytes(bytes[8..12].try_into().unwrap_or_default());
        if version != VERSION {
            return Err(bad(format!("static embedder table version {version}; this build reads {VERSION}")));
        }
        let hl = u32::from_le_bytes(bytes[12..16].try_into().unwrap_or_default()) as usize;
        let rest = &bytes[16..];
        let hj = rest.get(..hl).ok_or_else(|| bad("truncated header".into()))?;
        let header: StaticHeader = serde_json::from_slice(hj).map_err(|e| bad(format!("header: {e}")))?;
        let (v, d) = (header.vocab as usize, header.dim as usize);
        let vb = header.vocab_bytes as usize;
        let need = hl.checked_add(vb).and_then(|x| x.checked_add(v.checked_mul(4 + d)?)).ok_or_else(|| bad("sizes overflow".into()))?;
        if d == 0 || rest.len() != need {
            return Err(bad(format!("table has {} bytes after its header; its header says {need}", rest.len())));
        }
        let vocab = std::str::from_utf8(&rest[hl..hl + vb]).map_err(|_| bad("vocabulary is not UTF-8".into()))?;
        let wp = WordPiece::from_tokens(vocab.split('\n').map(str::to_string).collect()).map_err(EmbedError::Vocab)?;
        if wp.len() != v {
            return Err(bad(format!("vocabulary has {} tokens; header says {v}", wp.len())));
        }
        let (scales, rows) = super::ann::read_rows(&rest[hl + vb..], v, d).ok_or_else(|| bad("row sizes do not match the header".into()))?;
        let hash = crate::bundle::hex(&Sha256::digest(bytes));
        Ok(StaticEmbedder { header: StaticHeader { vocab_bytes: 0, ..header }, wp, scales, rows, hash })
    }
}

/// Per-token weights counted over `corpus` with the tokenizer (unseen tokens get the largest weight).
fn token_weights(wp: &WordPiece, corpus: &[String], w: Weighting) -> Vec<f32> {
    let v = wp.len();
    match w {
        Weighting::Uniform => vec![1.0; v],
        Weighting::Sif { a } => {
            let mut tf = vec![0u64; v];
            let mut total = 0u64;
            for t in corpus {
                for id in wp.encode(t, MAX_TOKENS) {
                    tf[id as usize] += 1;
                    total += 1;
                }
            }
            tf.iter().map(|&f| a / (a + f as f32 / total.max(1) as f32)).collect()
        }
        Weighting::Idf => {
            let mut df = vec![0u32; v];
            let mut seen = vec![u32::MAX; v];
            for (di, t) in corpus.iter().enumerate() {
                for id in wp.encode(t, MAX_TOKENS) {
                    if seen[id as usize] != di as u32 {
                        seen[id as usize] = di as u32;
                        df[id as usize] += 1;
                    }
                }
            }
            let n = corpus.len() as f32;
            df.iter().map(|&f| (1.0 + n / (1.0 + f as f32)).ln()).collect()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toy() -> StaticEmbedder {
        let vocab: Vec<String> = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "fox", "forest", "neon", "city", "##s"].iter().map(|s| s.to_string()).collect();
        let teacher: Vec<f32> = (0..vocab.len() * 6).map(|i| ((i * 7919 % 23) as f32 - 11.0) / 11.0).collect();
        let corpus = vec!["fox forest".to_string(), "neon city".to_string(), "fox".to_string()];
        StaticEmbedder::distill(vocab, &teacher, 6, &corpus, DistillOptions { dim: 4, weighting: Weighting::Sif { a: 0.5 } }).unwrap()
    }

    #[test]
    fn embeds_unit_vectors_and_round_trips() {
        let e = toy();
        assert_eq!((e.dim(), e.id()), (4, "static-minilm-l6-v2-d4"));
        let v = e.embed("Foxes in the FOREST");
        assert!((v.iter().map(|x| x * x).sum::<f32>() - 1.0).abs() < 1e-5);
        assert_eq!(e.embed(""), vec![0.0; 4], "no tokens: zero vector");
        assert_eq!(e.embed("[CLS] [SEP]"), vec![0.0; 4], "special tokens have no row");
        let bytes = e.to_bytes();
        let back = StaticEmbedder::from_bytes(&bytes).unwrap();
        assert_eq!((back.hash(), back.embed("neon city")), (e.hash(), e.embed("neon city")));
        assert_eq!(back.to_bytes(), bytes, "deterministic");
    }

    #[test]
    fn bad_tables_are_refused() {
        let bytes = toy().to_bytes();
        let err = |b: &[u8]| StaticEmbedder::from_bytes(b).unwrap_err().to_string();
        assert!(err(&bytes[..bytes.len() - 1]).contains("header says"));
        assert!(err(b"NOTATABLE0000000").contains("magic"));
        let mut v = bytes.clone();
        v[8] = 9;
        assert!(err(&v).contains("version"));
        assert!(err(&bytes[..20]).contains("header"));
        let bad_teacher = StaticEmbedder::distill(vec!["[UNK]".into(), "a".into()], &[1.0; 5], 3, &[], DistillOptions::default());
        assert!(matches!(bad_teacher, Err(EmbedError::Shape(_))));
    }
}
