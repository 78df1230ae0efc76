// The worker with its index in R2 (`wrangler dev --env r2`, the bucket simulated locally by
// `wrangler r2 object put --local --persist-to DIR`): a sharded synthetic index (`stylus catalog synth`
// + `stylus index build --shard-mib 1`; the demo bundle as one object when ../shared's catalog is
// absent) is loaded once per isolate from the bucket and composes exactly like the native CLI over
// the same files; a manifest whose shard is missing gives a 503 without internals.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { startWorker, wranglerBin, wranglerEnv } from './lib/wrangler.mjs';

const root = new URL('../../', import.meta.url).pathname;
const targetDir = process.env.CARGO_TARGET_DIR || `${process.env.HOME}/.cache/stylus/target`;
const cli = `${targetDir}/debug/stylus`;
const catalog = path.resolve(root, '../shared/data/civitai/civitai_lora_top10k_2023-07.jsonl');
// enough cards for two 1 MiB shards (binary cards: ~170 bytes each with their postings)
const SYNTH = 10000;

let tmp, state, idx, manifest, synthetic, w;

function put(key, file) {
  execFileSync(wranglerBin, ['r2', 'object', 'put', `stylus-index/${key}`, '--file', file, '--local', '--persist-to', state, '--env', 'r2'],
    { cwd: `${root}worker`, env: wranglerEnv(), stdio: 'pipe' });
}

before(async () => {
  tmp = mkdtempSync(path.join(tmpdir(), 'stylus-r2-'));
  state = path.join(tmp, 'state');
  idx = path.join(tmp, 'idx');
  mkdirSync(idx);
  synthetic = existsSync(catalog) && existsSync(cli);
  if (synthetic) {
    const cards = path.join(tmp, 'cards.jsonl');
    execFileSync(cli, ['catalog', 'synth', '--from', catalog, '--n', String(SYNTH), '--seed', '11', '--out', cards], { stdio: 'pipe' });
    execFileSync(cli, ['index', 'build', '--catalog', cards, '--shard-mib', '1', '--out', path.join(idx, 'index.stylusix')], { stdio: 'pipe' });
  } else {
    for (const f of ['index.stylusix', 'index.stylusix.json']) copyFileSync(`${root}data/demo/${f}`, path.join(idx, f));
  }
  manifest = JSON.parse(readFileSync(path.join(idx, 'index.stylusix.json')));
  for (const f of [...manifest.shards, 'index.stylusix.json']) put(`index/${f}`, path.join(idx, f));
  // A manifest whose second file was never uploaded (an unfinished upload).
  const stale = path.join(tmp, 'stale.json');
  writeFileSync(stale, JSON.stringify({ ...manifest, shards: [manifest.shards[0], 'index.stylusix.missing'] }));
  put('stale/index.stylusix.json', stale);
  put(`stale/${manifest.shards[0]}`, path.join(idx, manifest.shards[0]));
  w = await startWorker({ args: ['--env', 'r2', '--persist-to', state] });
});

after(async () => {
  await w?.stop();
  if (tmp) rmSync(tmp, { recursive: true, force: true });
});

const compose = (url, body) => fetch(`${url}/v1/compose`, { method: 'POST', body: JSON.stringify(body), headers: { 'content-type': 'application/json' } });

test('the index comes from R2, sharded, loaded once per isolate', async () => {
  if (synthetic) assert.ok(manifest.shards.length >= 2, `shards: ${manifest.shards}`);
  const j = await (await fetch(`${w.url}/v1/health`)).json();
  assert.equal(j.status, 'ok');
  assert.equal(j.index.source, 'r2');
  assert.equal(j.index.bytes, manifest.bytes);
  assert.equal(j.index.adapters, synthetic ? SYNTH : 2711);
  assert.match(j.index.sha256, /^[0-9a-f]{64}$/);
  assert.ok(Number.isInteger(j.index.format_version) && j.index.format_version >= 1, 'the bundle format version as loaded');
  for (let i = 0; i < 3; i++) assert.equal((await compose(w.url, { prompt: `a fox ${i}` })).status, 200);
  const again = await (await fetch(`${w.url}/v1/health`)).json();
  assert.equal(again.isolate.index_loads, 1, 'loaded once');
  assert.ok(again.isolate.requests > j.isolate.requests);
  assert.ok(again.isolate.wasm_memory_bytes >= manifest.bytes, 'the bundle was in wasm memory');
});

test('composes over R2 exactly like the native CLI over the same files', async (t) => {
  if (!existsSync(cli)) return t.skip('native CLI not built');
  for (const [prompt, images, seed] of [['a watercolor painting of a fox in a forest, autumn leaves', 4, 3], ['cyberpunk city at night, neon lights', 2, 0]]) {
    const r = await compose(w.url, { prompt, num_images: images, seed });
    assert.equal(r.status, 200);
    const j = await r.json();
    assert.deepEqual(j.composer, { used: 'local' });
    const native = JSON.parse(execFileSync(cli, ['compose', '--json', '--index', path.join(idx, 'index.stylusix.json'),
      '--images', String(images), '--seed', String(seed), prompt]));
    assert.deepEqual(j.topics, native.topics, prompt);
    assert.deepEqual(j.images, native.images, prompt);
    const ids = j.topics.flatMap((t) => t.adapters.map((a) => a.id));
    assert.ok(ids.length > 0);
    if (synthetic) assert.ok(ids.every((id) => id >= 1e12), 'synthetic ids');
  }
});

test('an unfinished upload is a 503 with a stable code and no internals', async () => {
  const s = await startWorker({ args: ['--env', 'r2', '--persist-to', state, '--var', 'INDEX_MANIFEST:stale/index.stylusix.json'], readyPath: '/v1/none' });
  try {
    const h = await fetch(`${s.url}/v1/health`);
    assert.equal(h.status, 503);
    const hj = await h.json();
    assert.equal(hj.error.code, 'index_unavailable');
    const r = await compose(s.url, { prompt: 'a fox' });
    assert.equal(r.status, 503);
    const text = await r.text();
    assert.equal(JSON.parse(text).error.code, 'index_unavailable');
    assert.ok(!/missing|stale|R2|stylusix|\.rs:|panicked/.test(text + JSON.stringify(hj)), text);
    assert.equal((await fetch(`${s.url}/v1/none`)).status, 404, 'routes without the index still answer');
  } finally {
    await s.stop();
  }
});
