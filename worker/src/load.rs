//! Loading the index bundle (wasm32 only): once per isolate, lazily on the first request that needs
//! it (never at start-up, whose CPU budget is small), from the static assets or an R2 bucket
//! (`config::IndexConfig`). The manifest (`stylus index build`'s `OUT.json`) is read first, then its
//! files stream into one buffer (`assemble`); the bundle must have the manifest's size (a stale
//! manifest or a half-finished upload is refused) and the format version, embedder and checksums this
//! build reads (`bundle::header`, `Index::from_bundle`). Concurrent first requests share one load; a failed load is retried by the
//! next request.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use futures_util::future::{LocalBoxFuture, Shared};
use futures_util::{FutureExt, StreamExt};
use stylus_core::{bundle, Index};
use worker::{ByteStream, Env};

use crate::assemble::Assembler;
use crate::config::{IndexConfig, Source, ASSETS_BINDING, BUCKET_BINDING};

/// The isolate's index and what `/v1/health` says about it.
pub struct Loaded {
    pub index: Index,
    pub bytes: usize,
    pub source: Source,
    pub sha256: String,
    /// The bundle's format version (as written in it; `bundle::header` accepted it).
    pub version: u32,
}

type Load = Shared<LocalBoxFuture<'static, Result<Rc<Loaded>, Rc<str>>>>;

thread_local! {
    /// The load in progress or done: every request of the isolate awaits the same one.
    static INDEX: RefCell<Option<Load>> = const { RefCell::new(None) };
    /// Loads started by this isolate.
    static LOADS: Cell<u32> = const { Cell::new(0) };
}

/// Loads started by this isolate so far.
pub fn loads() -> u32 {
    LOADS.with(Cell::get)
}

/// The isolate's index, loading it on first use; `Err` carries the reason for the log.
pub async fn index(env: &Env) -> Result<Rc<Loaded>, Rc<str>> {
    let load = INDEX.with(|c| {
        c.borrow_mut()
            .get_or_insert_with(|| {
                LOADS.with(|n| n.set(n.get() + 1));
                let env = env.clone();
                async move { load(&env).await.map(Rc::new).map_err(Rc::from) }.boxed_local().shared()
            })
            .clone()
    });
    let res = load.await;
    if res.is_err() {
        INDEX.with(|c| *c.borrow_mut() = None);
    }
    res
}

fn var(env: &Env, name: &str) -> Option<String> {
    env.var(name).ok().map(|v| v.to_string())
}

/// Streams one file of the index (manifest or shard) from the configured source.
async fn open(env: &Env, source: Source, path: &str) -> Result<ByteStream, String> {
    match source {
        Source::Assets => {
            let assets = env.assets(ASSETS_BINDING).map_err(|e| format!("no {ASSETS_BINDING} binding: {e}"))?;
            let mut resp = assets.fetch(format!("https://assets.local/{path}"), None).await.map_err(|e| format!("asset {path}: {e}"))?;
            if resp.status_code() != 200 {
                return Err(format!("asset {path}: HTTP {}", resp.status_code()));
            }
            resp.stream().map_err(|e| format!("asset {path}: {e}"))
        }
        Source::R2 => {
            let bucket = env.bucket(BUCKET_BINDING).map_err(|e| format!("no {BUCKET_BINDING} binding: {e}"))?;
            let obj = bucket.get(path).execute().await.map_err(|e| format!("R2 {path}: {e}"))?;
            let obj = obj.ok_or_else(|| format!("R2 object {path} not found"))?;
            let body = obj.body().ok_or_else(|| format!("R2 object {path} has no body"))?;
            body.stream().map_err(|e| format!("R2 {path}: {e}"))
        }
    }
}

/// Largest manifest read.
const MAX_MANIFEST_BYTES: usize = 1 << 20;

async fn load(env: &Env) -> Result<Loaded, String> {
    let cfg = IndexConfig::from_vars(&|k| var(env, k))?;
    let src = cfg.source.as_str();
    let mut raw = Vec::new();
    let mut stream = open(env, cfg.source, &cfg.manifest).await?;
    while let Some(chunk) = stream.next().await {
        raw.extend_from_slice(&chunk.map_err(|e| format!("{src} {}: {e}", cfg.manifest))?);
        if raw.len() > MAX_MANIFEST_BYTES {
            return Err(format!("{src} {}: larger than {MAX_MANIFEST_BYTES} bytes, not a manifest", cfg.manifest));
        }
    }
    let manifest: bundle::Manifest = serde_json::from_slice(&raw).map_err(|e| format!("{src} {}: not an index manifest: {e}", cfg.manifest))?;
    // Each file streams straight into one buffer of the bundle's size (peak memory: one bundle).
    let mut asm = Assembler::new(manifest.shards.len(), manifest.bytes).map_err(|e| format!("{src} {}: {e}", cfg.manifest))?;
    for s in &manifest.shards {
        let path = cfg.shard_path(s)?;
        let mut stream = open(env, cfg.source, &path).await?;
        asm.begin_file().map_err(|e| format!("{src} {path}: {e}"))?;
        while let Some(chunk) = stream.next().await {
            asm.push(&chunk.map_err(|e| format!("{src} {path}: {e}"))?).map_err(|e| format!("{src} {path}: {e}"))?;
        }
        asm.end_file().map_err(|e| format!("{src} {path}: {e}"))?;
    }
    let bytes = asm.finish().map_err(|e| format!("{src} {}: {e}", cfg.manifest))?;
    let (header, _) = bundle::header(&bytes).map_err(|e| format!("{src} {}: {e}", manifest.bundle))?;
    let version = u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]);
    let index = Index::from_bundle(&bytes).map_err(|e| format!("{src} {}: {e}", manifest.bundle))?;
    Ok(Loaded { index, bytes: bytes.len(), source: cfg.source, sha256: header.sha256, version })
}
