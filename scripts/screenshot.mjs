// Regenerates docs/page.png, the README's picture of the web app: headless Chromium (WebGPU on
// SwiftShader) composes a prompt in WebAssembly over the test index (the tiny model's fixture
// adapters), switches one adapter off, and generates one image per mask with the tiny test model.
//   node scripts/screenshot.mjs [OUT.png]
import path from 'node:path';
import { launch } from '../tests/e2e/lib/browser.mjs';
import { serveStatic } from '../tests/e2e/lib/static.mjs';
import { ROOT, FX, tmpDir, tinyModel, testIndex, requireBuilt } from '../tests/e2e/lib/fixtures.mjs';

const out = path.resolve(process.argv[2] || path.join(ROOT, 'docs/page.png'));
requireBuilt();
const model = tmpDir('model');
tinyModel(model);
const index = tmpDir('index');
const server = await serveStatic({ routes: { '/index/': index, '/models/tiny/': model, '/lora/': path.join(FX, 'lora'), '/': path.join(ROOT, 'www') } });
testIndex(index, `${server.url}/lora`);
const browser = await launch();
try {
  const page = await browser.newPage({ viewport: { width: 1100, height: 900 }, deviceScaleFactor: 1 });
  await page.goto(`${server.url}/?nosw&model-url=models/tiny/manifest.json&steps=6&width=64&height=64`);
  await page.waitForSelector('body[data-ready="true"]');
  await page.fill('#prompt', 'a fox in an autumn forest, watercolor');
  await page.fill('#num-images', '3');
  await page.fill('#seed', '1');
  await page.click('#compose');
  await page.waitForFunction(() => /Composed|Error/.test(document.querySelector('#status').textContent), null, { timeout: 120_000 });
  console.log(await page.textContent('#status'));
  await page.waitForSelector('#topics .adapter');
  await page.locator('.adapter[data-id="103"] .weight').first().fill('0.6');
  await page.click('#generate');
  await page.waitForFunction(() => document.body.dataset.generated || /Error/.test(document.querySelector('#status').textContent), null, { timeout: 900_000 });
  console.log(await page.textContent('#status'));
  await page.screenshot({ path: out, fullPage: true });
  console.log(`wrote ${out}`);
} finally {
  await browser.close();
  await server.close();
}
