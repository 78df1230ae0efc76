// The browser crate's offline composer (wasm32, dist/web-node) gives byte-identical answers to the
// native CLI over the same demo index: one compose logic on every platform.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { createRequire } from 'node:module';

const root = new URL('../../', import.meta.url);
const require = createRequire(import.meta.url);
const { Composer } = require(new URL('dist/web-node/stylus_web.js', root).pathname);
const targetDir = process.env.CARGO_TARGET_DIR || `${process.env.HOME}/.cache/stylus/target`;
const cli = `${targetDir}/debug/stylus`;
const bundle = readFileSync(new URL('data/demo/index.stylusix', root));

const prompts = [
  ['a watercolor painting of a fox in a forest, autumn leaves', 4, 1],
  ['cyberpunk city at night, neon lights, a girl wearing a kimono', 3, 42],
  ['森林の中の狐, ЛИСА, 🦊', 2, 0],
];

test('wasm compose equals native compose', () => {
  const c = new Composer(bundle);
  assert.ok(c.adapters > 1000);
  for (const [prompt, images, seed] of prompts) {
    const wasm = JSON.parse(c.compose(JSON.stringify({ prompt, num_images: images, seed })));
    const native = JSON.parse(execFileSync(cli, ['compose', '--json', '--images', String(images), '--seed', String(seed), prompt]));
    assert.deepEqual(wasm, native, prompt);
  }
});

test('errors carry their stable code', () => {
  const c = new Composer(bundle);
  assert.throws(() => c.compose('{"prompt": ""}'), /^Error: prompt_empty/);
  assert.throws(() => c.compose('{"prompt": "x", "num_images": 0}'), /num_images_out_of_range/);
  assert.throws(() => new Composer(new Uint8Array([1, 2, 3])), /bundle|truncated|magic/);
});
