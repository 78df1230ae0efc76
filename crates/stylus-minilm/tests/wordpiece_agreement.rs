//! The dependency-light WordPiece tokenizer of stylus-core (`stylus_core::embed::WordPiece`, what the
//! worker and the browser embed queries with) against HF `tokenizers` with the model's `tokenizer.json`
//! (this crate's [`stylus_minilm::WordPiece`]) over every text of the shared Civitai catalog: card
//! names, tags, trigger words, descriptions and example prompts — accents, CJK, emoji, A1111 syntax.

mod common;

use stylus_core::embed::WordPiece as CoreWordPiece;
use stylus_minilm::WordPiece as HfWordPiece;

fn catalog() -> Option<Vec<String>> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/civitai/civitai_lora_top10k_2023-07.jsonl");
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) => {
            assert!(std::env::var("CI").map_or(true, |v| v != "true"), "{}: {e}; CI needs ../shared", path.display());
            eprintln!("skipped: {}: {e}", path.display());
            return None;
        }
    };
    let mut out = Vec::new();
    for line in text.lines() {
        let v: serde_json::Value = serde_json::from_str(line).expect("catalog line is JSON");
        let s = |k: &str| v[k].as_str().unwrap_or_default().to_string();
        out.push(s("name"));
        out.push(s("description"));
        let list = |x: &serde_json::Value| x.as_array().map(|a| a.iter().filter_map(|t| t.as_str()).collect::<Vec<_>>().join(", ")).unwrap_or_default();
        out.push(list(&v["tags"]));
        out.push(list(&v["latest_version"]["trainedWords"]));
        if let Some(ex) = v["example_prompts"].as_array() {
            out.extend(ex.iter().filter_map(|p| p.as_str()).map(str::to_string));
        }
    }
    Some(out)
}

#[test]
fn core_wordpiece_equals_hf_tokenizers_on_the_catalog() {
    let Some(dir) = common::model_dir() else { return };
    let Some(texts) = catalog() else { return };
    let hf = HfWordPiece::from_json_bytes(&std::fs::read(dir.join("tokenizer.json")).unwrap(), 100_000).unwrap();
    let core = CoreWordPiece::from_vocab_txt(&std::fs::read_to_string(dir.join("vocab.txt")).unwrap()).unwrap();
    assert_eq!(core.tokens(), hf.vocab(), "vocab.txt and tokenizer.json list the same tokens");
    let (mut same, mut tokens) = (0usize, 0usize);
    let mut diffs = Vec::new();
    for t in &texts {
        let want = hf.encode(t).unwrap();
        let want = &want[1..want.len() - 1];
        let got = core.encode(t, usize::MAX);
        tokens += want.len();
        if got == want {
            same += 1;
        } else if diffs.len() < 5 {
            diffs.push(format!(
                "{:?}\n  hf   {:?}\n  core {:?}",
                t.chars().take(200).collect::<String>(),
                &want[..want.len().min(40)],
                &got[..got.len().min(40)]
            ));
        }
    }
    eprintln!("{same}/{} texts ({tokens} tokens) tokenized identically", texts.len());
    assert!(texts.len() > 30_000, "the catalog has {} texts", texts.len());
    assert_eq!(same, texts.len(), "differences:\n{}", diffs.join("\n"));
}
