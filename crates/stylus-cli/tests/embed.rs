//! `stylus embed` and `stylus embedder distill` end to end on the real all-MiniLM-L6-v2 folder
//! (`$STYLUS_MINILM_DIR` or `~/.cache/stylus/minilm`, unpacked by `scripts/setup.sh`; absent: fails
//! under `CI=true`, skipped elsewhere): the printed embedding equals the sentence-transformers fixture,
//! the distilled file has the token table's tensor and metadata, a missing folder is refused, and so is an
//! unknown `index build --dense-text`.

#[path = "../../stylus-minilm/tests/common/mod.rs"]
mod minilm;

use std::path::{Path, PathBuf};
use std::process::Command;

fn stylus(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_stylus")).args(args).output().expect("run stylus")
}

fn ok(args: &[&str]) -> String {
    let o = stylus(args);
    assert!(o.status.success(), "stylus {args:?} failed: {}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn fixture() -> serde_json::Value {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/minilm/embeddings.json");
    serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap()
}

#[test]
fn embed_prints_the_sentence_transformers_vector() {
    let Some(dir) = minilm::model_dir() else { return };
    let dir = dir.to_str().unwrap();
    let fx = fixture();
    let case = &fx["cases"][3];
    let text = case["sentence"].as_str().unwrap();
    let out = ok(&["embed", "--model", dir, "--json", "--quiet", text, "fox"]);
    let rows: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(rows.as_array().unwrap().len(), 2);
    assert_eq!(rows[0]["tokens"].as_u64().unwrap() as usize, case["input_ids"].as_array().unwrap().len());
    let got = rows[0]["embedding"].as_array().unwrap();
    let want = case["embedding"].as_array().unwrap();
    assert_eq!(got.len(), 384);
    let d = got.iter().zip(want).map(|(g, w)| (g.as_f64().unwrap() - w.as_f64().unwrap()).abs()).fold(0.0, f64::max);
    assert!(d <= 1e-5, "max abs diff {d}");
    // Summary lines: one per text, in order.
    let out = ok(&["embed", "--model", dir, text, "fox"]);
    let lines: Vec<serde_json::Value> = out.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 2);
    assert_eq!((lines[1]["text"].as_str(), lines[1]["dim"].as_u64(), lines[1]["tokens"].as_u64()), (Some("fox"), Some(384), Some(3)));
    assert!((lines[0]["norm"].as_f64().unwrap() - 1.0).abs() < 1e-5);
    assert_eq!(lines[0]["first"].as_array().unwrap().len(), 8);
}

#[test]
fn distill_writes_the_token_table() {
    let Some(dir) = minilm::model_dir() else { return };
    let out = std::env::temp_dir().join(format!("stylus-distill-{}.safetensors", std::process::id()));
    let printed = ok(&["embedder", "distill", "--model", dir.to_str().unwrap(), "--out", out.to_str().unwrap(), "--limit", "40", "--quiet"]);
    assert!(printed.contains("distilled 40 tokens × 384"), "{printed}");
    let bytes = std::fs::read(&out).unwrap();
    std::fs::remove_file(&out).ok();
    // The header: one F32 tensor [40, 384] and the metadata the static-embedder builder reads.
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    assert_eq!(header["token_embeddings"]["dtype"], "F32");
    assert_eq!(header["token_embeddings"]["shape"], serde_json::json!([40, 384]));
    assert_eq!(header["__metadata__"]["embedder"], "all-MiniLM-L6-v2");
    assert_eq!(header["__metadata__"]["source"], "distilled [CLS] t [SEP] mean-pool");
    assert_eq!(bytes.len(), 8 + n + 40 * 384 * 4);
}

#[test]
fn a_missing_model_folder_is_refused() {
    let missing = PathBuf::from("/nonexistent/stylus-minilm");
    let o = stylus(&["embed", "--model", missing.to_str().unwrap(), "fox"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("config.json"), "{err}");
    let o = stylus(&["embed", "--model", missing.to_str().unwrap()]);
    assert!(!o.status.success() && String::from_utf8_lossy(&o.stderr).contains("no texts"));
}

#[test]
fn a_bad_dense_text_is_refused() {
    let o = stylus(&["index", "build", "--catalog", "cards.jsonl", "--out", "x.index", "--dense-text", "titles"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("expected title-tags or reference"), "{err}");
}
