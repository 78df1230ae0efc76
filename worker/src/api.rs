//! Request handling independent of the Workers runtime: (method, path, body, what the isolate knows)
//! → a JSON reply, or, for `composer: "llm"`, the LLM request to make first ([`Step::AskLlm`], finished
//! by [`crate::llm::finish`]). Errors carry stable codes and user-facing messages, never internal details.

use serde_json::{json, Value};
use stylus_core::{ComposeRequest, Index};

use crate::config::LlmConfig;
use crate::llm::{self, Composer, Pending};

/// Largest accepted request body (a 10,000-character prompt in 4-byte UTF-8 plus its negative).
pub const MAX_BODY_BYTES: usize = 128 * 1024;

/// An HTTP answer: status code and JSON body.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    pub status: u16,
    pub body: Value,
}

impl Reply {
    pub fn ok(body: Value) -> Self {
        Reply { status: 200, body }
    }
    /// A JSON error with a stable machine code and a human message.
    pub fn error(status: u16, code: &str, message: &str) -> Self {
        Reply { status, body: json!({"error": {"code": code, "message": message}}) }
    }
}

/// What to do with a request: answer, or ask the LLM composer first.
#[derive(Debug)]
pub enum Step {
    Done(Reply),
    AskLlm(Box<Pending>),
}

/// 413 for a body over [`MAX_BODY_BYTES`] (declared or counted while reading).
pub fn too_large() -> Reply {
    Reply::error(413, "body_too_large", &format!("request bodies are limited to {MAX_BODY_BYTES} bytes"))
}

/// The one mapping from library errors to replies: the caller's mistakes are 400 with the
/// library's message (it names the field and the limit); anything else is a generic 500.
pub(crate) fn from_core(e: &stylus_core::Error) -> Reply {
    if e.is_request_error() {
        Reply::error(400, e.code(), &e.to_string())
    } else {
        Reply::error(500, "internal", "the request could not be completed")
    }
}

/// What the isolate knows about its index: loaded, or why it could not be.
pub enum IndexState<'a> {
    Ready {
        index: &'a Index,
        bundle_bytes: usize,
        embedder: &'a str,
        /// Where it came from: "assets" or "r2".
        source: &'a str,
        /// sha256 of the bundle's content (its header's), to tell which index is live.
        sha256: &'a str,
        /// The bundle's format version.
        format_version: u32,
    },
    /// The index could not be loaded; the reason is logged, the client sees a generic 503.
    Failed,
}

/// Counters of this isolate, reported by `/v1/health`.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Isolate {
    /// Requests this isolate has served, this one included.
    pub requests: u64,
    /// Times this isolate loaded the index (1 once loaded: never again while it lives).
    pub index_loads: u32,
    /// Size of the wasm linear memory, bytes (it only grows: the high-water mark).
    pub wasm_memory_bytes: u64,
}

/// Everything a request may need besides itself.
pub struct Ctx<'a> {
    pub index: IndexState<'a>,
    /// The LLM composer, when `LLM_BASE_URL` and `LLM_MODEL` are set.
    pub llm: Option<&'a LlmConfig>,
    pub isolate: Isolate,
    /// A millisecond clock for per-stage timings (on Workers it only advances across I/O).
    pub now: &'a dyn Fn() -> f64,
}

/// `GET /v1/health`.
pub fn health(ctx: &Ctx<'_>) -> Reply {
    let version = env!("CARGO_PKG_VERSION");
    let composers: &[&str] = if ctx.llm.is_some() { &["local", "llm"] } else { &["local"] };
    let i = ctx.isolate;
    let isolate = json!({"requests": i.requests, "index_loads": i.index_loads, "wasm_memory_bytes": i.wasm_memory_bytes});
    match ctx.index {
        IndexState::Ready { index, bundle_bytes, embedder, source, sha256, format_version } => Reply::ok(json!({
            "status": "ok", "version": version, "composers": composers, "isolate": isolate,
            "index": {"format_version": format_version, "embedder": embedder,
                      "adapters": index.len(), "bytes": bundle_bytes, "source": source, "sha256": sha256},
        })),
        IndexState::Failed => Reply {
            status: 503,
            body: json!({"status": "degraded", "version": version, "composers": composers, "isolate": isolate,
                "error": {"code": "index_unavailable", "message": "the adapter index could not be loaded"}}),
        },
    }
}

fn index_or_503<'a>(state: &'a IndexState<'a>) -> Result<&'a Index, Reply> {
    match state {
        IndexState::Ready { index, .. } => Ok(index),
        IndexState::Failed => Err(Reply::error(503, "index_unavailable", "the adapter index could not be loaded; retry later")),
    }
}

/// `POST /v1/compose`: the local composer answers, or the LLM is asked first (`composer: "llm"`).
pub fn compose(ctx: &Ctx<'_>, body: &[u8]) -> Step {
    if body.is_empty() {
        return Step::Done(Reply::error(400, "body_empty", "send a JSON compose request, e.g. {\"prompt\": \"a fox\"}"));
    }
    if body.len() > MAX_BODY_BYTES {
        return Step::Done(too_large());
    }
    let (req, composer) = match llm::parse_request(body) {
        Ok(r) => r,
        Err(reply) => return Step::Done(reply),
    };
    let index = match index_or_503(&ctx.index) {
        Ok(i) => i,
        Err(r) => return Step::Done(r),
    };
    match (composer, ctx.llm) {
        (Composer::Local, _) => Step::Done(compose_local(index, &req, ctx.now, json!({"used": "local"}))),
        (Composer::Llm, None) => {
            Step::Done(Reply::error(400, "composer_unavailable", "this worker has no LLM composer configured; leave out \"composer\" or use \"local\""))
        }
        (Composer::Llm, Some(cfg)) => match llm::plan(index, req, cfg) {
            Ok(p) => Step::AskLlm(Box::new(p)),
            Err(reply) => Step::Done(reply),
        },
    }
}

/// The local composer's answer, with `composer` (which composer answered and why) added.
pub(crate) fn compose_local(index: &Index, req: &ComposeRequest, now: &dyn Fn() -> f64, composer: Value) -> Reply {
    with_composer(index.compose_timed(req, now), composer)
}

/// JSON of a library value, through text: f32 fields keep their shortest form (`0.7`, as the CLI
/// prints them), where `serde_json::to_value` would widen them to f64 (`0.699999988079071`).
fn json_of<T: serde::Serialize>(x: &T) -> serde_json::Result<Value> {
    serde_json::from_str(&serde_json::to_string(x)?)
}

/// A compose result as a reply, its `composer` field added.
pub(crate) fn with_composer(res: Result<stylus_core::ComposeResponse, stylus_core::Error>, composer: Value) -> Reply {
    match res.map(|r| json_of(&r)) {
        Ok(Ok(mut v)) => {
            v["composer"] = composer;
            Reply::ok(v)
        }
        Ok(Err(_)) => Reply::error(500, "internal", "the response could not be encoded"),
        Err(e) => from_core(&e),
    }
}

/// `GET /v1/adapters/{id}`.
pub fn adapter(state: &IndexState<'_>, id: &str) -> Reply {
    let index = match index_or_503(state) {
        Ok(i) => i,
        Err(r) => return r,
    };
    let Ok(id) = id.parse::<u64>() else {
        return Reply::error(400, "bad_adapter_id", "adapter ids are Civitai model ids (digits)");
    };
    match index.get(id).map(|c| json_of(&c)) {
        Some(Ok(v)) => Reply::ok(v),
        Some(Err(_)) => Reply::error(500, "internal", "the adapter could not be encoded"),
        None => Reply::error(404, "adapter_not_found", &format!("no adapter {id} in this index")),
    }
}

/// Routes that need the index (others never load it, so a failed index never hides a 404/405).
pub fn route_needs_index(method: &str, path: &str) -> bool {
    matches!((method, path), ("GET", "/v1/health") | ("POST", "/v1/compose")) || (method == "GET" && path.starts_with("/v1/adapters/"))
}

/// Dispatches a request by method and path.
pub fn handle(method: &str, path: &str, body: &[u8], ctx: &Ctx<'_>) -> Step {
    let done = Step::Done;
    match (method, path) {
        ("GET", "/v1/health") => done(health(ctx)),
        ("POST", "/v1/compose") => compose(ctx, body),
        ("GET", p) if p.starts_with("/v1/adapters/") => done(adapter(&ctx.index, &p["/v1/adapters/".len()..])),
        (_, "/v1/health" | "/v1/compose") => done(Reply::error(405, "method_not_allowed", "use GET for /v1/health and POST for /v1/compose")),
        (_, p) if p.starts_with("/v1/adapters/") => done(Reply::error(405, "method_not_allowed", "use GET")),
        _ => done(Reply::error(404, "not_found", "no such route; see /v1/health, /v1/compose, /v1/adapters/{id}")),
    }
}

/// CORS: the `Access-Control-Allow-Origin` value for a request origin, if that origin is allowed.
/// `allowed` is the `ALLOWED_ORIGINS` setting: `*`, or a comma-separated list of origins.
pub fn cors_origin(allowed: &str, origin: Option<&str>) -> Option<String> {
    let origin = origin?;
    if allowed.trim() == "*" {
        return Some("*".into());
    }
    allowed.split(',').map(str::trim).any(|a| !a.is_empty() && a == origin).then(|| origin.to_string())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use stylus_core::Card;

    pub(crate) fn index() -> Index {
        let mut fox = Card::new(1, "Fox Style");
        fox.tags = vec!["fox".into(), "style".into()];
        let mut forest = Card::new(2, "Misty Forest");
        forest.tags = vec!["forest".into(), "background".into()];
        Index::build(vec![fox, forest]).unwrap()
    }

    fn zero() -> f64 {
        0.0
    }

    pub(crate) fn ctx<'a>(ix: Option<&'a Index>, llm: Option<&'a LlmConfig>) -> Ctx<'a> {
        let index = match ix {
            Some(index) => IndexState::Ready { index, bundle_bytes: 10, embedder: "bm25-v1", source: "assets", sha256: "ab", format_version: 1 },
            None => IndexState::Failed,
        };
        Ctx { index, llm, isolate: Isolate { requests: 3, index_loads: 1, wasm_memory_bytes: 65536 }, now: &zero }
    }

    pub(crate) fn reply(s: Step) -> Reply {
        match s {
            Step::Done(r) => r,
            Step::AskLlm(_) => panic!("asked the LLM"),
        }
    }

    #[test]
    fn health_reports_the_index_and_the_isolate() {
        let ix = index();
        let r = reply(handle("GET", "/v1/health", b"", &ctx(Some(&ix), None)));
        assert_eq!(r.status, 200);
        assert_eq!((r.body["index"]["adapters"].as_u64(), r.body["index"]["source"].as_str()), (Some(2), Some("assets")));
        assert_eq!((r.body["isolate"]["index_loads"].as_u64(), r.body["composers"].to_string().as_str()), (Some(1), r#"["local"]"#));
        assert_eq!(reply(handle("GET", "/v1/health", b"", &ctx(None, None))).status, 503);
    }

    #[test]
    fn compose_answers_and_rejects_bad_input_with_codes() {
        let ix = index();
        let st = ctx(Some(&ix), None);
        let r = reply(handle("POST", "/v1/compose", br#"{"prompt":"a fox in a misty forest","num_images":2}"#, &st));
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!((r.body["images"].as_array().unwrap().len(), &r.body["composer"]), (2, &json!({"used": "local"})));
        let cases: &[(&[u8], u16, &str)] = &[
            (b"", 400, "body_empty"),
            (b"{not json", 400, "invalid_request"),
            (br#"{"prompt": 5}"#, 400, "invalid_request"),
            (br#"{"prompt":"x","surprise":1}"#, 400, "invalid_request"),
            (br#"{"prompt":"   "}"#, 400, "prompt_empty"),
            (br#"{"prompt":"x","options":{"top_k":1000000000}}"#, 400, "top_k_out_of_range"),
            (br#"{"prompt":"x","num_images":1000000}"#, 400, "num_images_out_of_range"),
            (br#"{"prompt":"x","composer":"gpt"}"#, 400, "invalid_request"),
            (br#"{"prompt":"x","composer":"llm"}"#, 400, "composer_unavailable"),
        ];
        for (body, status, code) in cases {
            let r = reply(handle("POST", "/v1/compose", body, &st));
            assert_eq!((r.status, r.body["error"]["code"].as_str().unwrap()), (*status, *code), "{}", String::from_utf8_lossy(body));
        }
        let local = reply(handle("POST", "/v1/compose", br#"{"prompt":"a fox","composer":"local"}"#, &st));
        assert_eq!(local.body["composer"]["used"], "local");
        assert_eq!(local.body["topics"][0]["adapters"][0]["weight"].to_string(), "0.8", "f32 in its shortest form");
        let big = vec![b' '; MAX_BODY_BYTES + 1];
        assert_eq!(reply(handle("POST", "/v1/compose", &big, &st)).status, 413);
        let long = format!(r#"{{"prompt":"{}"}}"#, "a".repeat(100_000));
        assert_eq!(reply(handle("POST", "/v1/compose", long.as_bytes(), &st)).body["error"]["code"], "prompt_too_long");
        assert_eq!(reply(handle("POST", "/v1/compose", br#"{"prompt":"x"}"#, &ctx(None, None))).status, 503);
    }

    #[test]
    fn adapters_and_routing() {
        let ix = index();
        let st = ctx(Some(&ix), None);
        let get = |m: &str, p: &str| reply(handle(m, p, b"", &st));
        assert_eq!(get("GET", "/v1/adapters/2").body["name"], "Misty Forest");
        assert_eq!(get("GET", "/v1/adapters/3").status, 404);
        assert_eq!(get("GET", "/v1/adapters/x").status, 400);
        assert_eq!(get("DELETE", "/v1/adapters/2").status, 405);
        assert_eq!(get("GET", "/v1/compose").status, 405);
        assert_eq!(get("GET", "/nope").body["error"]["code"], "not_found");
    }

    #[test]
    fn cors() {
        assert_eq!(cors_origin("*", Some("https://a.example")).as_deref(), Some("*"));
        assert_eq!(cors_origin("https://a.example, https://b.example", Some("https://b.example")).as_deref(), Some("https://b.example"));
        assert_eq!(cors_origin("https://a.example", Some("https://evil.example")), None);
        assert_eq!(cors_origin("", Some("https://a.example")), None);
        assert_eq!(cors_origin("*", None), None);
    }
}
