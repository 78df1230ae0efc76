//! Parity of the burn port with sentence-transformers on the real all-MiniLM-L6-v2 weights (CPU,
//! burn `flex`), against `tests/fixtures/minilm/embeddings.json` (written by
//! `tests/reference/minilm.py`: 8 card-like sentences, their input ids and 384-d embeddings to 7
//! significant digits). Input ids must be equal; embeddings within 1e-5 absolute. Also: the
//! model file is the one the fixture was made from (sha256 recorded there is checked by
//! `scripts/setup.sh`; here its size), batching/padding does not change results, and the token
//! table's rows are the mean-pooled `[CLS] t [SEP]` outputs.
//!
//! Run with `--no-capture` to see the measured max difference.

mod common;

use std::path::PathBuf;

use serde_json::Value;
use stylus_minilm::{cpu_device, MiniLm};

fn fixture() -> Value {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/minilm/embeddings.json");
    serde_json::from_slice(&std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))).unwrap()
}

fn load() -> Option<MiniLm> {
    let [cfg, tok, st] = common::model_files()?;
    let fx = fixture();
    assert_eq!(st.len() as u64, fx["model_files"]["model.safetensors"].as_u64().unwrap(), "model.safetensors is not the fixture's file");
    Some(MiniLm::from_bytes(&cfg, &tok, &st, &cpu_device()).expect("load all-MiniLM-L6-v2"))
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

#[test]
fn embeddings_match_sentence_transformers() {
    let Some(m) = load() else { return };
    let fx = fixture();
    assert_eq!(m.dim(), fx["dim"].as_u64().unwrap() as usize);
    assert_eq!(m.vocab().len(), 30522);
    assert_eq!((m.vocab()[0].as_str(), m.vocab()[101].as_str(), m.vocab()[102].as_str()), ("[PAD]", "[CLS]", "[SEP]"));
    let cases = fx["cases"].as_array().unwrap();
    let sentences: Vec<&str> = cases.iter().map(|c| c["sentence"].as_str().unwrap()).collect();
    for (c, s) in cases.iter().zip(&sentences) {
        let want: Vec<u32> = c["input_ids"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as u32).collect();
        assert_eq!(m.tokenize(s).unwrap(), want, "input ids of {s:?}");
    }
    let got = m.encode(&sentences).unwrap();
    let mut worst = 0.0f32;
    for ((c, s), g) in cases.iter().zip(&sentences).zip(&got) {
        let want: Vec<f32> = c["embedding"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap() as f32).collect();
        let d = max_diff(g, &want);
        worst = worst.max(d);
        assert!(d <= 1e-5, "{s:?}: max abs diff {d:e}");
        let norm = g.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-5, "{s:?}: norm {norm}");
    }
    eprintln!("all-MiniLM-L6-v2 vs sentence-transformers: max abs diff {worst:e} over {} sentences", cases.len());
    // One at a time (no padding) and in a batch of 3 (padded) give the same vectors.
    for (i, s) in sentences.iter().enumerate() {
        let one = m.encode_with(&[s], 1, &mut |_, _| {}).unwrap();
        assert!(max_diff(&one[0], &got[i]) <= 1e-6, "{s:?} alone vs batched: {:e}", max_diff(&one[0], &got[i]));
    }
    let mut seen = Vec::new();
    let small = m.encode_with(&sentences, 3, &mut |d, t| seen.push((d, t))).unwrap();
    assert_eq!(seen, vec![(3, 8), (6, 8), (8, 8)]);
    for (a, b) in small.iter().zip(&got) {
        assert!(max_diff(a, b) <= 1e-6);
    }
}

#[test]
fn long_texts_are_truncated_to_256_tokens() {
    let Some(m) = load() else { return };
    let long = "watercolor ".repeat(400);
    let ids = m.tokenize(&long).unwrap();
    assert_eq!(ids.len(), 256);
    assert_eq!((ids[0], ids[255]), (101, 102));
    let e = m.encode(&[&long, "short"]).unwrap();
    assert_eq!(e.len(), 2);
    assert!(e.iter().all(|v| v.len() == 384 && v.iter().all(|x| x.is_finite())));
}

/// Rows of the token table are the un-normalised mean over `[CLS] t [SEP]`, in id order, whatever
/// the batch size (checked on a vocabulary slice through `mean_pool`).
#[test]
fn token_table_rows_are_cls_t_sep_means() {
    let Some(m) = load() else { return };
    let ids: Vec<u32> = vec![0, 100, 101, 1996, 7592, 30521];
    let rows: Vec<[u32; 3]> = ids.iter().map(|&t| [101, t, 102]).collect();
    let refs: Vec<&[u32]> = rows.iter().map(|r| r.as_slice()).collect();
    let direct = m.mean_pool(&refs).unwrap();
    for (k, &t) in ids.iter().enumerate() {
        let one = m.mean_pool(&[&[101, t, 102]]).unwrap();
        assert!(max_diff(&one, &direct[k * 384..(k + 1) * 384]) <= 1e-6, "token {t}");
    }
    // The normalised mean of "[CLS] fox [SEP]" is what `encode("fox")` returns.
    let fox = m.tokenize("fox").unwrap();
    assert_eq!(fox.len(), 3);
    let pooled = m.mean_pool(&[&fox]).unwrap();
    let enc = m.encode(&["fox"]).unwrap();
    assert!(max_diff(&stylus_minilm::normalize(&pooled), &enc[0]) <= 1e-6);
}
