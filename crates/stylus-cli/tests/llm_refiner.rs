//! `stylus index build --llm-refiner` end to end against a mock OpenAI-compatible chat endpoint on
//! 127.0.0.1: valid replies replace description, weight (clamped) and category; garbage, an invalid
//! category, HTTP 500 and a reply slower than the timeout fall back to the local refiner's card and
//! are counted by reason; a second run answers accepted cards from the cache without a request.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use common::{serve, Reply, Request, Server};
use stylus_core::{Card, Category, Index};

/// (name, what the mock answers for it)
const CARDS: [(&str, &str); 7] = [
    ("Watercolor Style", "ok"),
    ("Neon Glow", "ok-heavy"),
    ("Paper Cut", "ok-fenced"),
    ("Garbage Reply", "garbage"),
    ("Vibes Category", "bad-category"),
    ("Broken Server", "http-500"),
    ("Slow Reply", "slow"),
];

fn content(s: &str) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({"id": "x", "object": "chat.completion",
        "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": s}}]}))
    .unwrap()
}

/// The card name the request is about (from the user message's JSON).
fn card_name(req: &Request) -> String {
    let body: serde_json::Value = serde_json::from_slice(&req.body).unwrap_or_default();
    let user = body["messages"][1]["content"].as_str().unwrap_or("{}");
    serde_json::from_str::<serde_json::Value>(user).unwrap_or_default()["name"]
        .as_str()
        .unwrap_or("")
        .to_string()
}

fn mock(req: &Request) -> Reply {
    let name = card_name(req);
    let how = CARDS
        .iter()
        .find(|(n, _)| *n == name)
        .map_or("unknown", |c| c.1);
    match how {
        "ok" => Reply::new(200, content(r#"{"description": "Soft watercolor washes on paper.", "weight": 0.55, "category": "style"}"#)),
        "ok-heavy" => Reply::new(200, content(r#"{"description": "Glowing <b>neon</b> lights.", "weight": 7, "category": "Concept"}"#)),
        "ok-fenced" => Reply::new(200, content("Here you go:\n```json\n{\"description\": \"Layered paper cut-outs.\", \"weight\": \"0.9\", \"category\": \"object\"}\n```")),
        "garbage" => Reply::new(200, content("I'm sorry, I can't produce JSON today.")),
        "bad-category" => Reply::new(200, content(r#"{"description": "Vibes.", "weight": 0.5, "category": "vibes"}"#)),
        "http-500" => Reply::new(500, r#"{"error": {"message": "internal"}}"#),
        "slow" => Reply::new(200, content(r#"{"description": "Too late.", "weight": 0.5, "category": "style"}"#)).delayed(Duration::from_secs(3)),
        _ => Reply::new(400, "unknown card"),
    }
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("stylus-llm-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A card catalog (the project's card JSONL) the default policy keeps entirely.
fn write_catalog(dir: &Path) -> PathBuf {
    let mut text = String::new();
    for (i, (name, _)) in CARDS.iter().enumerate() {
        let mut c = Card::new(100 + i as u64, *name);
        c.base_model = "SD 1.5".into();
        c.n_example_prompts = 2;
        c.weight = 0.8;
        c.tags = vec!["test".into()];
        c.description = Some(format!("The {name} adapter. Use weight 0.8."));
        text.push_str(&serde_json::to_string(&c).unwrap());
        text.push('\n');
    }
    let p = dir.join("cards.jsonl");
    std::fs::write(&p, text).unwrap();
    p
}

fn build(server: Option<&Server>, dir: &Path, out: &str, llm: bool) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_stylus"));
    cmd.args(["index", "build", "--with-descriptions", "--catalog"])
        .arg(dir.join("cards.jsonl"))
        .arg("--out")
        .arg(dir.join(out));
    for v in [
        "STYLUS_LLM_BASE_URL",
        "STYLUS_LLM_MODEL",
        "STYLUS_LLM_API_KEY",
    ] {
        cmd.env_remove(v);
    }
    if llm {
        cmd.args(["--llm-refiner", "--llm-timeout-ms", "300", "--llm-cache"])
            .arg(dir.join("llm-cache.json"));
    }
    if let Some(s) = server {
        cmd.env("STYLUS_LLM_BASE_URL", format!("{}/v1/", s.url()))
            .env("STYLUS_LLM_MODEL", "mock-model")
            .env("STYLUS_LLM_API_KEY", "sk-test");
    }
    cmd.output().expect("run stylus")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn cards(path: &Path) -> Vec<Card> {
    Index::from_bundle(&std::fs::read(path).unwrap()).unwrap().cards().map(|c| c.to_card()).collect()
}

fn asked(server: &Server) -> Vec<String> {
    let mut names: Vec<String> = server.requests().iter().map(card_name).collect();
    names.sort();
    names
}

#[test]
fn refines_with_fallbacks_and_caches() {
    let server = serve(mock);
    let dir = tmp("refine");
    write_catalog(&dir);
    let local = build(None, &dir, "local.index", false);
    assert!(local.status.success(), "{}", stderr(&local));

    let o = build(Some(&server), &dir, "llm.index", true);
    let err = stderr(&o);
    assert!(o.status.success(), "{err}");
    assert!(err.contains("llm refiner (mock-model): 7 cards: 3 refined, 0 from cache, 4 fell back to the local refiner (HTTP 500: 1, invalid reply: 2, timeout: 1)"), "{err}");
    assert!(
        err.contains("card 105 (Broken Server): HTTP 500")
            && err.contains("kept the local refiner's card"),
        "{err}"
    );
    assert!(
        err.contains("card 104 (Vibes Category): invalid LLM refiner reply: category \"vibes\""),
        "{err}"
    );
    let req = &server.requests()[0];
    assert_eq!(
        (req.method.as_str(), req.target.as_str()),
        ("POST", "/v1/chat/completions")
    );
    assert_eq!(req.header("authorization"), Some("Bearer sk-test"));
    let body: serde_json::Value = serde_json::from_slice(&req.body).unwrap();
    assert_eq!(
        (body["model"].as_str(), body["messages"][0]["role"].as_str()),
        (Some("mock-model"), Some("system"))
    );

    let (llm, local) = (
        cards(&dir.join("llm.index")),
        cards(&dir.join("local.index")),
    );
    assert_eq!(llm.len(), 7);
    let get = |cs: &[Card], name: &str| cs.iter().find(|c| c.name == name).unwrap().clone();
    let w = get(&llm, "Watercolor Style");
    assert_eq!(
        (w.weight, w.category, w.description.as_deref()),
        (
            0.55,
            Category::Style,
            Some("Soft watercolor washes on paper.")
        )
    );
    let n = get(&llm, "Neon Glow");
    assert_eq!(
        (n.weight, n.category, n.description.as_deref()),
        (1.5, Category::Concept, Some("Glowing neon lights."))
    );
    let p = get(&llm, "Paper Cut");
    assert_eq!((p.weight, p.category), (0.9, Category::Object));
    for name in [
        "Garbage Reply",
        "Vibes Category",
        "Broken Server",
        "Slow Reply",
    ] {
        assert_eq!(
            get(&llm, name),
            get(&local, name),
            "{name} keeps the local refiner's card"
        );
    }

    // Second run: accepted cards come from the cache; only the failed ones are asked again.
    let before = server.requests().len();
    let o = build(Some(&server), &dir, "llm2.index", true);
    let err = stderr(&o);
    assert!(o.status.success(), "{err}");
    assert!(
        err.contains("7 cards: 0 refined, 3 from cache, 4 fell back"),
        "{err}"
    );
    let again: Vec<String> = {
        let mut v: Vec<String> = server.requests()[before..].iter().map(card_name).collect();
        v.sort();
        v
    };
    assert_eq!(
        again,
        [
            "Broken Server",
            "Garbage Reply",
            "Slow Reply",
            "Vibes Category"
        ]
    );
    assert_eq!(asked(&server).len(), 11);
    assert_eq!(cards(&dir.join("llm2.index")), llm);
}

#[test]
fn configuration_errors_are_clear() {
    let dir = tmp("config");
    write_catalog(&dir);
    let o = build(None, &dir, "x.index", true);
    assert!(
        !o.status.success() && stderr(&o).contains("--llm-refiner needs STYLUS_LLM_BASE_URL"),
        "{}",
        stderr(&o)
    );
    std::fs::write(dir.join("llm-cache.json"), "{not json").unwrap();
    let server = serve(mock);
    let o = build(Some(&server), &dir, "x.index", true);
    assert!(
        !o.status.success() && stderr(&o).contains("delete it to start a new cache"),
        "{}",
        stderr(&o)
    );
    assert!(server.requests().is_empty());

    // An unreachable endpoint: every card falls back, and after --llm-max-failures the rest are skipped.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port(); // closed again
    std::fs::remove_file(dir.join("llm-cache.json")).unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_stylus"))
        .args([
            "index",
            "build",
            "--llm-refiner",
            "--llm-max-failures",
            "2",
            "--catalog",
        ])
        .arg(dir.join("cards.jsonl"))
        .arg("--out")
        .arg(dir.join("y.index"))
        .arg("--llm-cache")
        .arg(dir.join("llm-cache.json"))
        .env("STYLUS_LLM_BASE_URL", format!("http://127.0.0.1:{port}/v1"))
        .env("STYLUS_LLM_MODEL", "m")
        .env_remove("STYLUS_LLM_API_KEY")
        .output()
        .unwrap();
    let err = stderr(&o);
    assert!(o.status.success(), "{err}");
    assert!(err.contains("7 cards: 0 refined, 0 from cache, 7 fell back to the local refiner (connection error: 2, skipped: 5)"), "{err}");
}
