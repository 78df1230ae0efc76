//! `stylus compose --llm` end to end against a mock OpenAI-compatible chat endpoint on 127.0.0.1: a
//! valid reply is used (validated: an unknown id and a fourth adapter for one topic are dropped and
//! reported); HTTP 500, a garbage reply, a reply slower than `--llm-timeout-ms` and an unreachable
//! endpoint fall back to the local composer, whose answer is then identical to running without `--llm`.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use common::{serve, Reply, Request, Server};
use stylus_core::{Card, Category, ComposeResponse, Index};

const PROMPT: &str = "a watercolor painting of a fox in a forest";

fn content(s: &str) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({"id": "x", "object": "chat.completion",
        "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": s}}]}))
    .unwrap()
}

/// The user message's JSON of a request.
fn user(req: &Request) -> serde_json::Value {
    let body: serde_json::Value = serde_json::from_slice(&req.body).unwrap_or_default();
    serde_json::from_str(body["messages"][1]["content"].as_str().unwrap_or("{}")).unwrap_or_default()
}

/// A small index (card JSONL → bundle) in a fresh directory.
fn write_index(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("stylus-llm-compose-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let cards = [
        (1, "Watercolor Style", Category::Style, "watercolor"),
        (2, "Oil Painting", Category::Style, "painting"),
        (3, "Fox Girl", Category::Concept, "fox"),
        (4, "Red Fox", Category::Concept, "fox"),
        (5, "Forest Background", Category::Background, "forest"),
        (6, "Pine Forest", Category::Background, "forest"),
        (7, "Misty Forest", Category::Background, "forest"),
        (8, "Deep Forest", Category::Background, "forest"),
    ];
    let cards: Vec<Card> = cards
        .iter()
        .map(|&(id, name, cat, tag)| {
            let mut c = Card::new(id, name);
            c.category = cat;
            c.tags = vec![tag.into()];
            c.weight = 0.6;
            c.file_name = format!("{}.safetensors", name.replace(' ', "_"));
            c
        })
        .collect();
    std::fs::write(dir.join("test.index"), Index::build(cards).unwrap().to_bundle()).unwrap();
    dir
}

fn compose(dir: &Path, server: Option<&Server>, extra: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_stylus"));
    cmd.args(["compose", "--json", "--images", "4", "--seed", "7", "--index"]).arg(dir.join("test.index")).arg(PROMPT).args(extra);
    for v in ["STYLUS_LLM_BASE_URL", "STYLUS_LLM_MODEL", "STYLUS_LLM_API_KEY"] {
        cmd.env_remove(v);
    }
    if let Some(s) = server {
        cmd.env("STYLUS_LLM_BASE_URL", format!("{}/v1", s.url())).env("STYLUS_LLM_MODEL", "mock-model").env("STYLUS_LLM_API_KEY", "sk-test");
    }
    cmd.output().expect("run stylus")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn response(o: &Output) -> ComposeResponse {
    assert!(o.status.success(), "{}", stderr(o));
    serde_json::from_slice(&o.stdout).unwrap()
}

#[test]
fn valid_reply_is_used_and_validated() {
    let server = serve(|_| {
        Reply::new(
            200,
            content(
                "```json\n{\"watercolor painting\": {\"1\": \"watercolor\"}, \"fox\": {\"4\": \"a red fox\", \"999\": \"?\"}, \"forest\": [8, 7, 6, 5]}\n```",
            ),
        )
    });
    let dir = write_index("valid");
    let o = compose(&dir, Some(&server), &["--llm"]);
    let err = stderr(&o);
    let res = response(&o);
    let got: Vec<(&str, Vec<u64>)> = res.topics.iter().map(|t| (t.name.as_str(), t.adapters.iter().map(|a| a.id).collect())).collect();
    assert_eq!(got, [("watercolor painting", vec![1]), ("fox", vec![4]), ("forest", vec![8, 7, 6])]);
    assert!(err.contains("dropped topic \"fox\": adapter 999 is not a candidate") && err.contains("adapter 5 exceeds max_per_topic"), "{err}");
    assert!(!err.contains("local composer"), "{err}");
    assert_eq!(res.images.len(), 4);
    assert!(res.images.iter().all(|i| i.a1111.starts_with(PROMPT) && i.active.iter().all(|a| i.mask[&a.id])));
    let local = response(&compose(&dir, None, &[]));
    assert_ne!(local.topics, res.topics, "the LLM's choice, not the local one");

    let reqs = server.requests();
    assert_eq!(reqs.len(), 1);
    assert_eq!((reqs[0].method.as_str(), reqs[0].target.as_str()), ("POST", "/v1/chat/completions"));
    assert_eq!(reqs[0].header("authorization"), Some("Bearer sk-test"));
    let u = user(&reqs[0]);
    assert_eq!((u["prompt"].as_str(), u["max_per_topic"].as_u64()), (Some(PROMPT), Some(3)));
    let mut ids: Vec<u64> = u["adapters"].as_array().unwrap().iter().filter_map(|a| a["id"].as_u64()).collect();
    ids.sort();
    assert_eq!(ids, [1, 2, 3, 4, 5, 6, 7, 8], "the retrieved candidates");

    // Human output says who composed.
    let o = Command::new(env!("CARGO_BIN_EXE_stylus"))
        .args(["compose", "--llm", "--index"])
        .arg(dir.join("test.index"))
        .arg(PROMPT)
        .env("STYLUS_LLM_BASE_URL", server.url())
        .env("STYLUS_LLM_MODEL", "mock-model")
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("by the LLM composer (mock-model)") && out.contains("Red Fox"), "{out}");
    assert_eq!(server.requests().last().unwrap().header("authorization"), None);
}

#[test]
fn failures_fall_back_to_the_local_composer() {
    let dir = write_index("fallback");
    let local = compose(&dir, None, &[]);
    let local_res = response(&local);
    assert!(local_res.topics.iter().any(|t| !t.adapters.is_empty()));
    type Case = (&'static str, fn(&Request) -> Reply);
    let cases: [Case; 4] = [
        ("HTTP 500", |_| Reply::new(500, r#"{"error": {"message": "internal"}}"#)),
        ("invalid LLM composer reply: the reply holds no JSON object", |_| Reply::new(200, content("I'm sorry, I can't produce JSON today."))),
        ("invalid LLM composer reply: response is not JSON", |_| Reply::new(200, "<html>bad gateway</html>")),
        ("timeout", |_| Reply::new(200, content(r#"{"fox": [4]}"#)).delayed(Duration::from_secs(3))),
    ];
    for (want, handler) in cases {
        let server = serve(handler);
        let o = compose(&dir, Some(&server), &["--llm", "--llm-timeout-ms", "500"]);
        let err = stderr(&o);
        assert!(o.status.success(), "{want}: {err}");
        assert!(err.contains("llm composer (mock-model): ") && err.contains(want) && err.contains("used the local composer"), "{want}: {err}");
        assert_eq!(o.stdout, local.stdout, "{want}: the fallback answer is the local composer's");
        assert_eq!(server.requests().len(), 1);
    }
    // Nothing listening: a connection error, same fallback.
    let dead = serve(|_| Reply::dropped());
    let o = compose(&dir, Some(&dead), &["--llm"]);
    assert!(o.status.success() && stderr(&o).contains("used the local composer"), "{}", stderr(&o));
    assert_eq!(o.stdout, local.stdout);
    // Configuration is not a fallback: without an endpoint `--llm` is an error.
    let o = compose(&dir, None, &["--llm"]);
    assert!(!o.status.success() && stderr(&o).contains("--llm needs STYLUS_LLM_BASE_URL"), "{}", stderr(&o));
}
