// The design's riskiest assumption, proven in a real browser: the wasm32 build of the SD1.5 engine
// (burn wgpu, `stylus-web --features engine`, wasm-pack.toml `web-engine`) runs the tiny fixture's
// text encoder, one UNet forward and a VAE decode on WebGPU in headless Debian Chromium
// (SwiftShader, no shader-f16, so the f32 path) and matches the PyTorch oracle within the CPU
// parity tolerances, with the fused attention kernel (gpu/rows.rs, the default on WebGPU). Without WebGPU the module fails with a readable message.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import fs from 'node:fs';
import { fileURLToPath } from 'node:url';
import { launch } from './lib/browser.mjs';
import { serveStatic } from './lib/static.mjs';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const PKG = path.join(ROOT, 'dist/web-engine');
const PAGE = '<!doctype html><meta charset="utf-8"><title>engine</title><p>engine test</p>';

let server;
let browser;
before(async () => {
  assert.ok(fs.existsSync(path.join(PKG, 'stylus_web_bg.wasm')), 'build it first: python3 scripts/build_wasm.py web-engine');
  server = await serveStatic({ routes: { '/pkg/': PKG, '/fixtures/': path.join(ROOT, 'tests/fixtures') }, pages: { '/': PAGE } });
  browser = await launch();
});
after(async () => { await browser?.close(); await server?.close(); });

async function proof(page) {
  return page.evaluate(async () => {
    const m = await import('/pkg/stylus_web.js');
    await m.default();
    const get = async (p) => new Uint8Array(await (await fetch(p)).arrayBuffer());
    const ckpt = await get('/fixtures/tiny_sd/ldm/tiny_sd15_fp16.safetensors');
    const oracle = await get('/fixtures/tiny_sd/oracle/oracle.safetensors');
    try {
      return JSON.parse(await m.engineProof(ckpt, oracle));
    } catch (e) {
      return { error: String(e && e.message || e) };
    }
  });
}

test('tiny SD1.5 on WebGPU in Chromium matches the PyTorch oracle', { timeout: 600_000 }, async () => {
  const page = await browser.newPage();
  const logs = [];
  page.on('console', (m) => logs.push(m.text()));
  page.on('pageerror', (e) => logs.push(String(e)));
  await page.goto(`${server.url}/`);
  const adapter = await page.evaluate(async () => {
    const a = await navigator.gpu?.requestAdapter();
    return a ? { fallback: a.isFallbackAdapter ?? a.info?.isFallbackAdapter, f16: a.features.has('shader-f16'),
      maxStorageBindingSize: a.limits.maxStorageBufferBindingSize } : null;
  });
  assert.ok(adapter, 'Chromium exposes a WebGPU adapter');
  const r = await proof(page);
  console.log('adapter', JSON.stringify(adapter), 'proof', JSON.stringify(r));
  assert.equal(r.error, undefined, `engine failed: ${r.error}\n${logs.join('\n')}`);
  assert.ok(r.text_embeddings.max_diff <= 1e-4, `text encoder: ${r.text_embeddings.max_diff}`);
  assert.ok(r.unet_forward.max_diff <= 1e-4 * r.unet_forward.max_ref, `unet: ${r.unet_forward.max_diff} of ${r.unet_forward.max_ref}`);
  assert.ok(r.vae_decode.max_diff <= 1e-3, `vae: ${r.vae_decode.max_diff}`);
  assert.equal(r.vae_decode.n, 3 * 64 * 64);
  assert.equal(r.fused_attention, true, 'the fused attention kernel runs on WebGPU (the default there)');
  await page.close();
});

test('without WebGPU the engine says so instead of failing silently', async () => {
  const page = await browser.newPage();
  await page.addInitScript(() => Object.defineProperty(Navigator.prototype, 'gpu', { get: () => undefined }));
  await page.goto(`${server.url}/`);
  const r = await proof(page);
  assert.match(r.error || '', /^webgpu_missing: this browser has no WebGPU/);
  await page.close();
});
