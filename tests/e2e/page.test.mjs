// The web app in headless Chromium, served with the API by `wrangler dev` on 127.0.0.1: a visitor
// composes a prompt through the worker; with the worker unreachable the page composes the same
// answer in WebAssembly; worker errors are shown with their code. The worker also serves the
// widget and the engine (as parts of at most 25 MiB) to other origins (CORS).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { startWorker } from './lib/wrangler.mjs';
import { launch } from './lib/browser.mjs';

let w;
let browser;
before(async () => { w = await startWorker(); browser = await launch(); });
after(async () => { await browser?.close(); await w?.stop(); });

async function compose(page, { prompt, mode = 'auto' }) {
  await page.fill('#prompt', prompt);
  await page.selectOption('#mode', mode);
  await page.click('#compose');
  await page.waitForFunction(() => /Composed|Error/.test(document.querySelector('#status').textContent), null, { timeout: 60_000 });
  return {
    status: await page.textContent('#status'),
    topics: await page.textContent('#topics'),
    images: await page.textContent('#images'),
    adapters: await page.locator('#topics .adapter').count(),
  };
}

test('compose through the worker, then offline in WebAssembly: same answer', async () => {
  const page = await browser.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(String(e)));
  await page.goto(`${w.url}/`);
  const prompt = 'a watercolor painting of a fox in a forest, autumn leaves';
  const viaWorker = await compose(page, { prompt });
  assert.match(viaWorker.status, /via worker/);
  assert.ok(viaWorker.adapters >= 2, `adapters shown: ${viaWorker.adapters}`);
  assert.match(viaWorker.images, /<lora:/);
  assert.equal(await page.locator('section#images .image').count(), 4);
  assert.ok(await page.locator('section#images .image').first().isVisible(), 'the per-image masks are shown');
  const links = await page.locator('#topics .adapter a').evaluateAll((as) => as.map((a) => a.href));
  assert.ok(links.every((h) => /^https:\/\/civitai\.com\/models\/\d+$/.test(h)));

  // The worker becomes unreachable: the page falls back to the in-browser composer.
  await page.route('**/v1/compose', (route) => route.abort('internetdisconnected'));
  const offline = await compose(page, { prompt });
  assert.match(offline.status, /offline \(WebAssembly; the worker was unreachable\)/);
  assert.equal(offline.topics, viaWorker.topics);
  assert.equal(offline.images, viaWorker.images);
  assert.deepEqual(errors, []);
  await page.close();
});

test('a worker error is shown with its code, not a blank page', async () => {
  const page = await browser.newPage();
  await page.goto(`${w.url}/`);
  const r = await compose(page, { prompt: '   ', mode: 'worker' });
  assert.match(r.status, /Error \(prompt_empty\)/);
  const off = await compose(page, { prompt: '   ', mode: 'offline' });
  assert.match(off.status, /Error \(prompt_empty\)/);
  await page.close();
});

test('the worker serves the widget and the engine wasm parts (each at most 25 MiB) to other origins', async () => {
  const assets = new URL('../../worker/assets/', import.meta.url).pathname;
  const walk = (d) => fs.readdirSync(d, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? walk(path.join(d, e.name)) : [path.join(d, e.name)]));
  const big = walk(assets).filter((f) => fs.statSync(f).size > 25 * 1024 * 1024);
  assert.deepEqual(big, [], 'Workers assets are limited to 25 MiB each');
  const origin = { origin: 'https://blog.example' };
  const widget = await fetch(`${w.url}/widget.js`, { headers: origin });
  assert.equal(widget.status, 200);
  assert.equal(widget.headers.get('access-control-allow-origin'), '*');
  assert.match(await widget.text(), /customElements\.define\('stylus-generate'/);
  const m = await (await fetch(`${w.url}/engine/stylus_web_bg.wasm.parts.json`, { headers: origin })).json();
  assert.ok(m.parts.length >= 1 && m.parts.every((p) => p.size <= 25 * 1024 * 1024));
  assert.equal(m.encoding, 'gzip', 'the engine travels compressed');
  assert.equal(m.parts.reduce((a, p) => a + p.size, 0), m.encoded_size);
  for (const p of m.parts) {
    const r = await fetch(`${w.url}/engine/${p.file}`, { headers: origin });
    assert.equal(r.status, 200);
    assert.equal(r.headers.get('access-control-allow-origin'), '*');
    assert.equal((await r.arrayBuffer()).byteLength, p.size);
  }
});
