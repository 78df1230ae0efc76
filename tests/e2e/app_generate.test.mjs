// The web app's generation UI in headless Chromium (static server; the compose worker unreachable,
// so the page composes in WebAssembly over a test index whose adapters are tiny-model LoRAs): a
// visitor composes, switches one adapter off and changes another's weight, generates one image per
// mask with download and step progress, and gets the native CLI's images (same per-image weights,
// same seed) with save links. A tampered adapter is refused with its message; without WebGPU the page
// says so (composing still works); settings persist across reloads.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import { launch } from './lib/browser.mjs';
import { serveStatic } from './lib/static.mjs';
import { readPng } from './lib/png.mjs';
import { ROOT, FX, STYLUS, tmpDir, tinyModel, testIndex, requireBuilt } from './lib/fixtures.mjs';

let server;
let browser;
let model;
let index;
const PROMPT = 'a fox in an autumn forest, watercolor';
const SETTINGS = '?nosw&model-url=models/tiny/manifest.json&steps=2&width=64&height=64&cfg=5';

before(async () => {
  requireBuilt();
  model = tmpDir('model');
  tinyModel(model, { web: true });
  index = tmpDir('index');
  server = await serveStatic({
    routes: { '/index/': index, '/models/tiny/': model, '/lora/': path.join(FX, 'lora'), '/': path.join(ROOT, 'www') },
  });
  testIndex(index, `${server.url}/lora`);
  browser = await launch();
});
after(async () => { await browser?.close(); await server?.close(); });

async function compose(page, prompt, images, seed) {
  await page.fill('#prompt', prompt);
  await page.fill('#num-images', String(images));
  await page.fill('#seed', String(seed));
  await page.click('#compose');
  await page.waitForFunction(() => /Composed|Error/.test(document.querySelector('#status').textContent), null, { timeout: 60_000 });
  return page.textContent('#status');
}

test('compose, edit the adapters, generate one image per mask: the CLI images, with progress and save links', { timeout: 900_000 }, async () => {
  const cliCompose = JSON.parse(execFileSync(STYLUS, ['compose', '--index', path.join(index, 'index.stylusix'), '--images', '2', '--seed', '1', '--json', PROMPT], { encoding: 'utf8' }));
  const page = await browser.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(String(e)));
  await page.goto(`${server.url}/${SETTINGS}`);
  await page.waitForSelector('body[data-ready="true"]');
  assert.match(await compose(page, PROMPT, 2, 1), /Composed via offline \(WebAssembly; the worker was unreachable\)/);
  assert.equal(await page.locator('#topics .adapter').count(), 3);
  const links = await page.locator('#topics .adapter a').evaluateAll((as) => as.map((a) => a.href));
  assert.ok(links.every((h) => /^https:\/\/civitai\.com\/models\/10[1-3]$/.test(h)), links.join());

  // Switch "Autumn Forest" off, halve "Watercolor Wash" (0.8 → 0.4).
  await page.locator('.adapter[data-id="103"] .use').first().uncheck();
  await page.locator('.adapter[data-id="101"] .weight').first().fill('0.4');
  const expected = cliCompose.images.map((img) => img.active.filter((a) => a.id !== 103)
    .map((a) => ({ ...a, weight: Math.round((a.id === 101 ? a.weight * 0.5 : a.weight) * 1000) / 1000 })));
  const captions = await page.locator('#images .image .used').allTextContents();
  assert.deepEqual(captions, expected.map((as) => as.map((a) => `${a.name} × ${a.weight.toFixed(2)}`).join(', ') || 'no adapter'));
  assert.ok(expected.some((as) => as.length > 0) && new Set(captions).size === 2, 'the two masks differ');
  const codes = await page.locator('#images .image code').allTextContents();
  const stem = { 101: 'kohya_lora', 102: 'kohya_locon' };
  assert.deepEqual(codes, expected.map((as) => [cliCompose.images[0].prompt, ...as.map((a) => `<lora:${stem[a.id]}:${a.weight.toFixed(2)}>`)].join(' ')));

  await page.click('#generate');
  await page.waitForFunction(() => document.body.dataset.generated || /Error/.test(document.querySelector('#status').textContent), null, { timeout: 840_000 });
  assert.match(await page.textContent('#status'), /^Generated 2 images in/);
  const rows = await page.locator('#downloads .download').evaluateAll((rs) => rs.map((r) => ({ what: r.querySelector('.what').textContent, text: r.querySelector('.text').textContent, value: r.querySelector('progress').value, max: r.querySelector('progress').max })));
  const shards = JSON.parse(fs.readFileSync(path.join(model, 'manifest.json'), 'utf8')).shards.length;
  const names = ['engine', 'tokenizer', 'lora Red Fox', 'lora Watercolor Wash', ...Array.from({ length: shards }, (_, i) => `model ${i + 1}/${shards}`)];
  for (const what of names) {
    const r = rows.find((x) => x.what === what);
    assert.ok(r && r.value === r.max && /MB/.test(r.text), `download row ${what}: ${JSON.stringify(r)}`);
  }
  assert.ok(!rows.some((x) => x.what === 'lora Autumn Forest'), 'a switched-off adapter is not downloaded');
  assert.equal(await page.locator('#step-bar').evaluate((b) => b.value), 1);
  assert.equal(await page.evaluate(() => document.body.dataset.previews), '2', 'a live preview of each image (after the last of 2 steps)');
  const saves = await page.locator('#images .save').evaluateAll((as) => as.map((a) => [a.getAttribute('download'), a.href]));
  assert.equal(saves.length, 2);
  for (const [name, href] of saves) { assert.match(name, /^stylus-1-[12]\.png$/); assert.match(href, /^blob:/); }
  const pixels = await page.locator('#images canvas').evaluateAll((cs) => cs.map((c) => {
    const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
    return Array.from(d).filter((_, i) => i % 4 !== 3);
  }));

  // The CLI with the same adapters and per-image weights (mask factors × weight 1), same seed, one batch.
  const used = [...new Set(expected.flat().map((a) => a.id))];
  const file = { 101: 'kohya_lora', 102: 'kohya_locon' };
  const out = path.join(os.tmpdir(), `stylus-app-${process.pid}`);
  execFileSync(STYLUS, ['generate', '--model', model, '--config', 'tiny', '--quiet', '--out', `${out}.png`, '--prompt', cliCompose.images[0].prompt,
    '--steps', '2', '--width', '64', '--height', '64', '--seed', '1',
    ...used.flatMap((id) => ['--lora', `${path.join(FX, 'lora', file[id])}.safetensors:1`]),
    ...expected.flatMap((as) => ['--mask', used.map((id) => as.find((a) => a.id === id)?.weight ?? 0).join(',')])]);
  for (let i = 0; i < 2; i++) {
    const cli = readPng(`${out}-${i}.png`).data;
    fs.rmSync(`${out}-${i}.png`);
    let d = 0;
    for (let k = 0; k < cli.length; k++) d = Math.max(d, Math.abs(cli[k] - pixels[i][k]));
    assert.ok(cli.length === pixels[i].length && d <= 2, `image ${i}: browser vs CLI max |diff| ${d}`);
  }
  assert.deepEqual(errors, []);
  await page.close();
});

test('a tampered adapter is refused with its message; the page stays usable', { timeout: 600_000 }, async () => {
  const page = await browser.newPage();
  await page.goto(`${server.url}/${SETTINGS}`);
  await page.waitForSelector('body[data-ready="true"]');
  await page.selectOption('#mode', 'offline');
  assert.match(await compose(page, 'a glowing moon at night', 1, 0), /Composed via offline/);
  await page.click('#generate');
  await page.waitForFunction(() => /Error/.test(document.querySelector('#status').textContent), null, { timeout: 540_000 });
  assert.match(await page.textContent('#status'), /^Error \(hash_mismatch\): sha256 mismatch: expected (ab){32}, file has [0-9a-f]{64} \(lora Moon Glow http:\/\/127\.0\.0\.1:\d+\/lora\/loha\.safetensors\)/);
  assert.equal(await page.locator('#generate').isEnabled(), true);
  await page.close();
});

test('without WebGPU the page says so, composing still works, and settings persist', async () => {
  const context = await browser.newContext();
  await context.addInitScript(() => { delete Navigator.prototype.gpu; });
  const page = await context.newPage();
  await page.goto(`${server.url}/?nosw`);
  await page.waitForSelector('body[data-ready="true"]');
  assert.equal(await page.isVisible('#no-webgpu'), true);
  assert.match(await page.textContent('#no-webgpu'), /no WebGPU.*Composing still works/);
  assert.equal(await page.locator('#generate').isDisabled(), true);
  assert.match(await compose(page, PROMPT, 2, 1), /Composed via/);
  assert.equal(await page.locator('#topics .adapter').count(), 3);
  await page.locator('#settings summary').click();
  await page.fill('#steps', '7');
  await page.dispatchEvent('#steps', 'change');
  assert.equal(await page.inputValue('#precision'), 'f32', 'f32 unless asked');
  await page.selectOption('#precision', 'auto');
  await page.dispatchEvent('#precision', 'change');
  await page.reload();
  await page.waitForSelector('body[data-ready="true"]');
  assert.equal(await page.inputValue('#steps'), '7');
  assert.equal(await page.inputValue('#precision'), 'auto');
  await context.close();
});
