// The web app as a PWA in headless Chromium: the manifest parses and Chromium reports no
// installability error (icons, service worker, start URL); after one online visit (compose +
// generate with the tiny model) the network is cut — playwright offline mode and the server
// closed — and a reload still shows the app, composes in WebAssembly and generates the same image,
// every file coming from the service worker's and the download store's caches.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import fs from 'node:fs';
import { launch, launchPersistent } from './lib/browser.mjs';
import { serveStatic } from './lib/static.mjs';
import { ROOT, FX, tmpDir, tinyModel, testIndex, requireBuilt } from './lib/fixtures.mjs';

let server;
let browser;

before(async () => {
  requireBuilt();
  const model = tmpDir('model');
  tinyModel(model);
  const index = tmpDir('index');
  server = await serveStatic({
    routes: { '/index/': index, '/models/tiny/': model, '/lora/': path.join(FX, 'lora'), '/': path.join(ROOT, 'www') },
  });
  testIndex(index, `${server.url}/lora`);
  browser = await launch();
});
after(async () => { await browser?.close(); await server?.close(); });

async function composeAndGenerate(page) {
  await page.fill('#prompt', 'a fox in an autumn forest, watercolor');
  await page.fill('#num-images', '1');
  await page.fill('#seed', '1');
  await page.click('#compose');
  await page.waitForFunction(() => /Composed|Error/.test(document.querySelector('#status').textContent), null, { timeout: 60_000 });
  const composed = await page.textContent('#status');
  const adapters = await page.locator('#topics .adapter').count();
  await page.click('#generate');
  await page.waitForFunction(() => document.body.dataset.generated || /Error/.test(document.querySelector('#status').textContent), null, { timeout: 600_000 });
  const status = await page.textContent('#status');
  const pixels = await page.locator('#images canvas').evaluateAll((cs) => cs.map((c) => Array.from(c.getContext('2d').getImageData(0, 0, c.width, c.height).data)));
  return { composed, adapters, status, pixels };
}

test('the manifest is valid and Chromium finds the app installable', async () => {
  const profile = tmpDir('profile'); // installability is only judged outside incognito contexts
  const context = await launchPersistent(profile);
  const page = await context.newPage();
  await page.goto(`${server.url}/`);
  await page.evaluate(() => navigator.serviceWorker.ready);
  const cdp = await page.context().newCDPSession(page);
  const m = await cdp.send('Page.getAppManifest');
  assert.deepEqual(m.errors, []);
  assert.match(m.url, /\/manifest\.webmanifest$/);
  const manifest = JSON.parse(m.data);
  for (const icon of manifest.icons.filter((i) => i.type === 'image/png')) {
    const [w] = icon.sizes.split('x').map(Number);
    const png = fs.readFileSync(path.join(ROOT, 'www', icon.src));
    assert.equal(png.readUInt32BE(16), w, `${icon.src} is ${icon.sizes}`);
  }
  const { installabilityErrors } = await cdp.send('Page.getInstallabilityErrors');
  assert.deepEqual(installabilityErrors, []);
  await context.close();
  fs.rmSync(profile, { recursive: true, force: true });
});

test('after one visit the app reloads, composes and generates offline', { timeout: 1_200_000 }, async () => {
  const context = await browser.newContext();
  const page = await context.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(String(e)));
  await page.goto(`${server.url}/?model-url=models/tiny/manifest.json&steps=2&width=64&height=64`);
  await page.waitForFunction(() => navigator.serviceWorker.controller, null, { timeout: 60_000 });
  const online = await composeAndGenerate(page);
  assert.match(online.status, /^Generated 1 image/);

  await context.setOffline(true);
  await server.close();
  const seen = server.log.length;
  await page.reload();
  await page.waitForSelector('body[data-ready="true"]');
  assert.equal(await page.evaluate(() => !!navigator.serviceWorker.controller), true);
  const offline = await composeAndGenerate(page);
  assert.match(offline.composed, /Composed via offline \(WebAssembly; the worker was unreachable\)/);
  assert.equal(offline.adapters, online.adapters);
  assert.match(offline.status, /^Generated 1 image/, offline.status);
  assert.equal(offline.pixels.length, 1);
  assert.deepEqual(offline.pixels, online.pixels, 'the same image offline');
  assert.equal(server.log.length, seen, 'nothing reached the server');
  assert.deepEqual(errors, []);
  await context.close();
});
