// The embeddable widget on a third-party page: origin A (a static server with CORS that also answers
// POST /v1/compose with the native CLI's composer — the worker's compose code — over a test index) serves widget.js, the engine and the
// model; origin B serves a plain page with one script tag and <stylus-generate worker=A model=…>.
// In headless Chromium the element composes through A's API, generates one image per mask on
// WebGPU inside its shadow DOM and reports compose / progress / image / error as DOM events.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import { launch } from './lib/browser.mjs';
import { serveStatic } from './lib/static.mjs';
import { ROOT, FX, STYLUS, tmpDir, tinyModel, testIndex, requireBuilt } from './lib/fixtures.mjs';

let a; // the Stylus origin
let b; // the third-party page's origin
let browser;
let index;

// The compose API's answer for a request body, from the CLI (same stylus-core compose as the worker).
function compose(body) {
  const r = JSON.parse(body);
  return execFileSync(STYLUS, ['compose', '--index', path.join(index, 'index.stylusix'), '--json', '--images', String(r.num_images ?? 4),
    '--seed', String(r.seed ?? 0), '--mask-mode', r.options?.mask_mode ?? 'one_hot_loras', r.prompt], { encoding: 'utf8' });
}

function thirdParty(model) {
  return `<!doctype html><meta charset="utf-8"><title>A plain blog</title>
<h1>My blog post</h1><p>Some text before the widget.</p>
<script>window.events = []; for (const t of ['compose', 'progress', 'preview', 'image', 'error'])
  document.addEventListener(t, (e) => window.events.push({ type: t, target: e.target.localName, detail: t === 'image' || t === 'preview'
    ? { ...e.detail, rgb: e.detail.rgb.length } : t === 'compose' ? { via: e.detail.via, images: e.detail.result.images.length } : e.detail }));</script>
<script type="module" src="${a.url}/widget.js"></script>
<stylus-generate worker="${a.url}" model="${model}" images="2" steps="2" size="64" seed="1"
  prompt="a fox in an autumn forest, watercolor"></stylus-generate>`;
}

before(async () => {
  requireBuilt();
  const model = tmpDir('model');
  tinyModel(model, { web: true });
  index = tmpDir('index');
  a = await serveStatic({
    cors: true,
    routes: { '/index/': index, '/models/tiny/': model, '/lora/': path.join(FX, 'lora'), '/': path.join(ROOT, 'www') },
    hook: async (req, res, { url, head }) => {
      if (url.pathname !== '/v1/compose' || req.method !== 'POST') return false;
      let body = '';
      for await (const c of req) body += c;
      head(200, { 'content-type': 'application/json' });
      res.end(compose(body));
      return true;
    },
  });
  testIndex(index, `${a.url}/lora`);
  b = await serveStatic({
    pages: {
      '/': thirdParty(`${a.url}/models/tiny/manifest.json`),
      '/broken': thirdParty(`${a.url}/models/none/manifest.json`),
    },
  });
  browser = await launch();
});
after(async () => { await browser?.close(); await a?.close(); await b?.close(); });

test('the widget generates on a third-party page from another origin, with DOM events', { timeout: 900_000 }, async () => {
  const page = await browser.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(String(e)));
  await page.goto(`${b.url}/`);
  await page.waitForFunction(() => customElements.get('stylus-generate') && document.querySelector('stylus-generate').shadowRoot);
  assert.notEqual(new URL(a.url).port, new URL(b.url).port);
  await page.locator('stylus-generate button').click(); // playwright locators pierce the shadow root
  await page.waitForFunction(() => window.events.filter((e) => e.type === 'image').length === 2 || window.events.some((e) => e.type === 'error'), null, { timeout: 840_000 });
  const events = await page.evaluate(() => window.events);
  assert.deepEqual(events.filter((e) => e.type === 'error'), []);
  assert.deepEqual(events.find((e) => e.type === 'compose'), { type: 'compose', target: 'stylus-generate', detail: { via: 'worker', images: 2 } });
  const kinds = new Set(events.filter((e) => e.type === 'progress').map((e) => `${e.detail.kind}:${e.detail.what ?? e.detail.stage}`));
  for (const k of ['download:engine', 'download:model', 'download:tokenizer', 'step:denoising', 'step:decoding']) assert.ok(kinds.has(k), `${k} in ${[...kinds]}`);
  const images = events.filter((e) => e.type === 'image').map((e) => e.detail);
  assert.deepEqual(images.map((i) => [i.index, i.width, i.height, i.rgb]), [[0, 64, 64, 64 * 64 * 3], [1, 64, 64, 64 * 64 * 3]]);
  assert.ok(images[0].adapters.length > 0 && images[0].adapters.every((x) => x.name && x.weight > 0));
  // Live previews at latent resolution (64 / 8), one per image after the last of the 2 steps.
  const previews = events.filter((e) => e.type === 'preview').map((e) => e.detail);
  assert.deepEqual(previews.map((p) => [p.index, p.width, p.height, p.rgb, p.step, p.steps]), [[0, 8, 8, 8 * 8 * 3, 2, 2], [1, 8, 8, 8 * 8 * 3, 2, 2]]);
  assert.equal(images[0].prompt.startsWith('a fox in an autumn forest, watercolor'), true);

  // Everything stays inside the element's shadow root; the page's own DOM is untouched.
  assert.equal(await page.evaluate(() => document.querySelectorAll('canvas, figure').length), 0);
  assert.equal(await page.evaluate(() => document.querySelector('stylus-generate').shadowRoot.querySelectorAll('figure canvas').length), 2);
  assert.match(await page.locator('stylus-generate .status').textContent(), /2 images \(composed via the worker\)/);

  // Cross-origin: the API and every file came from A, asked for by B's page (CORS).
  const compose = a.log.find((e) => e.path === '/v1/compose' && e.method === 'POST');
  assert.equal(compose?.origin, b.url);
  assert.ok(a.log.some((e) => /\.part$/.test(e.path) && e.origin === b.url), 'engine parts fetched cross-origin');
  assert.ok(a.log.some((e) => e.path.startsWith('/lora/') && e.origin === b.url), 'adapters fetched cross-origin');
  assert.deepEqual(errors, []);
  await page.close();
});

test('a widget whose model is missing reports an error event and a message', { timeout: 600_000 }, async () => {
  const page = await browser.newPage();
  await page.goto(`${b.url}/broken`);
  await page.waitForFunction(() => customElements.get('stylus-generate'));
  await page.locator('stylus-generate button').click();
  await page.waitForFunction(() => window.events.some((e) => e.type === 'error'), null, { timeout: 540_000 });
  const err = (await page.evaluate(() => window.events)).find((e) => e.type === 'error');
  assert.equal(err.detail.code, 'download_failed');
  assert.match(err.detail.message, /HTTP 404 for http:\/\/127\.0\.0\.1:\d+\/models\/none\/manifest\.json/);
  assert.match(await page.locator('stylus-generate .status').textContent(), /^Error \(download_failed\)/);
  await page.close();
});
