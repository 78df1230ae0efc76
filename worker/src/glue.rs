//! workers-rs entry point (wasm32 only): reads the body (capped), gets the isolate's index
//! (`load`), answers through `api::handle` with CORS for the origins in the `ALLOWED_ORIGINS` var,
//! and makes the LLM composer's HTTP request when a compose request asks for it (`composer: "llm"`,
//! endpoint from `config::LlmConfig`), aborted after its timeout.

use std::cell::Cell;

use futures_util::future::{select, Either};
use futures_util::StreamExt;
use stylus_core::EMBEDDER_ID;
use worker::{console_error, console_warn, event, AbortController, Context, Delay, Env, Fetch, Headers, Method, Request, RequestInit, Response, Result};

use crate::api::{self, Ctx, IndexState, Isolate, Step, MAX_BODY_BYTES};
use crate::config::LlmConfig;
use crate::llm::{self, Outcome, MAX_REPLY_BYTES};
use crate::load;

thread_local! {
    /// Requests this isolate has served.
    static REQUESTS: Cell<u64> = const { Cell::new(0) };
}

/// What a body read gave: the bytes, or that there were more than the limit.
enum Body {
    Bytes(Vec<u8>),
    TooLarge,
}

/// Reads a byte stream up to `max` bytes. Past the limit chunks are still read and dropped (memory
/// stays bounded; leaving a request body unread breaks the connection for the next request).
async fn read_capped(stream: Option<worker::ByteStream>, max: usize) -> Result<Body> {
    let mut body = Vec::new();
    let mut over = false;
    let Some(mut stream) = stream else { return Ok(Body::Bytes(body)) }; // no body at all
    while let Some(chunk) = stream.next().await {
        let chunk = chunk?;
        over |= body.len() + chunk.len() > max;
        if !over {
            body.extend_from_slice(&chunk);
        }
    }
    Ok(if over { Body::TooLarge } else { Body::Bytes(body) })
}

fn cors_headers(env: &Env, req: &Request) -> Result<Headers> {
    let h = Headers::new();
    let allowed = env.var("ALLOWED_ORIGINS").map(|v| v.to_string()).unwrap_or_default();
    let origin = req.headers().get("Origin")?;
    if let Some(o) = api::cors_origin(&allowed, origin.as_deref()) {
        h.set("Access-Control-Allow-Origin", &o)?;
        h.set("Access-Control-Allow-Methods", "GET, POST, OPTIONS")?;
        h.set("Access-Control-Allow-Headers", "Content-Type")?;
        h.set("Access-Control-Max-Age", "86400")?;
        h.set("Vary", "Origin")?;
    }
    Ok(h)
}

fn json(reply: &api::Reply, headers: Headers) -> Result<Response> {
    Ok(Response::from_json(&reply.body)?.with_status(reply.status).with_headers({
        headers.set("Content-Type", "application/json; charset=utf-8")?;
        headers.set("Cache-Control", "no-store")?;
        headers
    }))
}

/// The LLM composer's endpoint settings (vars and the `LLM_API_KEY` secret).
fn llm_config(env: &Env) -> Option<LlmConfig> {
    LlmConfig::from_vars(&|k| env.var(k).ok().map(|v| v.to_string()))
}

/// POSTs the chat-completions request; the whole exchange (connect, headers, body) is bounded by
/// the configured timeout, after which the request is aborted.
async fn ask_llm(cfg: &LlmConfig, body: &[u8]) -> Outcome {
    let headers = Headers::new();
    let set = |k: &str, v: &str| headers.set(k, v).map_err(|e| e.to_string());
    let prepared = set("Content-Type", "application/json")
        .and_then(|_| set("Accept", "application/json"))
        .and_then(|_| cfg.api_key.as_deref().map_or(Ok(()), |k| set("Authorization", &format!("Bearer {k}"))));
    if let Err(e) = prepared {
        return Outcome::Unreachable(e);
    }
    let mut init = RequestInit::new();
    init.with_method(Method::Post).with_headers(headers).with_body(Some(js_sys::Uint8Array::from(body).into()));
    let req = match Request::new_with_init(&cfg.url, &init) {
        Ok(r) => r,
        Err(e) => return Outcome::Unreachable(e.to_string()),
    };
    let ctrl = AbortController::default();
    let signal = ctrl.signal();
    let exchange = async move {
        let mut resp = match Fetch::Request(req).send_with_signal(&signal).await {
            Ok(r) => r,
            Err(e) => return Outcome::Unreachable(e.to_string()),
        };
        let status = resp.status_code();
        match read_capped(resp.stream().ok(), MAX_REPLY_BYTES).await {
            Ok(Body::Bytes(body)) => Outcome::Answered { status, body },
            Ok(Body::TooLarge) => Outcome::TooLarge,
            Err(e) => Outcome::Unreachable(e.to_string()),
        }
    };
    let timer = Delay::from(std::time::Duration::from_millis(cfg.timeout_ms.into()));
    match select(Box::pin(exchange), Box::pin(timer)).await {
        Either::Left((outcome, _)) => outcome,
        Either::Right(((), _)) => {
            ctrl.abort();
            Outcome::Timeout
        }
    }
}

fn wasm_memory_bytes() -> u64 {
    core::arch::wasm32::memory_size(0) as u64 * 65_536
}

#[event(fetch)]
async fn fetch(mut req: Request, env: Env, _ctx: Context) -> Result<Response> {
    console_error_panic_hook::set_once();
    let requests = REQUESTS.with(|n| {
        n.set(n.get() + 1);
        n.get()
    });
    let headers = cors_headers(&env, &req)?;
    let method = req.method().to_string();
    let path = req.path();
    if method == "OPTIONS" {
        return Ok(Response::empty()?.with_status(204).with_headers(headers));
    }
    // Bodies are counted while read (declared or chunked), never held beyond the limit.
    let body = if method == "POST" {
        match read_capped(req.stream().ok(), MAX_BODY_BYTES).await {
            Ok(Body::Bytes(b)) => b,
            Ok(Body::TooLarge) => return json(&api::too_large(), headers),
            Err(_) => return json(&api::Reply::error(400, "body_unreadable", "the request body could not be read"), headers),
        }
    } else {
        Vec::new()
    };
    let loaded = if api::route_needs_index(&method, &path) {
        match load::index(&env).await {
            Ok(l) => Some(l),
            Err(e) => {
                console_error!("index load failed: {e}");
                None
            }
        }
    } else {
        None
    };
    let index = match &loaded {
        Some(l) => IndexState::Ready {
            index: &l.index,
            bundle_bytes: l.bytes,
            embedder: EMBEDDER_ID,
            source: l.source.as_str(),
            sha256: &l.sha256,
            format_version: l.version,
        },
        None => IndexState::Failed,
    };
    let llm_cfg = llm_config(&env);
    let now = || js_sys::Date::now();
    let isolate = Isolate { requests, index_loads: load::loads(), wasm_memory_bytes: wasm_memory_bytes() };
    let ctx = Ctx { index, llm: llm_cfg.as_ref(), isolate, now: &now };
    let reply = match api::handle(&method, &path, &body, &ctx) {
        Step::Done(r) => r,
        Step::AskLlm(p) => {
            let (Some(cfg), Some(l)) = (&llm_cfg, &loaded) else {
                return json(&api::Reply::error(500, "internal", "the request could not be completed"), headers);
            };
            let outcome = ask_llm(cfg, &p.body).await;
            let (reply, log) = llm::finish(&l.index, &p, cfg, outcome, &now);
            if let Some(line) = log {
                console_warn!("{line}");
            }
            reply
        }
    };
    json(&reply, headers)
}
