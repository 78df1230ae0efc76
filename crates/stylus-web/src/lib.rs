//! Browser WASM exports (wasm-bindgen): the SD1.5 CLIP tokenizer and the offline composer (the same
//! `stylus-core` logic as the worker, over a cached index bundle). The WebGPU `Generator` joins here.

use wasm_bindgen::prelude::*;

#[cfg(feature = "engine")]
pub mod engine;
#[cfg(feature = "engine")]
pub mod generator;

/// Installs a panic hook that prints Rust panics to the browser console (called once on load).
#[wasm_bindgen(start)]
pub fn start() {
    #[cfg(target_arch = "wasm32")]
    console_error_panic_hook::set_once();
}

/// SD1.5's CLIP tokenizer, loaded from the bytes of a `tokenizer.json`.
#[wasm_bindgen]
pub struct Tokenizer {
    inner: stylus_sd::ClipTokenizer,
}

#[wasm_bindgen]
impl Tokenizer {
    /// Builds the tokenizer; throws a JS error with a readable message on a bad file.
    #[wasm_bindgen(constructor)]
    pub fn new(tokenizer_json: &[u8]) -> Result<Tokenizer, JsError> {
        Ok(Tokenizer { inner: stylus_sd::ClipTokenizer::from_json_bytes(tokenizer_json)? })
    }

    /// The 77-id window the text encoder consumes (bos, tokens, eos, eos padding).
    pub fn encode(&self, prompt: &str) -> Result<Vec<u32>, JsError> {
        Ok(self.inner.encode(prompt)?.ids)
    }

    /// All ids with bos/eos and no window (for checking truncation).
    #[wasm_bindgen(js_name = encodeRaw)]
    pub fn encode_raw(&self, prompt: &str) -> Result<Vec<u32>, JsError> {
        Ok(self.inner.encode_raw(prompt)?)
    }
}

/// The composer over an index bundle, for offline mode (same answers as the worker).
#[wasm_bindgen]
pub struct Composer {
    index: stylus_core::Index,
}

#[wasm_bindgen]
impl Composer {
    /// Loads an index bundle (the joined shards); throws on a wrong, corrupt or truncated bundle.
    #[wasm_bindgen(constructor)]
    pub fn new(bundle: &[u8]) -> Result<Composer, JsError> {
        Ok(Composer { index: stylus_core::Index::from_bundle(bundle)? })
    }

    /// Loads an index from the files its manifest (`OUT.json`) lists, in order: the bundle itself,
    /// or its shards OUT.0, OUT.1, ….
    #[wasm_bindgen(js_name = fromParts)]
    pub fn from_parts(parts: Vec<js_sys::Uint8Array>) -> Result<Composer, JsError> {
        let parts: Vec<Vec<u8>> = parts.iter().map(|s| s.to_vec()).collect();
        Composer::new(&stylus_core::bundle::assemble(&parts)?)
    }

    /// Number of adapters in the index.
    #[wasm_bindgen(getter)]
    pub fn adapters(&self) -> usize {
        self.index.len()
    }

    /// The retriever alone: the `k` best adapters for a text as JSON `[[id, score], …]` (hybrid dense +
    /// BM25 when the index has vectors). For benchmarks and debugging.
    pub fn search(&self, text: &str, k: usize) -> String {
        serde_json::to_string(&self.index.search(text, k.min(1000))).unwrap_or_default()
    }

    /// Composes a JSON request (the worker's `POST /v1/compose` body) into the JSON response.
    /// Errors are thrown as `Error` objects whose message starts with the stable code, e.g.
    /// `prompt_empty: the prompt is empty`.
    pub fn compose(&self, request_json: &str) -> Result<String, JsError> {
        let coded = |e: stylus_core::Error| JsError::new(&format!("{}: {e}", e.code()));
        let req = stylus_core::ComposeRequest::from_json(request_json.as_bytes()).map_err(coded)?;
        let res = self.index.compose(&req).map_err(coded)?;
        serde_json::to_string(&res).map_err(|e| JsError::new(&e.to_string()))
    }
}
