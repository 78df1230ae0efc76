//! workers-rs entry point (wasm32 only): loads the index bundle once per isolate, lazily, from the
//! `ASSETS` binding (`/index/index.stylusix.json` lists the shards), then answers through `api::handle`
//! with CORS for the origins in the `ALLOWED_ORIGINS` var.

use std::cell::RefCell;
use std::rc::Rc;

use futures_util::StreamExt;
use stylus_core::{bundle, Index, EMBEDDER_ID};
use worker::{console_error, event, Context, Env, Headers, Request, Response, Result};

use crate::api::{self, IndexState, MAX_BODY_BYTES};

struct Loaded {
    index: Index,
    bytes: usize,
}

thread_local! {
    /// The isolate's index: loaded on the first request that needs it (never at start-up, which
    /// has a small CPU limit), then shared by every later request of this isolate.
    static INDEX: RefCell<Option<Rc<Loaded>>> = const { RefCell::new(None) };
}

async fn fetch_asset(env: &Env, path: &str) -> std::result::Result<Vec<u8>, String> {
    let assets = env.assets("ASSETS").map_err(|e| format!("no ASSETS binding: {e}"))?;
    let mut resp = assets.fetch(format!("https://assets.local/index/{path}"), None).await.map_err(|e| e.to_string())?;
    if resp.status_code() != 200 {
        return Err(format!("asset index/{path}: HTTP {}", resp.status_code()));
    }
    resp.bytes().await.map_err(|e| e.to_string())
}

async fn load(env: &Env) -> std::result::Result<Loaded, String> {
    let manifest: bundle::Manifest =
        serde_json::from_slice(&fetch_asset(env, "index.stylusix.json").await?).map_err(|e| format!("index.stylusix.json: {e}"))?;
    let mut parts = Vec::with_capacity(manifest.shards.len());
    for s in &manifest.shards {
        parts.push(fetch_asset(env, s).await?);
    }
    let bytes = bundle::assemble(&parts).map_err(|e| e.to_string())?;
    drop(parts);
    let index = Index::from_bundle(&bytes).map_err(|e| e.to_string())?;
    Ok(Loaded { index, bytes: bytes.len() })
}

async fn index(env: &Env) -> Option<Rc<Loaded>> {
    if let Some(l) = INDEX.with(|c| c.borrow().clone()) {
        return Some(l);
    }
    match load(env).await {
        Ok(l) => {
            let l = Rc::new(l);
            INDEX.with(|c| *c.borrow_mut() = Some(l.clone()));
            Some(l)
        }
        Err(e) => {
            console_error!("index load failed: {e}");
            None
        }
    }
}

/// The body, or `None` when it exceeds [`MAX_BODY_BYTES`]: past the limit, chunks are read and
/// dropped (memory stays bounded; leaving the body unread breaks the connection for the next request).
async fn read_capped(req: &mut Request) -> Result<Option<Vec<u8>>> {
    let mut body = Vec::new();
    let mut over = false;
    let mut stream = match req.stream() {
        Ok(s) => s,
        Err(_) => return Ok(Some(body)), // no body at all
    };
    while let Some(chunk) = stream.next().await {
        let chunk = chunk?;
        over |= body.len() + chunk.len() > MAX_BODY_BYTES;
        if !over {
            body.extend_from_slice(&chunk);
        }
    }
    Ok((!over).then_some(body))
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

#[event(fetch)]
async fn fetch(mut req: Request, env: Env, _ctx: Context) -> Result<Response> {
    console_error_panic_hook::set_once();
    let headers = cors_headers(&env, &req)?;
    let method = req.method().to_string();
    let path = req.path();
    if method == "OPTIONS" {
        return Ok(Response::empty()?.with_status(204).with_headers(headers));
    }
    // Bodies are counted while read (declared or chunked), never held beyond the limit.
    let body = if method == "POST" {
        match read_capped(&mut req).await {
            Ok(Some(b)) => b,
            Ok(None) => return json(&api::too_large(), headers),
            Err(_) => return json(&api::Reply::error(400, "body_unreadable", "the request body could not be read"), headers),
        }
    } else {
        Vec::new()
    };
    let loaded = if api::route_needs_index(&method, &path) { index(&env).await } else { None };
    let state = match &loaded {
        Some(l) => IndexState::Ready { index: &l.index, bundle_bytes: l.bytes, embedder: EMBEDDER_ID },
        None => IndexState::Failed,
    };
    let now = || js_sys::Date::now();
    json(&api::handle(&method, &path, &body, &state, &now), headers)
}
