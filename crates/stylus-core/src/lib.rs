//! Stylus compose logic shared by the native CLI, the Cloudflare worker and the browser: adapter cards,
//! catalog ingest and refinement, policy filters, retrieval (BM25 over card fields and example prompts,
//! fused with a static embedder's int8 vectors: [`embed`], [`dense`]), the composer and index bundles; also
//! the pure parts of the CLI's live catalog fetcher ([`fetch`]), optional LLM refiner ([`llm_refine`]) and
//! optional LLM composer ([`llm_compose`]).
//! No I/O and no clock: functions take bytes or structs and return structs, so the crate builds for
//! wasm32-unknown-unknown unchanged.
//!
//! ```
//! use stylus_core::{ingest, ComposeRequest, Index, Policy};
//! let line = concat!(r#"{"id": 1, "name": "Fox Style", "tags": ["style"], "example_prompts": ["a fox"], "#,
//!                    r#""latest_version": {"baseModel": "SD 1.5", "trainedWords": []}}"#);
//! let (cards, issues) = ingest::civitai_jsonl(line.as_bytes());
//! assert!(issues.is_empty());
//! let (cards, _report) = Policy::default().apply(cards)?;
//! let index = Index::from_bundle(&Index::build(cards)?.to_bundle())?;
//! let res = index.compose(&ComposeRequest::new("a fox in a forest"))?;
//! assert_eq!(res.topics[0].adapters[0].id, 1);
//! # Ok::<(), stylus_core::Error>(())
//! ```

pub mod bundle;
pub mod card;
pub mod compose;
pub mod dense;
pub mod embed;
pub mod fetch;
pub mod ingest;
pub mod lexical;
pub mod llm_compose;
pub mod llm_refine;
pub mod masks;
pub mod policy;
pub mod refine;
pub mod store;
pub mod synth;
pub mod text;
pub mod topics;

pub use card::{Card, Category, Stats};
pub use compose::{ActiveAdapter, ChosenAdapter, ComposeOptions, ComposeRequest, ComposeResponse, ComposedImage, Timings, Topic};
pub use ingest::IngestIssue;
pub use lexical::{Bm25, EMBEDDER_ID};
pub use masks::MaskMode;
pub use policy::{Filter, Policy, PolicyReport};
pub use store::{CardStore, CardView};

/// Every failure of this crate. [`Error::code`] gives a stable machine-readable code.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Error {
    #[error("the prompt is empty")]
    PromptEmpty,
    #[error("the prompt has {chars} characters; at most {max} are allowed")]
    PromptTooLong { chars: usize, max: usize },
    #[error("the negative prompt has {chars} characters; at most {max} are allowed")]
    NegativePromptTooLong { chars: usize, max: usize },
    #[error("options.debias_suffix has {chars} characters; at most {max} are allowed")]
    DebiasSuffixTooLong { chars: usize, max: usize },
    #[error("options.top_k is {0}; it must be between 1 and 1000")]
    TopKOutOfRange(u32),
    #[error("num_images is {0}; it must be between 1 and 64")]
    NumImagesOutOfRange(u32),
    #[error("options.scale is {0}; it must be a number between 0 and 2")]
    ScaleOutOfRange(f32),
    #[error("options.max_per_topic is {0}; it must be at most 8")]
    MaxPerTopicOutOfRange(u32),
    #[error("options.min_coverage is {0}; it must be a number between 0 and 1")]
    MinCoverageOutOfRange(f32),
    #[error("invalid compose request: {0}")]
    InvalidRequest(String),
    #[error("empty catalog: {0}")]
    EmptyCatalog(String),
    #[error("card id {0} appears twice in the catalog")]
    DuplicateCard(u64),
    #[error("the catalog is too large for one index: {0}")]
    CatalogTooLarge(String),
    #[error("not a Stylus index bundle (bad magic bytes)")]
    BundleBadMagic,
    #[error("index bundle version {found} is not supported (this build reads version {supported}); rebuild the bundle")]
    BundleVersion { found: u32, supported: u32 },
    #[error("index bundle was built for embedder {found:?}; this build needs {expected:?}")]
    BundleEmbedder { found: String, expected: String },
    #[error("index bundle is truncated: {found} of {expected} bytes")]
    BundleTruncated { expected: u64, found: u64 },
    #[error("index bundle is corrupt: content sha256 does not match its header")]
    BundleChecksum,
    #[error("index bundle is corrupt: {0}")]
    BundleCorrupt(String),
    #[error("invalid bundle shard: {0}")]
    ShardInvalid(String),
    #[error("bundle shard {index} of {count} is missing")]
    ShardMissing { index: u32, count: u32 },
    #[error("invalid catalog query: {0}")]
    FetchQuery(String),
    #[error("invalid catalog page: {0}")]
    FetchPage(String),
    #[error("invalid fetch state: {0}")]
    FetchState(String),
    #[error("catalog fetch failed: {0}")]
    FetchFailed(String),
    #[error("invalid LLM refiner reply: {0}")]
    LlmReply(String),
    #[error("invalid LLM refiner cache: {0}")]
    LlmCache(String),
    #[error("invalid LLM composer reply: {0}")]
    LlmComposeReply(String),
}

impl Error {
    /// Stable code for APIs ("prompt_empty", "top_k_out_of_range", ...).
    pub fn code(&self) -> &'static str {
        match self {
            Error::PromptEmpty => "prompt_empty",
            Error::PromptTooLong { .. } => "prompt_too_long",
            Error::NegativePromptTooLong { .. } => "negative_prompt_too_long",
            Error::DebiasSuffixTooLong { .. } => "debias_suffix_too_long",
            Error::TopKOutOfRange(_) => "top_k_out_of_range",
            Error::NumImagesOutOfRange(_) => "num_images_out_of_range",
            Error::ScaleOutOfRange(_) => "scale_out_of_range",
            Error::MaxPerTopicOutOfRange(_) => "max_per_topic_out_of_range",
            Error::MinCoverageOutOfRange(_) => "min_coverage_out_of_range",
            Error::InvalidRequest(_) => "invalid_request",
            Error::EmptyCatalog(_) => "empty_catalog",
            Error::DuplicateCard(_) => "duplicate_card",
            Error::CatalogTooLarge(_) => "catalog_too_large",
            Error::BundleBadMagic => "bundle_bad_magic",
            Error::BundleVersion { .. } => "bundle_version",
            Error::BundleEmbedder { .. } => "bundle_embedder",
            Error::BundleTruncated { .. } => "bundle_truncated",
            Error::BundleChecksum => "bundle_checksum",
            Error::BundleCorrupt(_) => "bundle_corrupt",
            Error::ShardInvalid(_) => "shard_invalid",
            Error::ShardMissing { .. } => "shard_missing",
            Error::FetchQuery(_) => "fetch_query",
            Error::FetchPage(_) => "fetch_page",
            Error::FetchState(_) => "fetch_state",
            Error::FetchFailed(_) => "fetch_failed",
            Error::LlmReply(_) => "llm_reply",
            Error::LlmCache(_) => "llm_cache",
            Error::LlmComposeReply(_) => "llm_compose_reply",
        }
    }

    /// Whether the error is the caller's request (HTTP 4xx) rather than the catalog or bundle.
    pub fn is_request_error(&self) -> bool {
        matches!(
            self,
            Error::PromptEmpty
                | Error::PromptTooLong { .. }
                | Error::NegativePromptTooLong { .. }
                | Error::DebiasSuffixTooLong { .. }
                | Error::TopKOutOfRange(_)
                | Error::NumImagesOutOfRange(_)
                | Error::ScaleOutOfRange(_)
                | Error::MaxPerTopicOutOfRange(_)
                | Error::MinCoverageOutOfRange(_)
                | Error::InvalidRequest(_)
        )
    }
}

/// A searchable catalog: cards (kept encoded, [`CardStore`]) plus their BM25 index (document `i` is
/// [`Index::card`]`(i)`).
#[derive(Debug, Clone)]
pub struct Index {
    cards: CardStore,
    lex: Bm25,
    /// Card vectors and the query embedder, when the index was built with one.
    dense: Option<dense::Dense>,
    /// BM25 over the cards' example prompts, when any card has one.
    examples: Option<Bm25>,
    fusion: embed::hybrid::Fusion,
}

impl Index {
    /// Indexes cards (descriptions, when present, are indexed too). Fails on an empty catalog or a
    /// repeated id.
    pub fn build(cards: Vec<Card>) -> Result<Self, Error> {
        if cards.is_empty() {
            return Err(Error::EmptyCatalog("no cards to index".into()));
        }
        let lex = Bm25::build(cards.iter().map(lexical::card_terms));
        let examples = cards.iter().any(|c| !c.example_prompts.is_empty()).then(|| Bm25::build(cards.iter().map(lexical::example_terms)));
        Self::from_parts(CardStore::build(&cards)?, lex)?.with_examples(examples)
    }

    pub(crate) fn from_parts(cards: CardStore, lex: Bm25) -> Result<Self, Error> {
        if cards.is_empty() {
            return Err(Error::EmptyCatalog("no cards to index".into()));
        }
        if lex.num_docs() != cards.len() {
            return Err(Error::BundleCorrupt(format!("{} documents for {} cards", lex.num_docs(), cards.len())));
        }
        Ok(Index { cards, lex, dense: None, examples: None, fusion: embed::hybrid::Fusion::default() })
    }

    /// [`Index::build`] plus dense retrieval: every card embedded with `embedder` from its `text`,
    /// queries fused with BM25. With `free_text` false, descriptions and example prompts are dropped
    /// after embedding: the postings and the bundle hold factual fields only (what a published demo
    /// index may carry); vectors embedded from [`embed::DenseText::Reference`] still reflect the
    /// descriptions.
    pub fn build_dense(
        cards: Vec<Card>,
        embedder: embed::StaticEmbedder,
        fusion: embed::hybrid::Fusion,
        text: embed::DenseText,
        free_text: bool,
    ) -> Result<Self, Error> {
        fusion.validate().map_err(Error::InvalidRequest)?;
        let d = dense::Dense::build(&cards, embedder, text);
        let cards = if free_text { cards } else { cards.into_iter().map(Card::without_description).collect() };
        let ix = Self::build(cards)?.with_dense(Some(d))?;
        Ok(Index { fusion, ..ix })
    }

    pub(crate) fn with_examples(mut self, e: Option<Bm25>) -> Result<Self, Error> {
        if let Some(e) = &e {
            if e.num_docs() != self.cards.len() {
                return Err(Error::BundleCorrupt(format!("{} example-prompt documents for {} cards", e.num_docs(), self.cards.len())));
            }
        }
        self.examples = e;
        Ok(self)
    }

    pub(crate) fn with_fusion(mut self, f: embed::hybrid::Fusion) -> Result<Self, Error> {
        f.validate().map_err(Error::BundleCorrupt)?;
        self.fusion = f;
        Ok(self)
    }

    /// The fusion weights retrieval uses.
    pub fn fusion(&self) -> embed::hybrid::Fusion {
        self.fusion
    }

    /// The example-prompt BM25 index, when there is one.
    pub fn examples(&self) -> Option<&Bm25> {
        self.examples.as_ref()
    }

    pub(crate) fn with_dense(mut self, d: Option<dense::Dense>) -> Result<Self, Error> {
        if let Some(d) = &d {
            if d.len() != self.cards.len() {
                return Err(Error::BundleCorrupt(format!("{} card vectors for {} cards", d.len(), self.cards.len())));
            }
        }
        self.dense = d;
        Ok(self)
    }

    /// The dense half, when there is one.
    pub fn dense(&self) -> Option<&dense::Dense> {
        self.dense.as_ref()
    }

    /// Retrieval of the `k` best documents for a text: the [`Fusion`](embed::hybrid::Fusion) of dense
    /// cosine (when the index has vectors), BM25 over card fields and BM25 over example prompts (when
    /// cards had them); BM25 alone for an index with neither. `(document, score)`, best first.
    pub fn retrieve(&self, query: &str, k: usize) -> Vec<(u32, f32)> {
        self.retrieve_with_terms(query, &text::terms(query), k)
    }

    /// [`Index::retrieve`] with the BM25 terms given (the composer passes its topics' terms).
    pub(crate) fn retrieve_with_terms(&self, query: &str, terms: &[String], k: usize) -> Vec<(u32, f32)> {
        use embed::hybrid::{fuse, Signal};
        if self.dense.is_none() && self.examples.is_none() {
            return self.lex.search(terms, k);
        }
        let f = self.fusion;
        let depth = f.depth.max(k);
        // every document's BM25 score stays readable until fusion is done (no per-document postings search)
        let lex = self.lex.accumulate(&self.lex.query(terms));
        let ex = self.examples.as_ref().map(|e| e.accumulate(&e.query(terms)));
        let mut signals = vec![Signal { hits: lex.top(depth), score: Box::new(|doc| lex.score(doc)), weight: f.lexical }];
        if let Some(ex) = &ex {
            signals.push(Signal { hits: ex.top(depth), score: Box::new(move |doc| ex.score(doc)), weight: f.examples });
        }
        if let Some(d) = &self.dense {
            let q = d.embedder.embed(query);
            let hits = embed::Ann::search(&d.vectors, &q, depth);
            signals.push(Signal { hits, score: Box::new(move |doc| d.vectors.score(&q, doc as usize)), weight: f.dense });
        }
        signals.retain(|s| s.weight > 0.0);
        fuse(&signals, k)
    }

    /// Loads a bundle made by [`Index::to_bundle`] (checks magic, version, embedder, sha256).
    pub fn from_bundle(bytes: &[u8]) -> Result<Self, Error> {
        bundle::read(bytes)
    }

    /// The bundle of this index without card descriptions (deterministic bytes).
    pub fn to_bundle(&self) -> Vec<u8> {
        bundle::write(self, false)
    }

    /// The bundle of this index, card descriptions included.
    pub fn to_bundle_with_descriptions(&self) -> Vec<u8> {
        bundle::write(self, true)
    }

    /// Composes adapters for a request.
    pub fn compose(&self, req: &ComposeRequest) -> Result<ComposeResponse, Error> {
        compose::compose(self, req, None)
    }

    /// [`Index::compose`] with per-stage timings read from `now` (milliseconds, e.g. `performance.now()`).
    pub fn compose_timed(&self, req: &ComposeRequest, now: &dyn Fn() -> f64) -> Result<ComposeResponse, Error> {
        compose::compose(self, req, Some(now))
    }

    /// The card with a model id, decoded.
    pub fn get(&self, id: u64) -> Option<Card> {
        self.cards.get(id).map(|c| c.to_card())
    }

    /// The document number of a model id.
    pub fn doc(&self, id: u64) -> Option<u32> {
        self.cards.doc(id)
    }

    /// Document `doc` as a borrowed view (cheap: no allocation; [`CardView::to_card`] decodes it).
    pub fn card(&self, doc: u32) -> Option<CardView<'_>> {
        ((doc as usize) < self.cards.len()).then(|| self.cards.card(doc))
    }

    /// Every card as a view, in document order.
    pub fn cards(&self) -> impl ExactSizeIterator<Item = CardView<'_>> + '_ {
        self.cards.iter()
    }

    /// The encoded cards (hot fields by document: id, category, nsfw, downloads, weight).
    pub fn store(&self) -> &CardStore {
        &self.cards
    }

    pub fn lexical(&self) -> &Bm25 {
        &self.lex
    }

    pub fn len(&self) -> usize {
        self.cards.len()
    }

    pub fn is_empty(&self) -> bool {
        self.cards.is_empty()
    }

    /// [`Index::retrieve`] as `(model id, score)`, best first.
    pub fn search(&self, query: &str, k: usize) -> Vec<(u64, f32)> {
        self.retrieve(query, k).into_iter().map(|(d, s)| (self.cards.id(d), s)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_lookup_and_errors() {
        assert_eq!(Index::build(Vec::new()).unwrap_err().code(), "empty_catalog");
        let err = Index::build(vec![Card::new(1, "a"), Card::new(1, "b")]).unwrap_err();
        assert_eq!((err.code(), err.to_string().as_str()), ("duplicate_card", "card id 1 appears twice in the catalog"));
        let ix = Index::build(vec![Card::new(5, "Neon Lights"), Card::new(9, "Fox")]).unwrap();
        assert_eq!((ix.len(), ix.is_empty()), (2, false));
        assert_eq!(ix.get(9).map(|c| c.name), Some("Fox".to_string()));
        assert_eq!((ix.doc(9), ix.card(1).map(|c| c.name()), ix.card(2).is_none()), (Some(1), Some("Fox"), true));
        assert!(ix.get(1).is_none() && ix.doc(1).is_none());
        assert_eq!(ix.search("neon light", 3)[0].0, 5);
        assert!(Error::PromptEmpty.is_request_error() && !Error::BundleChecksum.is_request_error());
    }
}
