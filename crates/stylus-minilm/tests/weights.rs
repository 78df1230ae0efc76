//! Loading and bad inputs on a tiny random BERT (vocabulary 10, hidden 8, 2 layers, 2 heads) built
//! in memory — config.json, a WordPiece tokenizer.json and model.safetensors — so these run without
//! the real model: the remap table's variants (`bert.` prefix, LayerNorm gamma/beta, ignored
//! buffers, F16) load the same model; truncated files, wrong shapes, missing/unknown/duplicate keys,
//! bad dtypes, bad configs and tokenizers are named errors; padding and batching change nothing.

use safetensors::{serialize, Dtype};
use serde_json::json;
use stylus_minilm::{cpu_device, Error, MiniLm};

const VOCAB: [&str; 10] = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "a", "fox", "red", "##s", "the", ","];

fn config() -> serde_json::Value {
    json!({"architectures": ["BertModel"], "model_type": "bert", "hidden_act": "gelu", "hidden_size": 8,
           "intermediate_size": 16, "layer_norm_eps": 1e-12, "max_position_embeddings": 16,
           "num_attention_heads": 2, "num_hidden_layers": 2, "position_embedding_type": "absolute",
           "type_vocab_size": 2, "vocab_size": 10})
}

/// A `BertTokenizerFast` tokenizer.json over [`VOCAB`] (the real file's structure, with its fixed
/// 128 truncation/padding, which the crate replaces).
fn tokenizer() -> Vec<u8> {
    let vocab: serde_json::Map<String, serde_json::Value> = VOCAB.iter().enumerate().map(|(i, t)| (t.to_string(), json!(i))).collect();
    let special =
        |id: usize| json!({"id": id, "content": VOCAB[id], "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true});
    json!({
        "version": "1.0",
        "truncation": {"max_length": 128, "strategy": "LongestFirst", "stride": 0},
        "padding": {"strategy": {"Fixed": 128}, "direction": "Right", "pad_to_multiple_of": null, "pad_id": 0, "pad_type_id": 0, "pad_token": "[PAD]"},
        "added_tokens": [special(0), special(1), special(2), special(3)],
        "normalizer": {"type": "BertNormalizer", "clean_text": true, "handle_chinese_chars": true, "strip_accents": null, "lowercase": true},
        "pre_tokenizer": {"type": "BertPreTokenizer"},
        "post_processor": {"type": "TemplateProcessing",
            "single": [{"SpecialToken": {"id": "[CLS]", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}, {"SpecialToken": {"id": "[SEP]", "type_id": 0}}],
            "pair": [{"SpecialToken": {"id": "[CLS]", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}, {"SpecialToken": {"id": "[SEP]", "type_id": 0}},
                     {"Sequence": {"id": "B", "type_id": 1}}, {"SpecialToken": {"id": "[SEP]", "type_id": 1}}],
            "special_tokens": {"[CLS]": {"id": "[CLS]", "ids": [2], "tokens": ["[CLS]"]}, "[SEP]": {"id": "[SEP]", "ids": [3], "tokens": ["[SEP]"]}}},
        "decoder": {"type": "WordPiece", "prefix": "##", "cleanup": true},
        "model": {"type": "WordPiece", "unk_token": "[UNK]", "continuing_subword_prefix": "##", "max_input_chars_per_word": 100, "vocab": vocab}
    })
    .to_string()
    .into_bytes()
}

/// Deterministic pseudo-random values in [-0.5, 0.5).
fn pseudo(n: usize, seed: u64) -> Vec<f32> {
    (0..n as u64).map(|i| ((i.wrapping_add(seed * 7919).wrapping_mul(2654435761) >> 7) % 1000) as f32 / 1000.0 - 0.5).collect()
}

/// The tiny model's tensors as `(key, shape, f32 values)`, keys as `BertModel.state_dict()` has them,
/// plus the `position_ids` buffer and the pooler the table ignores.
fn tensors() -> Vec<(String, Vec<usize>, Vec<f32>)> {
    let cfg = stylus_minilm::BertConfig::from_json_bytes(config().to_string().as_bytes()).unwrap();
    let mut out: Vec<_> = stylus_minilm::bert_params(&cfg)
        .into_iter()
        .enumerate()
        .map(|(i, p)| {
            let n = p.shape.iter().product();
            let v = if p.path.ends_with("LayerNorm.weight") { pseudo(n, i as u64).iter().map(|x| 1.0 + x * 0.2).collect() } else { pseudo(n, i as u64) };
            (p.path, p.shape, v)
        })
        .collect();
    out.push(("pooler.dense.weight".into(), vec![8, 8], pseudo(64, 99)));
    out.push(("pooler.dense.bias".into(), vec![8], pseudo(8, 98)));
    out
}

fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// Serialises `(key, dtype, shape, bytes)` tensors (adds the I64 `position_ids` buffer when asked).
fn safetensors_of(items: &[(String, Dtype, Vec<usize>, Vec<u8>)], position_ids: bool) -> Vec<u8> {
    let pos: Vec<u8> = (0..16i64).flat_map(|i| i.to_le_bytes()).collect();
    let mut views: Vec<(String, safetensors::tensor::TensorView<'_>)> =
        items.iter().map(|(k, d, s, b)| (k.clone(), safetensors::tensor::TensorView::new(*d, s.clone(), b).unwrap())).collect();
    if position_ids {
        views.push(("embeddings.position_ids".into(), safetensors::tensor::TensorView::new(Dtype::I64, vec![1, 16], &pos).unwrap()));
    }
    serialize(views, None).unwrap()
}

fn f32_items(rename: impl Fn(&str) -> String) -> Vec<(String, Dtype, Vec<usize>, Vec<u8>)> {
    tensors().into_iter().map(|(k, s, v)| (rename(&k), Dtype::F32, s, f32_bytes(&v))).collect()
}

fn weights() -> Vec<u8> {
    safetensors_of(&f32_items(|k| k.to_string()), true)
}

fn load(weights: &[u8]) -> Result<MiniLm, Error> {
    MiniLm::from_bytes(config().to_string().as_bytes(), &tokenizer(), weights, &cpu_device())
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

const TEXTS: [&str; 4] = ["The red foxs", "a fox", "", "red, red, the fox, a fox, the reds, a"];

#[test]
fn tiny_model_encodes_tokenizes_and_batches() {
    let m = load(&weights()).unwrap();
    assert_eq!((m.dim(), m.vocab().len()), (8, 10));
    assert_eq!(m.vocab(), VOCAB.map(String::from).as_slice());
    assert_eq!(m.tokenize("The red foxs").unwrap(), vec![2, 8, 6, 5, 7, 3]);
    assert_eq!(m.tokenize("zebra").unwrap(), vec![2, 1, 3]);
    // Truncation to max_position_embeddings (16 < 256), [SEP] kept.
    let long = m.tokenize(&"fox ".repeat(40)).unwrap();
    assert_eq!((long.len(), long[15]), (16, 3));
    let all = m.encode(&TEXTS).unwrap();
    assert_eq!(all.len(), TEXTS.len());
    for v in &all {
        let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-5, "norm {norm}");
    }
    for (i, t) in TEXTS.iter().enumerate() {
        let one = m.encode_with(&[t], 1, &mut |_, _| {}).unwrap();
        assert!(max_diff(&one[0], &all[i]) < 1e-6, "{t:?}: padding changed the embedding");
    }
    assert!(m.encode(&[]).unwrap().is_empty());
}

#[test]
fn token_table_is_cls_t_sep_mean_in_id_order() {
    let m = load(&weights()).unwrap();
    let mut calls = Vec::new();
    let table = m.token_table(4, &mut |d, n| calls.push((d, n))).unwrap();
    assert_eq!(table.len(), 10 * 8);
    assert_eq!(calls, vec![(4, 10), (8, 10), (10, 10)]);
    for t in 0..10u32 {
        let row = m.mean_pool(&[&[2, t, 3]]).unwrap();
        assert!(max_diff(&row, &table[t as usize * 8..(t as usize + 1) * 8]) < 1e-6, "row {t}");
    }
    assert_eq!(m.token_rows(3..5, 1, &mut |_, _| {}).unwrap(), m.token_rows(0..10, 1, &mut |_, _| {}).unwrap()[24..40]);
    assert!(m.token_rows(5..11, 4, &mut |_, _| {}).is_err());
    let whole = m.token_table(64, &mut |_, _| {}).unwrap();
    assert!(max_diff(&whole, &table) < 1e-5, "batch size does not matter (up to float summation order)");
}

/// `bert.` prefixes, TF-style LayerNorm gamma/beta, no ignored keys at all, and F16/BF16 storage all
/// load (F32 variants to the identical model).
#[test]
fn remap_variants_load_the_same_model() {
    let base = load(&weights()).unwrap().encode(&TEXTS).unwrap();
    let tf = |k: &str| format!("bert.{}", k.replace("LayerNorm.weight", "LayerNorm.gamma").replace("LayerNorm.bias", "LayerNorm.beta"));
    let variant = load(&safetensors_of(&f32_items(tf), false)).unwrap().encode(&TEXTS).unwrap();
    assert_eq!(variant, base);
    for dtype in [Dtype::F16, Dtype::BF16] {
        let items: Vec<_> = tensors()
            .into_iter()
            .map(|(k, s, v)| {
                let b: Vec<u8> = match dtype {
                    Dtype::F16 => v.iter().flat_map(|x| half::f16::from_f32(*x).to_le_bytes()).collect(),
                    _ => v.iter().flat_map(|x| half::bf16::from_f32(*x).to_le_bytes()).collect(),
                };
                (k, dtype, s, b)
            })
            .collect();
        let e = load(&safetensors_of(&items, true)).unwrap().encode(&TEXTS).unwrap();
        let d = base.iter().zip(&e).map(|(a, b)| max_diff(a, b)).fold(0.0, f32::max);
        assert!(d < 0.05, "{dtype:?}: {d}");
    }
}

fn err_of(weights: &[u8]) -> Error {
    match load(weights) {
        Err(e) => e,
        Ok(_) => panic!("expected an error"),
    }
}

#[test]
fn truncated_or_garbage_safetensors_are_refused() {
    let w = weights();
    for bytes in [&w[..w.len() - 10], &w[..20], &b"not a safetensors file"[..], &[][..]] {
        let e = err_of(bytes);
        assert!(matches!(e, Error::Safetensors(_)), "{e}");
        assert!(e.to_string().starts_with("model.safetensors: "), "{e}");
    }
}

#[test]
fn wrong_shape_missing_unknown_and_duplicate_keys_are_named() {
    let key = "encoder.layer.1.intermediate.dense.weight";
    // Wrong shape: [16, 8] stored as [8, 16].
    let mut items = f32_items(|k| k.to_string());
    items.iter_mut().find(|i| i.0 == key).unwrap().2 = vec![8, 16];
    match err_of(&safetensors_of(&items, true)) {
        Error::Shape { key: k, expected, found } => assert_eq!((k.as_str(), expected, found), (key, vec![16, 8], vec![8, 16])),
        e => panic!("wrong error: {e}"),
    }
    // Missing.
    let items: Vec<_> = f32_items(|k| k.to_string()).into_iter().filter(|i| i.0 != key).collect();
    let e = err_of(&safetensors_of(&items, true));
    assert!(matches!(&e, Error::MissingKey(p) if p == key), "{e}");
    assert!(e.to_string().contains(key));
    // Unknown (a masked-LM head; a third layer of a 2-layer config).
    for extra in ["cls.predictions.bias", "encoder.layer.2.output.dense.bias"] {
        let mut items = f32_items(|k| k.to_string());
        items.push((extra.into(), Dtype::F32, vec![8], f32_bytes(&[0.0; 8])));
        let e = err_of(&safetensors_of(&items, true));
        assert!(matches!(&e, Error::UnknownKey { key, .. } if key == extra), "{e}");
    }
    // Duplicate: both `weight` and `gamma` for one LayerNorm.
    let mut items = f32_items(|k| k.to_string());
    items.push(("embeddings.LayerNorm.gamma".into(), Dtype::F32, vec![8], f32_bytes(&[1.0; 8])));
    let e = err_of(&safetensors_of(&items, true));
    assert!(matches!(&e, Error::DuplicateKey { path, .. } if path == "embeddings.LayerNorm.weight"), "{e}");
    // Integer dtype for a parameter.
    let mut items = f32_items(|k| k.to_string());
    let t = items.iter_mut().find(|i| i.0 == "embeddings.LayerNorm.bias").unwrap();
    (t.1, t.3) = (Dtype::I32, vec![0; 32]);
    let e = err_of(&safetensors_of(&items, true));
    assert!(matches!(&e, Error::Dtype { key, .. } if key == "embeddings.LayerNorm.bias"), "{e}");
}

#[test]
fn bad_config_and_tokenizer_are_refused() {
    let w = weights();
    let dev = cpu_device();
    let tok = tokenizer();
    let e = MiniLm::from_bytes(b"{not json", &tok, &w, &dev).err().unwrap();
    assert!(matches!(e, Error::Config(_)), "{e}");
    let mut c = config();
    c["hidden_act"] = json!("relu");
    let e = MiniLm::from_bytes(c.to_string().as_bytes(), &tok, &w, &dev).err().unwrap();
    assert!(e.to_string().contains("hidden_act `relu`"), "{e}");
    // The config and the weights disagree: every shape is checked against the config.
    let mut c = config();
    c["intermediate_size"] = json!(32);
    let e = MiniLm::from_bytes(c.to_string().as_bytes(), &tok, &w, &dev).err().unwrap();
    assert!(matches!(e, Error::Shape { .. }), "{e}");
    // The tokenizer's vocabulary and config.json disagree.
    let mut c = config();
    c["vocab_size"] = json!(12);
    let e = MiniLm::from_bytes(c.to_string().as_bytes(), &tok, &w, &dev).err().unwrap();
    assert!(matches!(e, Error::Tokenizer(_)) && e.to_string().contains("vocab_size 12"), "{e}");
    let e = MiniLm::from_bytes(config().to_string().as_bytes(), b"{}", &w, &dev).err().unwrap();
    assert!(matches!(e, Error::Tokenizer(_)), "{e}");
}

#[test]
fn bad_token_ids_are_input_errors() {
    let m = load(&weights()).unwrap();
    let e = m.mean_pool(&[&[2, 10, 3]]).unwrap_err();
    assert!(matches!(e, Error::Input(_)) && e.to_string().contains("token id 10"), "{e}");
    let e = m.mean_pool(&[&[2; 17]]).unwrap_err();
    assert!(e.to_string().contains("at most 16"), "{e}");
    let e = m.mean_pool(&[&[2, 3], &[]]).unwrap_err();
    assert!(matches!(e, Error::Input(_)), "{e}");
}

#[test]
fn token_table_file_has_one_tensor_and_the_metadata() {
    let m = load(&weights()).unwrap();
    let table = m.token_table(16, &mut |_, _| {}).unwrap();
    let bytes = stylus_minilm::token_table_safetensors(&table, 10, 8).unwrap();
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let info = meta.metadata().as_ref().unwrap();
    assert_eq!(info.get("embedder").map(String::as_str), Some("all-MiniLM-L6-v2"));
    assert_eq!(info.get("source").map(String::as_str), Some("distilled [CLS] t [SEP] mean-pool"));
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    assert_eq!(st.names(), vec![stylus_minilm::TOKEN_TABLE_TENSOR]);
    let t = st.tensor(stylus_minilm::TOKEN_TABLE_TENSOR).unwrap();
    assert_eq!((t.dtype(), t.shape()), (Dtype::F32, &[10usize, 8][..]));
    assert_eq!(t.data(), f32_bytes(&table).as_slice());
    assert!(stylus_minilm::token_table_safetensors(&table, 10, 9).is_err());
}
