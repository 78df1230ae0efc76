//! Dense retrieval: the WordPiece tokenizer ([`wordpiece`]), the static embedder distilled from
//! all-MiniLM-L6-v2 ([`static_embed`], with [`pca`]), nearest-neighbour search ([`ann`], inner loops in [`kernels`]) and the hybrid
//! dense + BM25 fusion ([`hybrid`]). Pure code: it builds for wasm32 and runs in the worker.

pub mod ann;
pub mod hybrid;
pub mod kernels;
pub mod pca;
pub mod static_embed;
pub mod wordpiece;

pub use ann::{Ann, ExactIndex, Int8Index};
pub use static_embed::{DistillOptions, StaticEmbedder, Weighting};
pub use wordpiece::WordPiece;

/// Failures of building or loading an embedder.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EmbedError {
    #[error("bad vocabulary: {0}")]
    Vocab(String),
    #[error("bad shape: {0}")]
    Shape(String),
    #[error("bad embedder table: {0}")]
    Format(String),
}

/// Scales `v` to unit length (leaves an all-zero vector as it is).
pub fn l2_normalize(v: &mut [f32]) {
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if n > 0.0 && n.is_finite() {
        v.iter_mut().for_each(|x| *x /= n);
    }
}

/// The reference's card text, `Title; Description; Tags` (trigger words are not embedded, as in
/// Stylus); a card without a description contributes its title and tags only. The static embedder's
/// IDF weights are distilled over it ([`DistillOptions`]), and [`DenseText::Reference`] embeds it.
pub fn card_text(card: &crate::Card) -> String {
    format!("{}; {}; {}", card.name, card.description.as_deref().unwrap_or(""), card.tags.join(", "))
}

/// Which text of a card its dense vector is embedded from.
///
/// Measured on the shared catalog (benches/retrieval_quality.py, BENCHMARKS.md "Retrieval quality",
/// fused with both BM25 signals): embedding `Title; Tags` instead of the reference's text raised COCO
/// silver R@10 from 0.56 to 0.61 and R@150 from 0.78 to 0.84, known-item R@10 from 0.65 to 0.75 and
/// hard known-item R@10 from 0.29 to 0.39. The published descriptions are mostly usage notes,
/// thanks and links (the reference embeds GPT-refined ones); the title and tags say what an adapter
/// draws. Descriptions still count in the lexical signal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DenseText {
    /// `Title; Tags` (the default).
    #[default]
    TitleTags,
    /// `Title; Description; Tags`, the reference's text ([`card_text`]): for catalogs whose
    /// descriptions were refined (`stylus index build --llm-refiner`).
    Reference,
}

impl DenseText {
    /// The text embedded for `card`.
    pub fn of(self, card: &crate::Card) -> String {
        match self {
            DenseText::TitleTags => format!("{}; {}", card.name, card.tags.join(", ")),
            DenseText::Reference => card_text(card),
        }
    }

    /// From its name: `title-tags` or `reference`.
    pub fn parse(name: &str) -> Result<Self, String> {
        match name {
            "title-tags" => Ok(DenseText::TitleTags),
            "reference" => Ok(DenseText::Reference),
            _ => Err(format!("unknown dense text {name:?}: expected title-tags or reference")),
        }
    }
}
