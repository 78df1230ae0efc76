//! Shared helpers for the end-to-end tests: where the committed fixtures and the shared data live.

use std::path::{Path, PathBuf};

/// `tests/fixtures/` of this repository.
pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures")
}

/// A fixture file's bytes; panics with the path when missing (fixtures are committed).
pub fn fixture(rel: &str) -> Vec<u8> {
    let p = fixtures().join(rel);
    std::fs::read(&p).unwrap_or_else(|e| panic!("fixture {}: {e}", p.display()))
}

/// `../shared/` beside the checkout (read-only data for tests and benchmarks), if present.
pub fn shared() -> Option<PathBuf> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared");
    p.is_dir().then_some(p)
}
