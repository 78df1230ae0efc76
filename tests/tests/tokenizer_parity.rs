//! CLIP tokenizer parity: our `ClipTokenizer` (tokenizers crate, pure-Rust regex) against the ids
//! transformers produced for the same prompts (tests/fixtures/tokenizer/token_ids.json).

use stylus_e2e::fixture;
use stylus_sd::ClipTokenizer;

#[derive(serde::Deserialize)]
struct Case {
    prompt: String,
    ids: Vec<u32>,
    ids77: Vec<u32>,
}

#[derive(serde::Deserialize)]
struct File {
    cases: Vec<Case>,
}

fn cases() -> Vec<Case> {
    serde_json::from_slice::<File>(&fixture("tokenizer/token_ids.json")).unwrap().cases
}

#[test]
fn raw_ids_and_77_windows_match_transformers() {
    let tok = ClipTokenizer::from_json_bytes(&fixture("tokenizer/tokenizer.json")).unwrap();
    let cases = cases();
    assert!(cases.len() >= 10);
    let mut truncated = 0;
    for c in &cases {
        assert_eq!(tok.encode_raw(&c.prompt).unwrap(), c.ids, "raw ids for {:?}", c.prompt);
        let w = tok.encode(&c.prompt).unwrap();
        assert_eq!(w.ids, c.ids77, "77-window for {:?}", c.prompt);
        assert_eq!(w.prompt_tokens, c.ids.len() - 2);
        assert_eq!(w.truncated, (c.ids.len() - 2).saturating_sub(75));
        truncated += usize::from(w.truncated > 0);
    }
    assert!(truncated >= 1, "the fixture set must exercise truncation");
}

#[test]
fn special_tokens_are_the_sd15_ones() {
    let tok = ClipTokenizer::from_json_bytes(&fixture("tokenizer/tokenizer.json")).unwrap();
    assert_eq!((tok.bos(), tok.eos()), (49406, 49407));
    assert!(ClipTokenizer::from_json_bytes(b"{not json").is_err());
}
