// The built worker (worker/build + the demo index staged in worker/assets) served by `wrangler dev`
// (workerd) on 127.0.0.1: compose answers, bad inputs get 4xx JSON with stable codes, and the worker
// keeps serving after each of them.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startWorker } from './lib/wrangler.mjs';

let w;
before(async () => { w = await startWorker(); });
after(async () => { await w?.stop(); });

const post = (body, headers = { 'content-type': 'application/json' }) =>
  fetch(`${w.url}/v1/compose`, { method: 'POST', body, headers });

test('GET /v1/health reports the loaded index', async () => {
  const r = await fetch(`${w.url}/v1/health`);
  assert.equal(r.status, 200);
  const j = await r.json();
  assert.equal(j.status, 'ok');
  assert.equal(j.index.embedder, 'bm25-v1');
  assert.ok(j.index.adapters > 1000, `adapters: ${j.index.adapters}`);
  assert.equal(j.index.source, 'assets');
  assert.deepEqual(j.composers, ['local']);
});

test('without an LLM configured, composer "llm" is refused and "local" answers', async () => {
  const r = await post(JSON.stringify({ prompt: 'a fox', composer: 'llm' }));
  assert.equal(r.status, 400);
  assert.equal((await r.json()).error.code, 'composer_unavailable');
  const ok = await post(JSON.stringify({ prompt: 'a fox', composer: 'local' }));
  assert.equal(ok.status, 200);
  assert.deepEqual((await ok.json()).composer, { used: 'local' });
  const h = await (await fetch(`${w.url}/v1/health`)).json();
  assert.equal(h.isolate.index_loads, 1, 'the index is loaded once per isolate');
});

test('POST /v1/compose: topics, adapters, one mask per image, final weights', async () => {
  const r = await post(JSON.stringify({ prompt: 'a watercolor painting of a forest at night', num_images: 4, seed: 7 }));
  assert.equal(r.status, 200);
  const j = await r.json();
  assert.ok(j.topics.length >= 2);
  const chosen = new Map();
  for (const t of j.topics) {
    assert.ok(t.adapters.length <= 3);
    for (const a of t.adapters) {
      assert.ok(!chosen.has(a.id), 'an adapter at most once');
      chosen.set(a.id, { ...a, topic: t.name });
      assert.match(a.model_page, /^https:\/\/civitai\.com\/models\/\d+$/);
    }
  }
  // the committed demo index has these: two watercolor styles (at most two styles in all), forest and night backgrounds
  const byTopic = (name) => j.topics.find((t) => t.name === name)?.adapters.map((a) => a.id) ?? [];
  assert.ok(byTopic('watercolor painting').includes(56082), JSON.stringify(j.topics.map((t) => t.name)));
  assert.ok(byTopic('forest').includes(84918));
  assert.ok(byTopic('night').includes(62217));
  assert.ok([...chosen.values()].filter((a) => a.category === 'style').length <= 2);
  assert.equal(j.images.length, 4);
  for (const img of j.images) {
    assert.match(img.prompt, /realistic, best quality$/);
    // weight = recommended · 0.8 / (active adapters of the same topic)
    for (const a of img.active) {
      const c = chosen.get(a.id);
      const n = img.active.filter((b) => chosen.get(b.id).topic === c.topic).length;
      assert.ok(Math.abs(a.weight - (c.weight * 0.8) / n) < 1e-4, `weight of ${a.id}`);
      assert.ok(img.a1111.includes('<lora:'));
    }
  }
  const again = await (await post(JSON.stringify({ prompt: 'a watercolor painting of a forest at night', num_images: 4, seed: 7 }))).json();
  assert.deepEqual(again.images, j.images, 'same seed, same masks');
});

test('GET /v1/adapters/{id}', async () => {
  const j = await (await post(JSON.stringify({ prompt: 'neon lights' }))).json();
  const id = j.topics.flatMap((t) => t.adapters)[0].id;
  const r = await fetch(`${w.url}/v1/adapters/${id}`);
  assert.equal(r.status, 200);
  assert.equal((await r.json()).id, id);
  assert.equal((await fetch(`${w.url}/v1/adapters/999999999999`)).status, 404);
  assert.equal((await fetch(`${w.url}/v1/adapters/abc`)).status, 400);
});

test('bad inputs get 4xx with clear codes and the worker keeps serving', async () => {
  const cases = [
    ['', 400, 'body_empty'],
    ['{not json', 400, 'invalid_request'],
    ['{"prompt": 5}', 400, 'invalid_request'],
    ['{"prompt": "x", "unknown_field": 1}', 400, 'invalid_request'],
    ['{"prompt": ""}', 400, 'prompt_empty'],
    [JSON.stringify({ prompt: 'a'.repeat(100_000) }), 400, 'prompt_too_long'],
    [JSON.stringify({ prompt: 'x', options: { top_k: 1e9 } }), 400, 'top_k_out_of_range'],
    [JSON.stringify({ prompt: 'x', num_images: 1e6 }), 400, 'num_images_out_of_range'],
    [JSON.stringify({ prompt: 'x', options: { scale: -1 } }), 400, 'scale_out_of_range'],
    ['x'.repeat(10 * 1024 * 1024), 413, 'body_too_large'],
  ];
  for (const [body, status, code] of cases) {
    const r = await post(body);
    assert.equal(r.status, status, `${code}: status`);
    const j = await r.json();
    assert.equal(j.error.code, code);
    assert.ok(j.error.message.length > 0);
    assert.ok(!/panicked|RuntimeError|unreachable|\.rs:/.test(j.error.message), 'no internals leak');
  }
  // a chunked body (no Content-Length) is counted while read and cut off at the limit
  const chunk = new TextEncoder().encode('x'.repeat(64 * 1024));
  let sent = 0;
  const stream = new ReadableStream({ pull(c) { if (sent++ < 4) c.enqueue(chunk); else c.close(); } });
  const chunked = await fetch(`${w.url}/v1/compose`, { method: 'POST', body: stream, duplex: 'half' });
  assert.equal(chunked.status, 413);
  assert.equal((await chunked.json()).error.code, 'body_too_large');
  // control characters and mixed scripts are fine
  const r = await post(JSON.stringify({ prompt: 'a fox\u0000\u0007 in a 森林 with ЛИСА and 🦊\ttail' }));
  assert.equal(r.status, 200);
  const h = await fetch(`${w.url}/v1/health`);
  assert.equal(h.status, 200, 'still serving');
});

test('unknown routes, methods and CORS', async () => {
  let r = await fetch(`${w.url}/nope`);
  assert.equal(r.status, 404);
  assert.equal((await r.json()).error.code, 'not_found');
  r = await fetch(`${w.url}/v1/compose`);
  assert.equal(r.status, 405);
  r = await fetch(`${w.url}/v1/compose`, { method: 'OPTIONS', headers: { Origin: 'https://elsewhere.example' } });
  assert.equal(r.status, 204);
  assert.equal(r.headers.get('access-control-allow-origin'), '*');
});
