//! Request handling independent of the Workers runtime: (method, path, body, index) → (status,
//! JSON). Errors carry stable codes and user-facing messages, never internal details.

use serde_json::{json, Value};
use stylus_core::{ComposeRequest, Index};

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

/// 413 for a body over [`MAX_BODY_BYTES`] (declared or counted while reading).
pub fn too_large() -> Reply {
    Reply::error(413, "body_too_large", &format!("request bodies are limited to {MAX_BODY_BYTES} bytes"))
}

/// The one mapping from library errors to replies: the caller's mistakes are 400 with the
/// library's message (it names the field and the limit); anything else is a generic 500.
fn from_core(e: &stylus_core::Error) -> Reply {
    if e.is_request_error() {
        Reply::error(400, e.code(), &e.to_string())
    } else {
        Reply::error(500, "internal", "the request could not be completed")
    }
}

/// What the isolate knows about its index: loaded, or why it could not be.
pub enum IndexState<'a> {
    Ready { index: &'a Index, bundle_bytes: usize, embedder: &'a str },
    /// The index could not be loaded; the message is logged, the client sees a generic 503.
    Failed,
}

/// `GET /v1/health`.
pub fn health(state: &IndexState<'_>) -> Reply {
    let version = env!("CARGO_PKG_VERSION");
    match state {
        IndexState::Ready { index, bundle_bytes, embedder } => Reply::ok(json!({
            "status": "ok", "version": version,
            "index": {"format_version": stylus_core::bundle::VERSION, "embedder": embedder,
                      "adapters": index.len(), "bytes": bundle_bytes},
        })),
        IndexState::Failed => Reply { status: 503, body: json!({"status": "degraded", "version": version,
            "error": {"code": "index_unavailable", "message": "the adapter index could not be loaded"}}) },
    }
}

fn index_or_503<'a>(state: &'a IndexState<'a>) -> Result<&'a Index, Reply> {
    match state {
        IndexState::Ready { index, .. } => Ok(index),
        IndexState::Failed => Err(Reply::error(503, "index_unavailable", "the adapter index could not be loaded; retry later")),
    }
}

/// `POST /v1/compose`.
pub fn compose(state: &IndexState<'_>, body: &[u8], now: &dyn Fn() -> f64) -> Reply {
    if body.is_empty() {
        return Reply::error(400, "body_empty", "send a JSON compose request, e.g. {\"prompt\": \"a fox\"}");
    }
    if body.len() > MAX_BODY_BYTES {
        return too_large();
    }
    let index = match index_or_503(state) {
        Ok(i) => i,
        Err(r) => return r,
    };
    let res = ComposeRequest::from_json(body).and_then(|req| index.compose_timed(&req, now));
    match res.map(|r| serde_json::to_value(&r)) {
        Ok(Ok(v)) => Reply::ok(v),
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
    match index.card(id).map(serde_json::to_value) {
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
pub fn handle(method: &str, path: &str, body: &[u8], state: &IndexState<'_>, now: &dyn Fn() -> f64) -> Reply {
    match (method, path) {
        ("GET", "/v1/health") => health(state),
        ("POST", "/v1/compose") => compose(state, body, now),
        ("GET", p) if p.starts_with("/v1/adapters/") => adapter(state, &p["/v1/adapters/".len()..]),
        (_, "/v1/health" | "/v1/compose") => Reply::error(405, "method_not_allowed", "use GET for /v1/health and POST for /v1/compose"),
        (_, p) if p.starts_with("/v1/adapters/") => Reply::error(405, "method_not_allowed", "use GET"),
        _ => Reply::error(404, "not_found", "no such route; see /v1/health, /v1/compose, /v1/adapters/{id}"),
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
mod tests {
    use super::*;
    use stylus_core::Card;

    fn index() -> Index {
        let mut fox = Card::new(1, "Fox Style");
        fox.tags = vec!["fox".into(), "style".into()];
        let mut forest = Card::new(2, "Misty Forest");
        forest.tags = vec!["forest".into(), "background".into()];
        Index::build(vec![fox, forest]).unwrap()
    }

    fn ready(ix: &Index) -> IndexState<'_> {
        IndexState::Ready { index: ix, bundle_bytes: 10, embedder: "bm25-v1" }
    }

    fn zero() -> f64 {
        0.0
    }

    #[test]
    fn health_reports_the_index() {
        let ix = index();
        let r = handle("GET", "/v1/health", b"", &ready(&ix), &zero);
        assert_eq!(r.status, 200);
        assert_eq!(r.body["index"]["adapters"], 2);
        assert_eq!(handle("GET", "/v1/health", b"", &IndexState::Failed, &zero).status, 503);
    }

    #[test]
    fn compose_answers_and_rejects_bad_input_with_codes() {
        let ix = index();
        let st = ready(&ix);
        let r = handle("POST", "/v1/compose", br#"{"prompt":"a fox in a misty forest","num_images":2}"#, &st, &zero);
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(r.body["images"].as_array().unwrap().len(), 2);
        let cases: &[(&[u8], u16, &str)] = &[
            (b"", 400, "body_empty"),
            (b"{not json", 400, "invalid_request"),
            (br#"{"prompt": 5}"#, 400, "invalid_request"),
            (br#"{"prompt":"x","surprise":1}"#, 400, "invalid_request"),
            (br#"{"prompt":"   "}"#, 400, "prompt_empty"),
            (br#"{"prompt":"x","options":{"top_k":1000000000}}"#, 400, "top_k_out_of_range"),
            (br#"{"prompt":"x","num_images":1000000}"#, 400, "num_images_out_of_range"),
        ];
        for (body, status, code) in cases {
            let r = handle("POST", "/v1/compose", body, &st, &zero);
            assert_eq!((r.status, r.body["error"]["code"].as_str().unwrap()), (*status, *code), "{}", String::from_utf8_lossy(body));
        }
        let big = vec![b' '; MAX_BODY_BYTES + 1];
        assert_eq!(handle("POST", "/v1/compose", &big, &st, &zero).status, 413);
        let long = format!(r#"{{"prompt":"{}"}}"#, "a".repeat(100_000));
        assert_eq!(handle("POST", "/v1/compose", long.as_bytes(), &st, &zero).body["error"]["code"], "prompt_too_long");
        assert_eq!(handle("POST", "/v1/compose", br#"{"prompt":"x"}"#, &IndexState::Failed, &zero).status, 503);
    }

    #[test]
    fn adapters_and_routing() {
        let ix = index();
        let st = ready(&ix);
        assert_eq!(handle("GET", "/v1/adapters/2", b"", &st, &zero).body["name"], "Misty Forest");
        assert_eq!(handle("GET", "/v1/adapters/3", b"", &st, &zero).status, 404);
        assert_eq!(handle("GET", "/v1/adapters/x", b"", &st, &zero).status, 400);
        assert_eq!(handle("DELETE", "/v1/adapters/2", b"", &st, &zero).status, 405);
        assert_eq!(handle("GET", "/v1/compose", b"", &st, &zero).status, 405);
        assert_eq!(handle("GET", "/nope", b"", &st, &zero).body["error"]["code"], "not_found");
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
