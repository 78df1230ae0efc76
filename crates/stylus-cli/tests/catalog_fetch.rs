//! `stylus catalog fetch` end to end against a replay server on 127.0.0.1 serving recorded Civitai
//! REST v1 pages (tests/fixtures/civitai_rest: 3 pages, 8 items, factual fields only): cursor paging
//! in order, 429 + Retry-After and 5xx retries, resume after `--max-pages` and after the server
//! dies (page 1 never fetched twice), a 404 stopping with a clear message, and the output building
//! an index with `stylus index build`.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use common::{serve, Reply, Request, Server};

const PAGE2_CURSOR: &str = "3%7C16014"; // "3|16014", percent-encoded
const PAGE3_CURSOR: &str = "6%7C6526";
const ALL_IDS: [u64; 8] = [58390, 33208, 16014, 13941, 48139, 6526, 44960, 18323];

fn page(n: usize) -> Vec<u8> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(format!("../../tests/fixtures/civitai_rest/page{n}.json"));
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// The recorded page a request asks for (by its cursor), or None for an unknown cursor.
fn recorded(req: &Request) -> Option<Vec<u8>> {
    match req.query_param("cursor") {
        None => Some(page(1)),
        Some(PAGE2_CURSOR) => Some(page(2)),
        Some(PAGE3_CURSOR) => Some(page(3)),
        Some(_) => None,
    }
}

fn replay(req: &Request) -> Reply {
    recorded(req).map_or_else(
        || Reply::new(400, r#"{"error":"bad cursor"}"#),
        |b| Reply::new(200, b),
    )
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("stylus-catalog-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// `stylus catalog fetch` against `server` with fast test settings plus `extra`.
fn fetch(server: &Server, out: &Path, extra: &[&str]) -> Output {
    let base = format!("{}/api/v1/models", server.url());
    let mut args = vec![
        "catalog",
        "fetch",
        "--base-url",
        &base,
        "--limit",
        "3",
        "--min-interval-ms",
        "0",
        "--backoff-ms",
        "10",
        "--timeout-ms",
        "5000",
    ];
    let out = out.to_str().unwrap();
    args.extend(["--out", out]);
    args.extend(extra);
    Command::new(env!("CARGO_BIN_EXE_stylus"))
        .args(&args)
        .env_remove("CIVITAI_API_KEY")
        .output()
        .expect("run stylus")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Model ids of the output JSONL, in order.
fn ids(out: &Path) -> Vec<u64> {
    let text = std::fs::read_to_string(out).unwrap();
    text.lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["id"]
                .as_u64()
                .unwrap()
        })
        .collect()
}

fn state(out: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(format!("{}.state.json", out.display())).unwrap())
        .unwrap()
}

fn cursors(server: &Server) -> Vec<Option<String>> {
    server
        .requests()
        .iter()
        .map(|r| r.query_param("cursor").map(str::to_string))
        .collect()
}

#[test]
fn fetches_every_page_in_order_and_builds_an_index() {
    let server = serve(replay);
    let dir = tmp("all");
    let out = dir.join("lora.jsonl");
    let base = format!("{}/api/v1/models", server.url());
    let o = Command::new(env!("CARGO_BIN_EXE_stylus"))
        .args([
            "catalog",
            "fetch",
            "--base-url",
            &base,
            "--limit",
            "3",
            "--min-interval-ms",
            "0",
            "--param",
            "sort=Most Downloaded",
        ])
        .arg("--out")
        .arg(&out)
        .env("CIVITAI_API_KEY", "test-key")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("fetched 3 pages (8 items) in this run"),
        "{}",
        stderr(&o)
    );
    assert_eq!(
        cursors(&server),
        [None, Some(PAGE2_CURSOR.into()), Some(PAGE3_CURSOR.into())]
    );
    let first = &server.requests()[0];
    assert_eq!(
        first.target,
        "/api/v1/models?types=LORA&limit=3&sort=Most%20Downloaded"
    );
    assert_eq!(first.header("authorization"), Some("Bearer test-key"));
    assert!(first
        .header("user-agent")
        .is_some_and(|u| u.starts_with("stylus-rs/")));
    assert_eq!(ids(&out), ALL_IDS);
    let st = state(&out);
    assert_eq!(
        (
            st["done"].as_bool(),
            st["pages_done"].as_u64(),
            st["items_done"].as_u64()
        ),
        (Some(true), Some(3), Some(8))
    );

    // A finished fetch does nothing more.
    let o = Command::new(env!("CARGO_BIN_EXE_stylus"))
        .args([
            "catalog",
            "fetch",
            "--base-url",
            &base,
            "--limit",
            "3",
            "--param",
            "sort=Most Downloaded",
        ])
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    assert!(
        o.status.success() && stderr(&o).contains("already complete"),
        "{}",
        stderr(&o)
    );
    assert_eq!(server.requests().len(), 3);

    // The output is a catalog `index build` reads (no example images in the fixtures: no evidence filter).
    let policy = dir.join("policy.json");
    std::fs::write(&policy, r#"{"min_example_prompts": 0}"#).unwrap();
    let index = dir.join("lora.index");
    let o = Command::new(env!("CARGO_BIN_EXE_stylus"))
        .args(["index", "build", "--catalog"])
        .arg(&out)
        .arg("--out")
        .arg(&index)
        .arg("--policy")
        .arg(&policy)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("8 cards read, 0 records skipped"),
        "{}",
        stderr(&o)
    );
    let o = Command::new(env!("CARGO_BIN_EXE_stylus"))
        .args(["index", "query", "--index"])
        .arg(&index)
        .arg("studio ghibli landscape")
        .output()
        .unwrap();
    let top = String::from_utf8_lossy(&o.stdout)
        .lines()
        .next()
        .unwrap_or("")
        .to_string();
    assert!(
        o.status.success() && top.contains("6526") && top.contains("Studio Ghibli"),
        "{top}\n{}",
        stderr(&o)
    );
}

#[test]
fn retries_429_with_retry_after_and_500s() {
    let (p1, p2) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let (c1, c2) = (p1.clone(), p2.clone());
    let server = serve(move |req| match req.query_param("cursor") {
        None if c1.fetch_add(1, Ordering::SeqCst) == 0 => {
            Reply::new(429, r#"{"error":"Too many requests"}"#).header("Retry-After", "1")
        }
        Some(PAGE2_CURSOR) if c2.fetch_add(1, Ordering::SeqCst) < 2 => {
            Reply::new(500, "<html>Internal Server Error</html>")
        }
        _ => replay(req),
    });
    let dir = tmp("retry");
    let out = dir.join("lora.jsonl");
    let o = fetch(&server, &out, &["--retries", "3"]);
    let err = stderr(&o);
    assert!(o.status.success(), "{err}");
    assert!(
        err.contains("HTTP 429 (Retry-After: 1); retry 1 of 3"),
        "{err}"
    );
    assert!(err.contains("HTTP 500; retry 2 of 3"), "{err}");
    let c = |s: &str| Some(s.to_string());
    assert_eq!(
        cursors(&server),
        [
            None,
            None,
            c(PAGE2_CURSOR),
            c(PAGE2_CURSOR),
            c(PAGE2_CURSOR),
            c(PAGE3_CURSOR)
        ]
    );
    assert_eq!(ids(&out), ALL_IDS);

    // Retries are bounded: a server that keeps failing stops the fetch with the reason.
    let server = serve(|_| Reply::new(503, "busy"));
    let o = fetch(
        &server,
        &dir.join("other.jsonl"),
        &["--retries", "2", "--quiet"],
    );
    let err = stderr(&o);
    assert!(!o.status.success(), "{err}");
    assert!(
        err.contains("HTTP 503; gave up after 3 attempts") && err.contains("the server said: busy"),
        "{err}"
    );
    assert!(
        !err.contains("retry 1 of"),
        "--quiet hides retry notices: {err}"
    );
    assert_eq!(server.requests().len(), 3);
}

#[test]
fn resumes_without_refetching_done_pages() {
    let dead = Arc::new(AtomicBool::new(false));
    let d2 = dead.clone();
    let server = serve(move |req| {
        if d2.load(Ordering::SeqCst) {
            Reply::dropped()
        } else {
            replay(req)
        }
    });
    let dir = tmp("resume");
    let out = dir.join("lora.jsonl");

    // --max-pages 1: one page, then stop with a resumable state.
    let o = fetch(&server, &out, &["--max-pages", "1"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("more pages remain"), "{}", stderr(&o));
    assert_eq!(
        (ids(&out), state(&out)["pages_done"].as_u64()),
        (ALL_IDS[..3].to_vec(), Some(1))
    );

    // The server dies: the run fails after its retries and keeps the state.
    dead.store(true, Ordering::SeqCst);
    let o = fetch(&server, &out, &["--retries", "1"]);
    let err = stderr(&o);
    assert!(!o.status.success(), "{err}");
    assert!(
        err.contains("resuming after page 1")
            && err.contains("fetching page 2")
            && err.contains("rerun the same command to resume"),
        "{err}"
    );
    assert_eq!(state(&out)["pages_done"].as_u64(), Some(1));
    // As if a run had been killed while writing page 2.
    std::fs::write(
        &out,
        [
            std::fs::read(&out).unwrap(),
            b"{\"id\": 1, \"trunc".to_vec(),
        ]
        .concat(),
    )
    .unwrap();

    // Another query cannot resume this state.
    let o = fetch(&server, &out, &["--param", "nsfw=false"]);
    assert!(
        !o.status.success() && stderr(&o).contains("--restart"),
        "{}",
        stderr(&o)
    );

    // Back up: the fetch resumes at page 2; page 1 was fetched once in all.
    dead.store(false, Ordering::SeqCst);
    let o = fetch(&server, &out, &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("fetched 2 pages (5 items) in this run; 3 pages, 8 items"),
        "{}",
        stderr(&o)
    );
    assert_eq!(ids(&out), ALL_IDS);
    let page1 = cursors(&server).iter().filter(|c| c.is_none()).count();
    assert_eq!(page1, 1, "page 1 fetched again: {:?}", cursors(&server));

    // --restart starts over; an existing output without state is refused.
    std::fs::remove_file(format!("{}.state.json", out.display())).unwrap();
    let o = fetch(&server, &out, &[]);
    assert!(
        !o.status.success() && stderr(&o).contains("pass --restart"),
        "{}",
        stderr(&o)
    );
    let o = fetch(&server, &out, &["--restart", "--quiet"]);
    assert!(
        o.status.success() && stderr(&o).is_empty(),
        "{}",
        stderr(&o)
    );
    assert_eq!(ids(&out), ALL_IDS);
}

#[test]
fn stops_on_404_with_a_clear_message() {
    let server = serve(|_| Reply::new(404, r#"{"error":"Not found"}"#));
    let dir = tmp("404");
    let o = fetch(&server, &dir.join("lora.jsonl"), &[]);
    let err = stderr(&o);
    assert!(!o.status.success());
    assert!(err.starts_with("error: fetching page 1"), "{err}");
    assert!(
        err.contains("HTTP 404 (check --base-url): not retried")
            && err.contains(r#"the server said: {"error":"Not found"}"#),
        "{err}"
    );
    assert_eq!(server.requests().len(), 1);

    // A 200 that is not a page (an HTML error page) is retried, then reported.
    let server = serve(|_| Reply::new(200, "<html>maintenance</html>"));
    let o = fetch(&server, &dir.join("html.jsonl"), &["--retries", "1"]);
    assert!(
        !o.status.success()
            && stderr(&o).contains("bad page: invalid catalog page: not a JSON document"),
        "{}",
        stderr(&o)
    );
    assert_eq!(server.requests().len(), 2);
}
