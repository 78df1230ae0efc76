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

/// The text a card is embedded from: the reference's `Title; Description; Tags` (trigger words are
/// not embedded, as in Stylus); a card without a description contributes its title and tags only.
pub fn card_text(card: &crate::Card) -> String {
    format!("{}; {}; {}", card.name, card.description.as_deref().unwrap_or(""), card.tags.join(", "))
}
