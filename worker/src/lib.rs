//! Edge worker: HTTP routes over the compose library. `api` is plain Rust (tested natively);
//! `glue` binds it to workers-rs and only exists on wasm32.

pub mod api;
#[cfg(target_arch = "wasm32")]
mod glue;
