// The browser crate's wasm32 tokenizer (built by scripts/build_wasm.py as dist/web-node) gives the
// same ids as transformers for every fixture prompt: native/wasm tokenizer parity.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';

const root = new URL('../../', import.meta.url);
const require = createRequire(import.meta.url);
const { Tokenizer } = require(new URL('dist/web-node/stylus_web.js', root).pathname);
const fixtures = new URL('tests/fixtures/tokenizer/', root);

test('wasm tokenizer matches transformers on every fixture prompt', () => {
  const tok = new Tokenizer(readFileSync(new URL('tokenizer.json', fixtures)));
  const cases = JSON.parse(readFileSync(new URL("token_ids.json", fixtures), "utf8")).cases;
  assert.ok(cases.length >= 10);
  for (const c of cases) {
    assert.deepEqual(Array.from(tok.encodeRaw(c.prompt)), c.ids, `raw ids for ${JSON.stringify(c.prompt)}`);
    assert.deepEqual(Array.from(tok.encode(c.prompt)), c.ids77, `77-window for ${JSON.stringify(c.prompt)}`);
  }
});

test('a broken tokenizer file is a JS error, not a crash', () => {
  assert.throws(() => new Tokenizer(new TextEncoder().encode('{nope')), /tokenizer/);
});
