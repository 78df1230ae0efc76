//! Edge worker: HTTP routes over the compose library. Plain Rust, tested natively: `api` (routes,
//! replies), `assemble` (a bundle from streamed shards), `config` (vars and secrets) and `llm` (the
//! optional LLM composer's request, validation and fallback). Bound to workers-rs, wasm32 only:
//! `glue` (entry point, HTTP) and `load` (the index from static assets or R2).

pub mod api;
pub mod assemble;
pub mod config;
#[cfg(target_arch = "wasm32")]
mod glue;
pub mod llm;
#[cfg(target_arch = "wasm32")]
mod load;
