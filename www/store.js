// Stylus download store (page, Web Worker or service worker): files (model shards, LoRAs, engine
// wasm parts) streamed with progress (bytes, rate, ETA), sha256-verified before use, kept in the
// Cache API (IndexedDB when the Cache API is missing or refuses), resumed with an HTTP Range request
// from the stored partial after an interruption, never downloaded twice. Errors are `StoreError`s
// whose message starts with a stable code: download_failed, download_interrupted, hash_mismatch,
// quota_exceeded, bad_manifest. Types: stylus.d.ts.

export const CACHE_NAME = 'stylus-files-v1';
const DB_NAME = 'stylus-store';
const FLUSH_BYTES = 16 << 20; // the partial is saved at least every 16 MiB

const g = globalThis;
let backend = (g.caches && typeof g.caches.open === 'function') ? 'cache' : 'idb';

export class StoreError extends Error {
  constructor(code, message, extra = {}) {
    super(`${code}: ${message}`);
    this.code = code;
    Object.assign(this, extra);
  }
}

/** Forces a backend ('cache' or 'idb'); returns the one in use. */
export function configure({ backend: b } = {}) {
  if (b === 'cache' || b === 'idb') backend = b;
  return backend;
}

const abs = (url) => new URL(url, g.location?.href).href;
const mb = (n) => `${(n / 1e6).toFixed(1)} MB`;

export async function sha256Hex(bytes) {
  const d = await crypto.subtle.digest('SHA-256', bytes);
  return Array.from(new Uint8Array(d), (b) => b.toString(16).padStart(2, '0')).join('');
}

// ---- IndexedDB (partials always; files when the Cache API is not used) ----
let dbp = null;
function db() {
  dbp ??= new Promise((resolve, reject) => {
    const r = indexedDB.open(DB_NAME, 1);
    r.onupgradeneeded = () => { r.result.createObjectStore('files'); r.result.createObjectStore('partial'); };
    r.onsuccess = () => resolve(r.result);
    r.onerror = () => reject(r.error);
  });
  return dbp;
}
async function idb(store, mode, fn) {
  const d = await db();
  return new Promise((resolve, reject) => {
    const tx = d.transaction(store, mode);
    const req = fn(tx.objectStore(store));
    tx.oncomplete = () => resolve(req?.result);
    tx.onerror = tx.onabort = () => reject(tx.error || req?.error);
  });
}
const idbGet = (s, k) => idb(s, 'readonly', (o) => o.get(k));
const idbPut = (s, k, v) => idb(s, 'readwrite', (o) => o.put(v, k));
const idbDel = (s, k) => idb(s, 'readwrite', (o) => o.delete(k));

function quotaError(e, need) {
  return e && (e.name === 'QuotaExceededError' || /quota/i.test(String(e.message)));
}

async function quotaMessage(need) {
  const est = await estimate();
  const free = est ? Math.max(0, est.quota - est.usage) : null;
  return `storing needs ${mb(need)} more` + (est ? `; ${mb(free)} free of ${mb(est.quota)} (used ${mb(est.usage)})` : '')
    + '. Free space (site settings → storage) or allow persistent storage.';
}

// ---- stored files ----
/** The stored bytes of a URL, or null (never touches the network). */
export async function cached(url) {
  const key = abs(url);
  try {
    if (backend === 'cache') {
      const r = await (await caches.open(CACHE_NAME)).match(key);
      if (r) return new Uint8Array(await r.arrayBuffer());
    }
    const v = await idbGet('files', key);
    if (v) return new Uint8Array(v instanceof Blob ? await v.arrayBuffer() : v);
  } catch { /* storage unavailable: treated as a miss */ }
  return null;
}

async function put(key, bytes, type) {
  try {
    if (backend === 'cache') {
      const c = await caches.open(CACHE_NAME);
      await c.put(key, new Response(bytes, { headers: { 'content-type': type || 'application/octet-stream', 'content-length': String(bytes.length) } }));
      return 'cache';
    }
  } catch (e) {
    if (quotaError(e)) throw new StoreError('quota_exceeded', await quotaMessage(bytes.length), { need: bytes.length });
    // Cache API refused for another reason: fall back to IndexedDB.
  }
  try {
    await idbPut('files', key, new Blob([bytes]));
    return 'idb';
  } catch (e) {
    if (quotaError(e)) throw new StoreError('quota_exceeded', await quotaMessage(bytes.length), { need: bytes.length });
    throw new StoreError('storage_failed', `could not store ${key}: ${e?.message || e}`);
  }
}

/** Removes a URL's stored file and partial. */
export async function remove(url) {
  const key = abs(url);
  try { if (g.caches) await (await caches.open(CACHE_NAME)).delete(key); } catch {}
  try { await idbDel('files', key); await idbDel('partial', key); } catch {}
}

/** Bytes kept of an interrupted download of `url` (0 when none). */
export async function partialBytes(url) {
  try { return (await idbGet('partial', abs(url)))?.loaded || 0; } catch { return 0; }
}

/** navigator.storage.estimate(), or null. */
export async function estimate() {
  try { return await g.navigator?.storage?.estimate?.(); } catch { return null; }
}

/** Asks for persistent storage (windows only; a worker gets null). */
export async function requestPersistence() {
  const s = g.navigator?.storage;
  if (!s?.persist) return null;
  try { return (await s.persisted()) || (await s.persist()); } catch { return false; }
}

async function checkRoom(need) {
  const est = await estimate();
  if (est && est.quota && need > est.quota - est.usage) {
    throw new StoreError('quota_exceeded', await quotaMessage(need), { need });
  }
}

function concat(parts, n) {
  const out = new Uint8Array(n);
  let o = 0;
  for (const p of parts) { out.set(p, o); o += p.length; }
  return out;
}

/**
 * The verified bytes of `url`: from the store when there (sha256 checked again), else downloaded
 * (resuming a stored partial with a Range request; `retries` more tries after an interruption),
 * verified against `sha256` (hex, any case) and stored. onProgress({what, url, loaded, total, rate,
 * eta, cached, resumedFrom}).
 */
export async function fetchVerified(url, { sha256 = null, size = 0, what = 'file', onProgress = () => {}, retries = 3, type = null, signal } = {}) {
  const key = abs(url);
  const want = sha256 ? String(sha256).toLowerCase() : null;
  const hit = await cached(key);
  if (hit) {
    if (!want || (await sha256Hex(hit)) === want) {
      onProgress({ what, url: key, loaded: hit.length, total: hit.length, rate: 0, eta: 0, cached: true, resumedFrom: 0 });
      return hit;
    }
    await remove(key); // a stored file that no longer verifies is downloaded again
  }
  let partial = null;
  try { partial = await idbGet('partial', key); } catch {}
  let parts = partial ? [new Uint8Array(await partial.blob.arrayBuffer())] : [];
  let loaded = partial?.loaded || 0;
  if (size) await checkRoom(size - loaded);
  const resumedFrom = loaded;
  const t0 = performance.now();
  let fresh = 0; // bytes received in this call (for the rate)
  let total = size || partial?.total || 0;
  const save = async () => {
    if (!loaded) return;
    const blob = new Blob(parts);
    parts = [new Uint8Array(await blob.arrayBuffer())];
    try { await idbPut('partial', key, { blob, loaded, total, at: Date.now() }); } catch { /* best effort */ }
  };
  for (let attempt = 0; ; attempt++) {
    let res;
    try {
      res = await fetch(key, { headers: loaded ? { range: `bytes=${loaded}-` } : {}, signal, cache: 'no-store' });
    } catch (e) {
      if (signal?.aborted) throw e;
      if (attempt < retries) { await new Promise((r) => setTimeout(r, 250 * 2 ** attempt)); continue; }
      throw new StoreError(loaded ? 'download_interrupted' : 'download_failed', `${what}: ${key} is unreachable (${e?.message || e})${loaded ? `; ${loaded} bytes kept, retry to resume` : ''}`, { loaded });
    }
    if (res.status === 416 && loaded && total && loaded >= total) break; // the partial was complete
    if (res.status === 200 && loaded) { parts = []; loaded = 0; } // no range support: start over
    else if (res.status === 206) {
      const cr = /bytes (\d+)-\d+\/(\d+|\*)/.exec(res.headers.get('content-range') || '');
      if (cr && Number(cr[1]) !== loaded) { parts = []; loaded = 0; await idbDel('partial', key).catch(() => {}); continue; }
      if (cr && cr[2] !== '*') total = Number(cr[2]);
    } else if (!res.ok) {
      throw new StoreError('download_failed', `${what}: HTTP ${res.status} for ${key}`, { status: res.status });
    }
    if (res.status === 200) total = Number(res.headers.get('content-length')) || total;
    if (total) await checkRoom(total - loaded);
    type ??= res.headers.get('content-type');
    const reader = res.body.getReader();
    let sinceSave = 0;
    try {
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        parts.push(value);
        loaded += value.length;
        fresh += value.length;
        sinceSave += value.length;
        const s = (performance.now() - t0) / 1000;
        const rate = s > 0 ? fresh / s : 0;
        onProgress({ what, url: key, loaded, total, rate, eta: total && rate ? (total - loaded) / rate : null, cached: false, resumedFrom });
        if (sinceSave >= FLUSH_BYTES) { sinceSave = 0; await save(); }
      }
    } catch (e) {
      await save();
      if (signal?.aborted) throw e;
      if (attempt < retries) { await new Promise((r) => setTimeout(r, 250 * 2 ** attempt)); continue; }
      throw new StoreError('download_interrupted', `${what}: the connection broke after ${loaded} of ${total || '?'} bytes of ${key}; ${loaded} bytes are kept and the next try resumes from there`, { loaded, total });
    }
    if (total && loaded < total) { // the body ended early without an error
      await save();
      if (attempt < retries) continue;
      throw new StoreError('download_interrupted', `${what}: got ${loaded} of ${total} bytes of ${key}; the next try resumes`, { loaded, total });
    }
    break;
  }
  const bytes = concat(parts, loaded);
  if (want) {
    const got = await sha256Hex(bytes);
    if (got !== want) {
      await idbDel('partial', key).catch(() => {});
      throw new StoreError('hash_mismatch', `sha256 mismatch: expected ${want}, file has ${got} (${what} ${key}); it was not stored`, { expected: want, got });
    }
  }
  await put(key, bytes, type);
  await idbDel('partial', key).catch(() => {});
  return bytes;
}

/** The bytes a gzip stream decompresses to (the browser's DecompressionStream). */
export async function gunzip(bytes) {
  try {
    const stream = new Blob([bytes]).stream().pipeThrough(new DecompressionStream('gzip'));
    return new Uint8Array(await new Response(stream).arrayBuffer());
  } catch (e) {
    throw new StoreError('bad_encoding', `not a valid gzip stream (${e?.message || e})`);
  }
}

/**
 * A file served gzip-compressed next to itself (`stylus convert --gzip`: `gzip = {file, bytes,
 * sha256}` of the .gz, `sha256` of the file): the .gz goes through fetchVerified (progress, resume,
 * its own sha256, stored compressed), then is decompressed and checked against `sha256`. A stored .gz
 * that decompresses to the wrong bytes is removed, so the next try downloads it again.
 */
export async function fetchGzipVerified(url, { gzip, sha256 = null, ...opts } = {}) {
  const gzUrl = new URL(gzip.file, abs(url)).href;
  const z = await fetchVerified(gzUrl, { ...opts, sha256: gzip.sha256, size: gzip.bytes, type: 'application/gzip' });
  let raw;
  try { raw = await gunzip(z); } catch (e) { await remove(gzUrl); throw e; }
  const want = sha256 ? String(sha256).toLowerCase() : null;
  if (want) {
    const got = await sha256Hex(raw);
    if (got !== want) {
      await remove(gzUrl);
      throw new StoreError('hash_mismatch', `sha256 mismatch: expected ${want}, ${gzUrl} decompresses to ${got} (${opts.what || 'file'}); it was not kept`, { expected: want, got });
    }
  }
  return raw;
}

/** JSON from the network (stored for offline use), or the stored copy when the network fails. */
export async function fetchJson(url, { what = 'json' } = {}) {
  const key = abs(url);
  let res;
  try {
    res = await fetch(key, { cache: 'no-cache' }); // revalidated: a 304 costs no body
  } catch (e) {
    const hit = await cached(key);
    if (hit) return JSON.parse(new TextDecoder().decode(hit));
    throw new StoreError('download_failed', `${what}: ${key} is unreachable (${e?.message || e})`);
  }
  if (!res.ok) {
    const hit = await cached(key);
    if (hit) return JSON.parse(new TextDecoder().decode(hit));
    throw new StoreError('download_failed', `${what}: HTTP ${res.status} for ${key}`, { status: res.status });
  }
  const bytes = new Uint8Array(await res.arrayBuffer());
  let value;
  try { value = JSON.parse(new TextDecoder().decode(bytes)); } catch (e) {
    throw new StoreError('bad_manifest', `${what}: ${key} is not JSON (${e.message})`);
  }
  await put(key, bytes, 'application/json').catch(() => {});
  return value;
}

/**
 * A file served as parts (scripts/split_wasm.py: `{file, size, sha256, parts: [{file, size,
 * sha256}]}`): each part fetched through the store, then reassembled and verified as a whole. With
 * `encoding: 'gzip'` the parts are of the gzip stream (`encoded_size`, `encoded_sha256`), which is
 * verified, decompressed, and the result checked against `size` and `sha256`.
 */
export async function fetchParts(manifestUrl, { what = 'parts', onProgress = () => {}, retries = 3 } = {}) {
  const m = await fetchJson(manifestUrl, { what: `${what} manifest` });
  if (!Array.isArray(m?.parts) || !m.sha256 || !Number.isFinite(m.size)) {
    throw new StoreError('bad_manifest', `${what}: ${manifestUrl} has no parts/size/sha256`);
  }
  const base = abs(manifestUrl);
  const done = new Array(m.parts.length).fill(0);
  const bufs = [];
  for (const [i, p] of m.parts.entries()) {
    bufs.push(await fetchVerified(new URL(p.file, base).href, {
      sha256: p.sha256, size: p.size, what, retries,
      onProgress: (x) => { done[i] = x.loaded; onProgress({ ...x, loaded: done.reduce((a, b) => a + b, 0), total: m.encoding === 'gzip' ? m.encoded_size : m.size, part: i, parts: m.parts.length }); },
    }));
  }
  let whole = concat(bufs, bufs.reduce((a, b) => a + b.length, 0));
  if (m.encoding === 'gzip') {
    const zsha = await sha256Hex(whole);
    if (whole.length !== m.encoded_size || zsha !== String(m.encoded_sha256).toLowerCase()) {
      for (const p of m.parts) await remove(new URL(p.file, base).href);
      throw new StoreError('hash_mismatch', `sha256 mismatch: expected ${m.encoded_sha256}, reassembled gzip ${what} has ${zsha} (${whole.length} bytes)`);
    }
    whole = await gunzip(whole);
  } else if (m.encoding) {
    throw new StoreError('bad_manifest', `${what}: unknown encoding ${m.encoding}`);
  }
  const got = await sha256Hex(whole);
  if (whole.length !== m.size || got !== String(m.sha256).toLowerCase()) {
    for (const p of m.parts) await remove(new URL(p.file, base).href);
    throw new StoreError('hash_mismatch', `sha256 mismatch: expected ${m.sha256}, reassembled ${what} has ${got} (${whole.length} bytes)`);
  }
  return whole;
}
