// The browser generator end to end: `www/engine-worker.js` hosts the WebGPU `Generator` in a Web
// Worker in headless Chromium (SwiftShader), loads the tiny SD1.5 fixture with progress, and the
// image it generates equals the native CLI's (`stylus generate`, same seed) within ±2 per channel —
// also with a LoRA applied. A LoRA with the wrong sha256 is refused with a message, a running
// generation can be cancelled, and a kernel warm-up runs while an adapter downloads. The engine's
// precision is f32 unless asked (f16 needs the adapter's shader-f16, which SwiftShader lacks).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import fs from 'node:fs';
import os from 'node:os';
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { launch } from './lib/browser.mjs';
import { serveStatic } from './lib/static.mjs';
import { readPng } from './lib/png.mjs';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const PKG = path.join(ROOT, 'dist/web-engine');
const STYLUS = path.join(process.env.CARGO_TARGET_DIR || path.join(os.homedir(), '.cache/stylus/target'), 'debug/stylus');
const FX = path.join(ROOT, 'tests/fixtures');
const PAGE = '<!doctype html><meta charset="utf-8"><title>generator</title><p>generator test</p>';

let server;
let browser;
before(async () => {
  assert.ok(fs.existsSync(path.join(PKG, 'stylus_web_bg.wasm')), 'build it first: python3 scripts/build_wasm.py web-engine');
  assert.ok(fs.existsSync(STYLUS), `native CLI missing at ${STYLUS} (cargo build --workspace)`);
  server = await serveStatic({ routes: { '/pkg/': PKG, '/fixtures/': FX, '/www/': path.join(ROOT, 'www') }, pages: { '/': PAGE } });
  browser = await launch();
});
after(async () => { await browser?.close(); await server?.close(); });

// Runs a script of worker calls in the page; returns {results, progress, downloads}.
async function inWorker(page, calls) {
  return page.evaluate(async (calls) => {
    const w = new Worker('/www/engine-worker.js', { type: 'module' });
    const progress = [];
    const downloads = [];
    let next = 0;
    const pending = new Map();
    w.onmessage = (ev) => {
      const m = ev.data;
      if (m.progress) progress.push(m.progress);
      else if (m.download) downloads.push(m.download);
      else pending.get(m.id)?.(m);
    };
    const call = (msg) => new Promise((resolve) => { const id = next++; pending.set(id, resolve); w.postMessage({ id, ...msg }); });
    const results = [];
    const ms = [];
    const background = [];
    for (const c of calls) {
      const t0 = performance.now();
      if (c.background) { // posted, not awaited: the next calls go on while it runs
        const k = results.length;
        results.push(null);
        ms.push(null);
        background.push(call(c).then((r) => { results[k] = r; ms[k] = Math.round(performance.now() - t0); }));
        continue;
      }
      if (c.type === 'generate' && c.cancelAfterFirstStep) {
        const running = call(c);
        while (!progress.some((p) => p.stage === 'denoising')) await new Promise((r) => setTimeout(r, 20));
        await call({ type: 'cancel' });
        results.push(await running);
      } else {
        const r = await call(c);
        results.push(r.ok && Array.isArray(r.result) ? { ok: true, result: r.result.map((i) => ({ width: i.width, height: i.height, rgb: Array.from(i.rgb) })) } : r);
      }
      ms.push(Math.round(performance.now() - t0));
    }
    await Promise.all(background);
    w.terminate();
    return { results, progress, downloads, ms };
  }, calls);
}

function cliImage(args) {
  const out = path.join(os.tmpdir(), `stylus-gen-${process.pid}-${Math.random().toString(36).slice(2)}.png`);
  execFileSync(STYLUS, ['generate', '--model', path.join(FX, 'tiny_sd/ldm/tiny_sd15_fp16.safetensors'), '--config', 'tiny', '--quiet', '--out', out, ...args]);
  const png = readPng(out);
  fs.rmSync(out);
  return png;
}

function maxDiff(a, b) {
  assert.equal(a.length, b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

const model = { type: 'loadModel', checkpoint: '/fixtures/tiny_sd/ldm/tiny_sd15_fp16.safetensors', tokenizer: '/fixtures/tokenizer/tokenizer.json', config: 'tiny' };
const request = { prompt: 'a watercolor fox', negative: 'blurry', steps: 3, width: 64, height: 64, seed: 7, scheduler: 'dpmpp_2m_karras' };

test('the worker generates the CLI image, with and without a LoRA; progress and downloads are reported', { timeout: 900_000 }, async () => {
  const page = await browser.newPage();
  await page.goto(`${server.url}/`);
  const r = await inWorker(page, [
    { type: 'init', pkg: '/pkg/stylus_web.js' },
    model,
    { type: 'generate', request },
    { type: 'addLora', url: '/fixtures/lora/kohya_lora.safetensors' },
    { type: 'setAdapters', weights: [[0.7]] },
    { type: 'generate', request },
  ]);
  for (const x of r.results) assert.equal(x.ok, true, x.error);
  const [plain, lora] = [r.results[2].result[0], r.results[5].result[0]];
  const cli = cliImage(['--prompt', request.prompt, '--negative', request.negative, '--steps', '3', '--width', '64', '--height', '64', '--seed', '7']);
  const cliLora = cliImage(['--prompt', request.prompt, '--negative', request.negative, '--steps', '3', '--width', '64', '--height', '64', '--seed', '7',
    '--lora', `${path.join(FX, 'lora/kohya_lora.safetensors')}:0.7`]);
  assert.deepEqual([plain.width, plain.height, cli.width, cli.channels], [64, 64, 64, 3]);
  const d = maxDiff(plain.rgb, cli.data);
  const dl = maxDiff(lora.rgb, cliLora.data);
  console.log(`browser vs CLI: max |diff| ${d} (plain), ${dl} (LoRA 0.7); ms per call ${JSON.stringify(r.ms)} (init, load, generate, addLora, setAdapters, generate)`);
  assert.ok(d <= 2 && dl <= 2, `browser and CLI images differ: ${d} / ${dl}`);
  assert.ok(maxDiff(plain.rgb, lora.rgb) > 2, 'the LoRA changes the browser image');
  const denoise = r.progress.filter((p) => p.stage === 'denoising');
  assert.deepEqual(denoise.slice(0, 3).map((p) => p.done), [1, 2, 3]);
  assert.ok(r.progress.some((p) => p.stage === 'decoding'));
  const modelDl = r.downloads.filter((x) => x.what === 'model');
  assert.ok(modelDl.length > 0 && modelDl.at(-1).loaded === fs.statSync(path.join(FX, 'tiny_sd/ldm/tiny_sd15_fp16.safetensors')).size);
  await page.close();
});

test('the engine is f32 by default; auto takes f16 only where the adapter has shader-f16; f16 without it and unknown names are refused', { timeout: 900_000 }, async () => {
  const page = await browser.newPage();
  await page.goto(`${server.url}/`);
  const f16 = await page.evaluate(async () => (await navigator.gpu.requestAdapter())?.features.has('shader-f16') ?? false);
  const init = async (precision) => (await inWorker(page, [{ type: 'init', pkg: '/pkg/stylus_web.js', precision }])).results[0];
  const plain = await init(undefined);
  assert.equal(plain.ok, true, plain.error);
  assert.equal(plain.result.precision, 'f32');
  const auto = await init('auto');
  assert.equal(auto.ok, true, auto.error);
  assert.equal(auto.result.precision, f16 ? 'f16' : 'f32');
  const half = await init('f16');
  if (f16) assert.equal(half.result?.precision, 'f16', half.error);
  else assert.match(half.error, /^webgpu_f16: .*no f16 support; use f32/);
  assert.match((await init('bf16')).error, /^bad_request: precision `bf16`: f32, f16 or auto/);
  // in one worker: refusals leave it able to start in f32; a second init reports what runs
  const one = (await inWorker(page, [
    { type: 'init', pkg: '/pkg/stylus_web.js', precision: 'bf16' },
    { type: 'init', pkg: '/pkg/stylus_web.js', precision: f16 ? 'f32' : 'f16' },
    { type: 'init', pkg: '/pkg/stylus_web.js', precision: 'f32' },
    { type: 'init', pkg: '/pkg/stylus_web.js', precision: 'auto' },
  ])).results;
  assert.match(one[0].error, /^bad_request/);
  if (!f16) assert.match(one[1].error, /^webgpu_f16/);
  const started = f16 ? one[1] : one[2];
  assert.equal(started.ok, true, started.error);
  assert.equal(started.result.precision, 'f32');
  assert.deepEqual(one[3].result, { reused: true, precision: 'f32' });
  console.log(`precision: adapter shader-f16 ${f16}; auto → ${auto.result.precision}`);
  await page.close();
});

test('a tampered LoRA is refused with a message, a generation can be cancelled, bad requests say so', { timeout: 900_000 }, async () => {
  const page = await browser.newPage();
  await page.goto(`${server.url}/`);
  const r = await inWorker(page, [
    { type: 'init', pkg: '/pkg/stylus_web.js' },
    model,
    { type: 'addLora', url: '/fixtures/lora/kohya_lora.safetensors', sha256: '0'.repeat(64) },
    { type: 'generate', request: { ...request, steps: 40 }, cancelAfterFirstStep: true },
    { type: 'generate', request: { ...request, steps: 1, width: 60 } },
    { type: 'generate', request: { ...request, steps: 0 } },
  ]);
  assert.equal(r.results[1].ok, true, r.results[1].error);
  assert.match(r.results[2].error, /^hash_mismatch: sha256 mismatch: expected 0{64}, file has [0-9a-f]{64}/);
  assert.match(r.results[3].error, /^cancelled: /);
  assert.ok(r.progress.filter((p) => p.stage === 'denoising').length < 40, 'stopped early');
  assert.match(r.results[4].error, /^bad_request: .*multiples of 8/);
  assert.match(r.results[5].error, /^bad_request: steps must be between 1 and 1000, got 0/);
  await page.close();
});

test('kernels compile on a stand-in while the model downloads, and in a warm-up while an adapter does; the image is the same', { timeout: 900_000 }, async () => {
  const page = await browser.newPage();
  await page.goto(`${server.url}/`);
  // A URL of its own: the store has not cached it, so the model comes from the network.
  const fresh = { ...model, checkpoint: `${model.checkpoint}?stand-in`, warmUp: request };
  const r = await inWorker(page, [
    { type: 'init', pkg: '/pkg/stylus_web.js' },
    fresh,
    { type: 'warmUp', request, background: true },
    { type: 'addLora', url: '/fixtures/lora/kohya_lora.safetensors' },
    { type: 'generate', request },
  ]);
  for (const x of r.results) assert.equal(x.ok, true, x.error);
  assert.equal(r.results[1].result.warmed, true, 'the stand-in warm-up ran while the model downloaded');
  assert.equal(r.results[3].result, 0, 'the adapter downloaded while the warm-up ran, and was added after it');
  const warming = r.progress.filter((p) => p.stage === 'warming');
  assert.deepEqual(warming.map((p) => [p.done, p.total]), [[0, 3], [1, 3], [2, 3], [3, 3], [0, 3], [1, 3], [2, 3], [3, 3]], 'stand-in, then warmUp');
  const first = r.results[4].result[0];
  const cli = cliImage(['--prompt', request.prompt, '--negative', request.negative, '--steps', '3', '--width', '64', '--height', '64', '--seed', '7']);
  const d = maxDiff(first.rgb, cli.data);
  console.log(`warm-up (SwiftShader): ms per call ${JSON.stringify(r.ms)} (init, load with the stand-in warm-up, warmUp, addLora, generate after them); vs CLI max |diff| ${d}`);
  assert.ok(d <= 2, `browser and CLI images differ by ${d}`);
  await page.close();
});
