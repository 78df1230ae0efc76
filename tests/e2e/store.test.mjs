// The download store (www/store.js) and the engine's wasm parts in headless Chromium: a second model
// load is served from the cache (no request reaches the server) and generates the native CLI's
// image; a download cut mid-body resumes with a Range request from the stored partial (after a
// reload, and within one call) and verifies; a tampered LoRA is refused and not stored; a full
// quota is reported with the space needed; IndexedDB serves when the Cache API is not used; the
// engine wasm is served gzip-compressed as parts ≤ 25 MiB, reassembled, decompressed and verified (a
// tampered part is refused); gzip shard copies (`convert --gzip`) decompress to the verified shard,
// come from the cache the second time, and a corrupt copy is refused and not kept.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import zlib from 'node:zlib';
import { execFileSync } from 'node:child_process';
import { launch } from './lib/browser.mjs';
import { serveStatic, cutAfter } from './lib/static.mjs';
import { readPng } from './lib/png.mjs';
import { ROOT, FX, STYLUS, ENGINE, tmpDir, tinyModel, requireBuilt, sha256 } from './lib/fixtures.mjs';

const PAGE = '<!doctype html><meta charset="utf-8"><title>store</title><p>store test</p>';
let server;
let browser;
let model;
let manifest;
const cut = new Map(); // path → bytes to send before cutting (first request without Range only)
const tamperParts = { on: false };
const corruptGz = { on: false };
let webModel;
let webManifest;

before(async () => {
  requireBuilt();
  model = tmpDir('model');
  manifest = tinyModel(model);
  assert.ok(manifest.shards.length >= 2, 'the test model has several shards');
  webModel = tmpDir('model-web');
  webManifest = tinyModel(webModel, { web: true });
  server = await serveStatic({
    routes: { '/www/': path.join(ROOT, 'www'), '/models/tiny/': model, '/models/web/': webModel, '/lora/': path.join(FX, 'lora') },
    pages: { '/': PAGE },
    hook: (req, res, { url, file, entry, head }) => {
      if (file && cut.has(url.pathname) && !req.headers.range) {
        cutAfter(res, file, cut.get(url.pathname), entry, head);
        cut.delete(url.pathname);
        return true;
      }
      if (corruptGz.on && file && url.pathname.endsWith('.gz') && !req.headers.range) {
        // A gzip copy whose sha256 is right for what is served but that decompresses to other bytes:
        // the manifest is rewritten below to match it, so only the check after decompression can catch it.
        head(200, { 'content-type': 'application/gzip' });
        res.end(corruptGz.bytes);
        return true;
      }
      if (corruptGz.on && url.pathname === '/models/web/manifest.json') {
        head(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify(corruptGz.manifest));
        return true;
      }
      if (tamperParts.on && url.pathname.endsWith('.parts.json')) {
        const m = JSON.parse(fs.readFileSync(file, 'utf8'));
        m.parts[m.parts.length - 1].sha256 = '0'.repeat(64);
        head(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify(m));
        return true;
      }
      return false;
    },
  });
  browser = await launch();
});
after(async () => { await browser?.close(); await server?.close(); });

const requests = (re, from = 0) => server.log.slice(from).filter((e) => re.test(e.path));

async function storePage(context) {
  const page = await context.newPage();
  await page.goto(`${server.url}/`);
  return page;
}

test('a second model load comes from the cache, and the cached shards generate the CLI image', { timeout: 900_000 }, async () => {
  const context = await browser.newContext();
  const page = await storePage(context);
  const run = (generate) => page.evaluate(async (generate) => {
    const { Engine } = await import('/www/engine.js');
    const e = new Engine(`${location.origin}/www/`);
    const downloads = [];
    await e.init((d) => downloads.push(d));
    await e.loadModel({ modelUrl: '/models/tiny/manifest.json' }, (d) => downloads.push(d));
    const req = { prompt: 'a watercolor fox', negative: 'blurry', steps: 2, width: 64, height: 64, seed: 5, scheduler: 'dpmpp_2m_karras' };
    const img = generate ? (await e.call({ type: 'generate', request: req }))[0] : null;
    e.terminate();
    return { downloads: downloads.map(({ what, cached, loaded, total }) => ({ what, cached, loaded, total })), rgb: img && Array.from(img.rgb) };
  }, generate);
  const first = await run(false);
  const n0 = server.log.length;
  const second = await run(true);
  const shardRe = /^\/models\/tiny\/shard-/;
  assert.equal(requests(shardRe).length, manifest.shards.length, 'each shard downloaded once the first time');
  assert.deepEqual(requests(shardRe, n0), [], 'no shard requested again');
  assert.deepEqual(requests(/\.part$/, n0), [], 'no engine wasm part requested again');
  assert.deepEqual(requests(/tokenizer\.json$/, n0), [], 'the tokenizer is not requested again');
  assert.ok(second.downloads.filter((d) => d.what === 'model').every((d) => d.cached), 'the second load reports cached shards');
  assert.ok(first.downloads.some((d) => d.what === 'model' && !d.cached && d.loaded === d.total && d.total === manifest.shards[0].bytes));
  const out = path.join(os.tmpdir(), `stylus-store-${process.pid}.png`);
  execFileSync(STYLUS, ['generate', '--model', model, '--config', 'tiny', '--quiet', '--out', out, '--prompt', 'a watercolor fox', '--negative', 'blurry',
    '--steps', '2', '--width', '64', '--height', '64', '--seed', '5']);
  const cli = readPng(out).data;
  fs.rmSync(out);
  let d = 0;
  for (let i = 0; i < cli.length; i++) d = Math.max(d, Math.abs(cli[i] - second.rgb[i]));
  assert.ok(cli.length === second.rgb.length && d <= 2, `browser (cached converted shards) vs CLI: max |diff| ${d}`);
  await context.close();
});

test('an interrupted download resumes with a Range request from the stored partial and verifies', async () => {
  const context = await browser.newContext();
  const [s0, s1] = manifest.shards;
  const p0 = `/models/tiny/${s0.file}`;
  const p1 = `/models/tiny/${s1.file}`;
  cut.set(p0, 400_000);
  const n0 = server.log.length;
  let page = await storePage(context);
  const get = (p, sha, size, retries) => page.evaluate(async ([p, sha, size, retries]) => {
    const s = await import('/www/store.js');
    try {
      const b = await s.fetchVerified(p, { sha256: sha, size, retries });
      return { ok: true, sha: await s.sha256Hex(b), n: b.length };
    } catch (e) { return { ok: false, error: e.message, kept: await s.partialBytes(p) }; }
  }, [p, sha, size, retries]);
  const broken = await get(p0, s0.sha256, s0.bytes, 0);
  assert.equal(broken.ok, false);
  assert.match(broken.error, /^download_interrupted: /);
  assert.ok(broken.kept > 0 && broken.kept <= 400_000, `partial kept: ${broken.kept}`);
  await page.close();
  page = await storePage(context); // a new page: only the stored partial remains
  const resumed = await get(p0, s0.sha256, s0.bytes, 0);
  assert.deepEqual(resumed, { ok: true, sha: s0.sha256, n: s0.bytes });
  const reqs = requests(/^\/models\/tiny\/shard-00000/, n0);
  assert.deepEqual(reqs.map((r) => r.range), [null, `bytes=${broken.kept}-`]);
  assert.equal(reqs[1].status, 206);
  assert.equal(reqs[1].bytes, s0.bytes - broken.kept, 'only the missing bytes were sent again');

  // Within one call: the store retries by itself.
  cut.set(p1, 300_000);
  const n1 = server.log.length;
  const again = await get(p1, s1.sha256, s1.bytes, 3);
  assert.deepEqual(again, { ok: true, sha: s1.sha256, n: s1.bytes });
  const r1 = requests(/^\/models\/tiny\/shard-00001/, n1);
  assert.equal(r1.length, 2);
  assert.match(r1[1].range, /^bytes=[1-9]\d*-$/);
  await context.close();
});

test('a tampered LoRA is refused with a message and not stored; a full quota names the space needed; IndexedDB fallback', async () => {
  const context = await browser.newContext();
  const page = await storePage(context);
  const lora = '/lora/kohya_lora.safetensors';
  const r = await page.evaluate(async (lora) => {
    const s = await import('/www/store.js');
    const out = {};
    try { await s.fetchVerified(lora, { sha256: 'AB'.repeat(32), what: 'lora' }); } catch (e) { out.error = e.message; out.code = e.code; }
    out.stored = (await s.cached(lora)) !== null;
    return out;
  }, lora);
  assert.equal(r.code, 'hash_mismatch');
  assert.match(r.error, new RegExp(`^hash_mismatch: sha256 mismatch: expected (ab){32}, file has ${sha256(path.join(FX, 'lora/kohya_lora.safetensors'))}`));
  assert.equal(r.stored, false);

  // IndexedDB instead of the Cache API: stored there, the second fetch makes no request.
  const n0 = server.log.length;
  const idb = await page.evaluate(async () => {
    const s = await import('/www/store.js');
    s.configure({ backend: 'idb' });
    const a = await s.fetchVerified('/lora/loha.safetensors');
    const b = await s.fetchVerified('/lora/loha.safetensors');
    const inCache = await (await caches.open(s.CACHE_NAME)).match(new URL('/lora/loha.safetensors', location.href).href);
    s.configure({ backend: 'cache' });
    return { same: a.length === b.length && a.every((x, i) => x === b[i]), inCache: !!inCache };
  });
  assert.deepEqual(idb, { same: true, inCache: false });
  assert.equal(requests(/loha/, n0).length, 1);

  const cdp = await context.newCDPSession(page);
  await cdp.send('Storage.overrideQuotaForOrigin', { origin: server.url, quotaSize: 300_000 });
  const [s0] = manifest.shards;
  const q = await page.evaluate(async ([f, size]) => {
    const s = await import('/www/store.js');
    try { await s.fetchVerified(`/models/tiny/${f}`, { size }); return null; } catch (e) { return e.message; }
  }, [s0.file, s0.bytes]);
  // (Chromium enforces the override on writes; its estimate() may still report the real quota.)
  assert.match(q, new RegExp(`^quota_exceeded: storing needs ${(s0.bytes / 1e6).toFixed(1)} MB more; [\\d.]+ MB free of [\\d.]+ MB`));
  assert.equal(await page.evaluate(async (f) => (await import('/www/store.js')).cached(`/models/tiny/${f}`), s0.file), null);
  await context.close();
});

test('the engine wasm is served as parts of at most 25 MiB, reassembled and verified', async () => {
  const m = JSON.parse(fs.readFileSync(path.join(ENGINE, 'stylus_web_bg.wasm.parts.json'), 'utf8'));
  const whole = path.join(ROOT, 'dist/web-engine/stylus_web_bg.wasm');
  assert.equal(m.sha256, sha256(whole), 'the parts are of the current engine build');
  assert.equal(m.encoding, 'gzip');
  assert.ok(m.encoded_size < m.size / 3, `gzip ${m.encoded_size} of ${m.size} B`);
  assert.equal(m.parts.reduce((a, p) => a + p.size, 0), m.encoded_size);
  for (const p of m.parts) {
    assert.ok(p.size <= 25 * 1024 * 1024, `${p.file}: ${p.size} B`);
    assert.equal(fs.statSync(path.join(ENGINE, p.file)).size, p.size);
  }
  const context = await browser.newContext();
  const page = await storePage(context);
  const r = await page.evaluate(async () => {
    const s = await import('/www/store.js');
    const b = await s.fetchParts('/www/engine/stylus_web_bg.wasm.parts.json', { what: 'engine' });
    return { n: b.length, sha: await s.sha256Hex(b), valid: WebAssembly.validate(b) };
  });
  assert.deepEqual(r, { n: m.size, sha: m.sha256, valid: true });
  await context.close();

  tamperParts.on = true;
  const c2 = await browser.newContext();
  const p2 = await storePage(c2);
  const bad = await p2.evaluate(async () => {
    const s = await import('/www/store.js');
    try { await s.fetchParts('/www/engine/stylus_web_bg.wasm.parts.json', { what: 'engine' }); return null; } catch (e) { return e.message; }
  });
  tamperParts.on = false;
  assert.match(bad, /^hash_mismatch: sha256 mismatch: expected 0{64}/);
  await c2.close();
});

test('gzip shard copies decompress to the verified shards, are cached, and a corrupt copy is refused', { timeout: 600_000 }, async () => {
  assert.ok(webManifest.shards.every((s) => s.gzip && s.gzip.bytes < s.bytes), 'every shard has a smaller gzip copy');
  assert.equal(webManifest.vae_encoder, false);
  const context = await browser.newContext();
  const page = await storePage(context);
  const load = () => page.evaluate(async () => {
    const { Engine } = await import('/www/engine.js');
    const e = new Engine(`${location.origin}/www/`);
    const downloads = [];
    try {
      await e.init(() => {});
      await e.loadModel({ modelUrl: '/models/web/manifest.json' }, (d) => downloads.push(d));
      return { ok: true, downloads: downloads.filter((d) => d.what === 'model').map(({ url, cached, loaded, total }) => ({ url, cached, loaded, total })) };
    } catch (err) { return { ok: false, error: err.message }; } finally { e.terminate(); }
  });
  const n0 = server.log.length;
  const first = await load();
  assert.equal(first.ok, true, first.error);
  const gz = requests(/^\/models\/web\/shard-/, n0);
  assert.deepEqual(gz.map((r) => r.path).sort(), webManifest.shards.map((s) => `/models/web/${s.gzip.file}`).sort(), 'only the gzip copies travel');
  const done = first.downloads.filter((d) => d.loaded === d.total);
  assert.deepEqual(new Set(done.map((d) => d.total)), new Set(webManifest.shards.map((s) => s.gzip.bytes)), 'progress counts compressed bytes');
  const n1 = server.log.length;
  const second = await load();
  assert.equal(second.ok, true, second.error);
  assert.deepEqual(requests(/^\/models\/web\/shard-/, n1), [], 'the second load comes from the cache');
  await context.close();

  // A copy that verifies as downloaded but decompresses to other bytes (fresh browser context).
  const s0 = webManifest.shards[0];
  const other = zlib.gzipSync(Buffer.from('not the shard'));
  corruptGz.bytes = other;
  corruptGz.manifest = { ...webManifest, shards: webManifest.shards.map((s, i) => (i === 0 ? { ...s, gzip: { ...s.gzip, bytes: other.length, sha256: crypto.createHash('sha256').update(other).digest('hex') } } : s)) };
  corruptGz.on = true;
  const c2 = await browser.newContext();
  const p2 = await storePage(c2);
  const bad = await p2.evaluate(async ([url, gzip, sha]) => {
    const s = await import('/www/store.js');
    try { await s.fetchGzipVerified(url, { gzip, sha256: sha, retries: 0 }); return null; } catch (e) { return { error: e.message, kept: !!(await s.cached(new URL(gzip.file, new URL(url, location.href)).href)) }; }
  }, [`/models/web/${s0.file}`, corruptGz.manifest.shards[0].gzip, s0.sha256]);
  corruptGz.on = false;
  assert.match(bad.error, new RegExp(`^hash_mismatch: sha256 mismatch: expected ${s0.sha256}, .*shard-00000\\.bin\\.gz decompresses to`));
  assert.equal(bad.kept, false, 'the corrupt copy is not kept');
  await c2.close();
});
