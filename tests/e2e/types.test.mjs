// www/stylus.d.ts stays in step with the JavaScript it types: the engine worker's message types,
// the store's exports and error codes, the engine's error codes (stylus-web), the widget's events
// and attributes. When a TypeScript compiler is at hand (node_modules/typescript, or TSC=path) the
// declarations and a usage sample are also compiled with --strict.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import { ROOT } from './lib/fixtures.mjs';

const read = (f) => fs.readFileSync(path.join(ROOT, f), 'utf8');
const dts = read('www/stylus.d.ts');
const all = (re, s) => new Set([...s.matchAll(re)].map((m) => m[1]));
const block = (name) => {
  const i = dts.indexOf(name);
  assert.ok(i >= 0, `${name} in stylus.d.ts`);
  const open = dts.indexOf('{', i);
  let depth = 0;
  for (let k = open; k < dts.length; k++) {
    if (dts[k] === '{') depth++;
    if (dts[k] === '}' && --depth === 0) return dts.slice(open, k + 1);
  }
  throw new Error(`unclosed ${name}`);
};
const union = (name) => {
  const m = new RegExp(`type ${name}\\s*=([^;]+);`).exec(dts);
  assert.ok(m, `type ${name}`);
  return all(/'([a-z_]+)'/g, m[1]);
};
const sorted = (s) => [...s].sort();

test('the engine worker protocol: every message type handled is declared, and no other', () => {
  const handled = all(/case '([a-zA-Z]+)':/g, read('www/engine-worker.js'));
  const m = /export type EngineRequest =([\s\S]+?);\n/.exec(dts);
  assert.deepEqual(sorted(all(/type: '([a-zA-Z]+)'/g, m[1])), sorted(handled));
  assert.deepEqual(sorted(all(/^\s+([a-zA-Z]+): /gm, block('interface EngineResults'))), sorted(handled));
});

test('the store: exports and error codes', () => {
  const src = read('www/store.js');
  const exported = all(/^export (?:async )?(?:function|const|class) ([A-Za-z0-9_]+)/gm, src);
  const declared = all(/^\s+([A-Za-z0-9_]+)[(<:]/gm, block('interface StoreModule'));
  assert.deepEqual(sorted(declared), sorted(exported));
  const codes = all(/new StoreError\('([a-z_]+)'/g, src);
  const typed = union('StoreErrorCode');
  for (const c of codes) assert.ok(typed.has(c), `store error ${c} in StoreErrorCode`);
});

test('engine error codes of stylus-web and engine-worker.js are declared', () => {
  const codes = new Set([...all(/coded\("([a-z_]+)"/g, read('crates/stylus-web/src/generator.rs')),
    ...all(/JsError::new\("([a-z_]+):/g, read('crates/stylus-web/src/engine.rs')),
    ...all(/format!\("([a-z_]+): /g, read('crates/stylus-web/src/engine.rs')),
    ...all(/new Error\(`([a-z_]+): /g, read('www/engine-worker.js'))]);
  assert.match(dts, /EngineErrorCode =[^;]+\| StoreErrorCode;/);
  const typed = new Set([...union('EngineErrorCode'), ...union('StoreErrorCode')]);
  for (const c of codes) assert.ok(typed.has(c), `engine error ${c} in EngineErrorCode`);
});

test('the widget: events and attributes', () => {
  const src = read('www/widget.js');
  assert.deepEqual(sorted(all(/this\.emit\('([a-z]+)'/g, src)), sorted(all(/^\s+([a-z]+): CustomEvent/gm, block('interface StylusGenerateEventMap'))));
  const attrs = new Set([...all(/getAttribute\('([a-z]+)'\)/g, src), ...all(/this\.num\('([a-z]+)'/g, src)]);
  const declared = all(/^\s+([a-z]+)\??: /gm, block('interface StylusGenerateAttributes'));
  assert.deepEqual(sorted(attrs), sorted(declared));
});

function tsc() {
  if (process.env.TSC) return process.env.TSC;
  const local = path.join(ROOT, 'node_modules/typescript/bin/tsc');
  return fs.existsSync(local) ? local : null;
}

test('the declarations compile (strict) with a usage sample', { skip: tsc() ? false : 'no TypeScript compiler (set TSC or npm i typescript)' }, () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'stylus-dts-'));
  const sample = `import type { EngineMessage, EngineReply, StoreModule, ComposeResponse } from ${JSON.stringify(path.join(ROOT, 'www/stylus'))};
const m: EngineMessage = { id: 1, type: 'loadModel', manifest: 'm.json', tokenizer: 't.json' };
declare const r: EngineReply<'generate'>;
if ('ok' in r && r.ok) console.log(r.result[0].rgb.length);
declare const s: StoreModule;
s.fetchVerified('x', { sha256: 'ab', onProgress: (p) => p.eta ?? p.loaded }).then((b) => b.length);
const el = document.querySelector('stylus-generate')!;
el.addEventListener('image', (e) => console.log(e.detail.adapters[0].weight, e.detail.rgb.length));
el.generate('a fox').then((x) => x?.length);
const c: ComposeResponse = { topics: [], images: [] };
void [m, c];
// @ts-expect-error: not a message of the protocol
const bad: EngineMessage = { id: 2, type: 'explode' };
void bad;
`;
  fs.writeFileSync(path.join(dir, 'use.ts'), sample);
  execFileSync(tsc(), ['--noEmit', '--strict', '--lib', 'es2022,dom', '--module', 'esnext', '--moduleResolution', 'bundler', path.join(dir, 'use.ts')], { stdio: 'pipe' });
  fs.rmSync(dir, { recursive: true });
});
