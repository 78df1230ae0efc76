//! The dense half of an [`Index`](crate::Index): the static embedder that embeds queries, every card's
//! int8 vector ([`Int8Index`]), plus its bundle section. Cards are embedded from the text
//! [`DenseText`] picks (`Title; Tags` by default, or the reference's `Title; Description; Tags`) when
//! the index is built, so a bundle published without descriptions still searches with them.
//!
//! Section layout (little-endian): `embedder table (header.embedder_bytes) | scales f32 × cards |
//! codes i8 × cards × dim`.

use crate::embed::{Ann, DenseText, Int8Index, StaticEmbedder};
use crate::{Card, Error};
use serde::{Deserialize, Serialize};

/// What a bundle's header says of its dense section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DenseHeader {
    /// The query embedder's id (e.g. "static-minilm-l6-v2-d256").
    pub embedder: String,
    pub dim: u32,
    /// sha256 of the embedder table stored in the section; a bundle is refused when they differ.
    pub embedder_sha256: String,
    pub embedder_bytes: u64,
    pub vectors_bytes: u64,
}

/// Embedder and card vectors.
#[derive(Debug, Clone)]
pub struct Dense {
    pub embedder: StaticEmbedder,
    pub vectors: Int8Index,
}

impl Dense {
    /// Embeds every card (in order) with `embedder`, from its `text`.
    pub fn build(cards: &[Card], embedder: StaticEmbedder, text: DenseText) -> Dense {
        let dim = embedder.dim();
        let mut rows = Vec::with_capacity(cards.len() * dim);
        for c in cards {
            rows.extend(embedder.embed(&text.of(c)));
        }
        Dense { vectors: Int8Index::quantize(dim, &rows), embedder }
    }

    /// The `k` best `(doc, cosine)` for a query text.
    pub fn search(&self, query: &str, k: usize) -> Vec<(u32, f32)> {
        self.vectors.search(&self.embedder.embed(query), k)
    }

    /// Appends the section to `out`; returns the header describing it.
    pub fn write(&self, out: &mut Vec<u8>) -> DenseHeader {
        let table = self.embedder.to_bytes();
        out.extend_from_slice(&table);
        let start = out.len();
        crate::embed::ann::write_rows(out, self.vectors.scales(), self.vectors.codes());
        DenseHeader {
            embedder: self.embedder.id().to_string(),
            dim: self.embedder.dim() as u32,
            embedder_sha256: self.embedder.hash().to_string(),
            embedder_bytes: table.len() as u64,
            vectors_bytes: (out.len() - start) as u64,
        }
    }

    /// Reads a section written for `cards` cards.
    pub fn read(h: &DenseHeader, bytes: &[u8], cards: usize) -> Result<Dense, Error> {
        let bad = |m: String| Error::BundleCorrupt(format!("dense section: {m}"));
        let eb = h.embedder_bytes as usize;
        if bytes.len() as u64 != h.embedder_bytes.saturating_add(h.vectors_bytes) || eb > bytes.len() {
            return Err(bad(format!("{} bytes; the header says {} + {}", bytes.len(), h.embedder_bytes, h.vectors_bytes)));
        }
        let embedder = StaticEmbedder::from_bytes(&bytes[..eb]).map_err(|e| bad(e.to_string()))?;
        if embedder.hash() != h.embedder_sha256 || embedder.id() != h.embedder || embedder.dim() != h.dim as usize {
            return Err(Error::BundleEmbedder {
                found: format!("{} d{} sha256 {}", embedder.id(), embedder.dim(), embedder.hash()),
                expected: format!("{} d{} sha256 {}", h.embedder, h.dim, h.embedder_sha256),
            });
        }
        let v = &bytes[eb..];
        let dim = h.dim as usize;
        let (scales, codes) =
            crate::embed::ann::read_rows(v, cards, dim).ok_or_else(|| bad(format!("{} vector bytes for {cards} cards of dimension {dim}", v.len())))?;
        let vectors = Int8Index::from_parts(dim, codes, scales).map_err(bad)?;
        Ok(Dense { embedder, vectors })
    }

    /// Whether `id`/`dim`/`sha256` name this index's embedder (for callers that embed themselves).
    pub fn check_embedder(&self, id: &str, dim: usize, sha256: &str) -> Result<(), Error> {
        if self.embedder.id() == id && self.embedder.dim() == dim && self.embedder.hash() == sha256 {
            return Ok(());
        }
        Err(Error::BundleEmbedder {
            found: format!("{id} d{dim} sha256 {sha256}"),
            expected: format!("{} d{} sha256 {}", self.embedder.id(), self.embedder.dim(), self.embedder.hash()),
        })
    }

    pub fn len(&self) -> usize {
        self.vectors.len()
    }

    pub fn is_empty(&self) -> bool {
        self.vectors.is_empty()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::embed::{card_text, DistillOptions, Weighting};
    use crate::Index;

    /// A toy static embedder: a small vocabulary with a random teacher table of dimension 8.
    pub(crate) fn toy_embedder(corpus: &[String]) -> StaticEmbedder {
        let words = ["fox", "forest", "neon", "city", "light", "anime", "girl", "castle", "oil", "painting", "watercolor", "cat", "dog"];
        let mut vocab: Vec<String> = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", ";", ","].iter().map(|s| s.to_string()).collect();
        vocab.extend(words.iter().map(|s| s.to_string()));
        let mut s = 99u64;
        let teacher: Vec<f32> = (0..vocab.len() * 8)
            .map(|_| {
                s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                ((s >> 40) as f32 / (1u64 << 24) as f32) - 0.5
            })
            .collect();
        StaticEmbedder::distill(vocab, &teacher, 8, corpus, DistillOptions { dim: 6, weighting: Weighting::Idf }).unwrap()
    }

    pub(crate) fn toy_cards() -> Vec<Card> {
        let mut cards = Vec::new();
        for (i, (name, desc)) in
            [("Fox", "a fox in the forest"), ("Neon", "neon city light"), ("Anime", "anime girl"), ("Oil", "oil painting castle")].iter().enumerate()
        {
            let mut c = Card::new(i as u64 + 10, *name);
            c.description = Some(desc.to_string());
            cards.push(c);
        }
        cards
    }

    #[test]
    fn dense_bundle_round_trip_and_refusals() {
        let cards = toy_cards();
        let corpus: Vec<String> = cards.iter().map(card_text).collect();
        let e = toy_embedder(&corpus);
        let fusion = crate::embed::hybrid::Fusion { dense: 0.6, lexical: 0.4, examples: 0.0, depth: 10 };
        // the default text leaves descriptions out of the vectors: the same vectors as cards without any
        let bare: Vec<Card> = cards.iter().cloned().map(Card::without_description).collect();
        let codes = |cards: Vec<Card>, text| Index::build_dense(cards, e.clone(), fusion, text, false).unwrap().dense().unwrap().vectors.codes().to_vec();
        assert_eq!(codes(cards.clone(), DenseText::TitleTags), codes(bare.clone(), DenseText::TitleTags));
        assert_ne!(codes(cards.clone(), DenseText::Reference), codes(bare, DenseText::Reference));
        assert_eq!(DenseText::parse("title-tags"), Ok(DenseText::default()));
        assert!(DenseText::parse("titles").unwrap_err().contains("title-tags or reference"));
        let ix = Index::build_dense(cards, e.clone(), fusion, DenseText::Reference, false).unwrap();
        let bytes = ix.to_bundle();
        let back = Index::from_bundle(&bytes).unwrap();
        assert!(back.cards().all(|c| c.description().is_none()), "published bundles drop descriptions");
        let d = back.dense().unwrap();
        assert_eq!((d.len(), back.fusion(), d.embedder.hash()), (4, fusion, e.hash()));
        // with the reference text, description words still find their card after the round trip
        // (vectors were built with them)
        assert_eq!(back.search("a castle oil painting", 1)[0].0, 13);
        assert_eq!(back.retrieve("neon city", 4), ix.retrieve("neon city", 4));
        assert_eq!(Index::from_bundle(&back.to_bundle()).unwrap().to_bundle(), bytes, "deterministic");
        assert!(d.check_embedder(e.id(), e.dim(), e.hash()).is_ok());
        assert_eq!(d.check_embedder(e.id(), e.dim(), "00").unwrap_err().code(), "bundle_embedder");
        // a bundle whose table was swapped for another one (checksums recomputed) is refused
        let other = toy_embedder(&["fox fox fox".to_string()]);
        let mut h = crate::bundle::header(&bytes).unwrap().0;
        let dh = h.dense.clone().unwrap();
        let payload = &bytes[crate::bundle::header(&bytes).unwrap().1..];
        let dense_at = (h.cards_bytes + h.lexical_bytes) as usize;
        let mut p2 = payload[..dense_at].to_vec();
        let t2 = other.to_bytes();
        assert_eq!(t2.len() as u64, dh.embedder_bytes);
        p2.extend_from_slice(&t2);
        p2.extend_from_slice(&payload[dense_at + t2.len()..]);
        h.sha256 = crate::bundle::hex(&<sha2::Sha256 as sha2::Digest>::digest(&p2));
        let hj = serde_json::to_vec(&h).unwrap();
        let mut forged = bytes[..8].to_vec();
        forged.extend_from_slice(&crate::bundle::VERSION.to_le_bytes());
        forged.extend_from_slice(&(hj.len() as u32).to_le_bytes());
        forged.extend_from_slice(&hj);
        forged.extend_from_slice(&p2);
        assert_eq!(Index::from_bundle(&forged).unwrap_err().code(), "bundle_embedder");
        // truncated dense section
        assert!(Index::from_bundle(&bytes[..bytes.len() - 1]).is_err());
    }
}
