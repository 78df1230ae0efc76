// The worker's optional LLM composer under `wrangler dev` (workerd), against a mock
// OpenAI-compatible server on 127.0.0.1 (endpoint and model from `--var`, the key as the
// LLM_API_KEY binding): a good answer is validated and used (invalid parts dropped and counted); a
// garbage answer, an error status and a timeout each fall back to the local composer's exact answer,
// reported with a stable code and never the endpoint's text.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { startWorker } from './lib/wrangler.mjs';

const KEY = 'test-secret-key';
const LEAK = 'ENDPOINT-INTERNAL-DETAIL';
const TIMEOUT_MS = 800;

// The mock endpoint: the test sets `mode` before each request and reads what the worker sent.
const mock = { mode: 'good', seen: [], server: null, url: '' };

function chat(content) {
  return JSON.stringify({ id: 'x', object: 'chat.completion', choices: [{ index: 0, message: { role: 'assistant', content } }] });
}

// A composition in the reference's schema from the candidates the worker sent, with one foreign
// topic and one unknown id that validation must drop.
function goodAnswer(user) {
  const has = (a, w) => a.name.toLowerCase().includes(w) || a.tags.some((t) => t.toLowerCase().includes(w));
  const style = user.adapters.find((a) => a.category === 'style' && has(a, 'watercolor'));
  const fox = user.adapters.find((a) => has(a, 'fox') && a.id !== style?.id);
  return {
    'watercolor painting': { [style.id]: 'a watercolor style' },
    fox: [fox.id, 999999999999],
    forest: {},
    dragon: [style.id],
  };
}

before(async () => {
  mock.server = http.createServer((req, res) => {
    let body = '';
    req.on('data', (d) => { body += d; });
    req.on('end', () => {
      const sent = JSON.parse(body);
      mock.seen.push({ method: req.method, url: req.url, auth: req.headers.authorization, body: sent });
      const user = JSON.parse(sent.messages[1].content);
      const reply = (status, text) => { res.writeHead(status, { 'content-type': 'application/json' }); res.end(text); };
      switch (mock.mode) {
        case 'good': return reply(200, chat('Here you go:\n```json\n' + JSON.stringify(goodAnswer(user)) + '\n```'));
        case 'garbage': return reply(200, `<html>${LEAK}</html>`);
        case 'refusal': return reply(200, chat(`I cannot help with that (${LEAK}).`));
        case 'error': return reply(500, JSON.stringify({ error: { message: LEAK } }));
        case 'slow': return setTimeout(() => { if (!res.destroyed) reply(200, chat(JSON.stringify(goodAnswer(user)))); }, TIMEOUT_MS * 6);
        default: return reply(404, '{}');
      }
    });
  });
  await new Promise((r) => mock.server.listen(0, '127.0.0.1', r));
  mock.url = `http://127.0.0.1:${mock.server.address().port}/v1`;
  w = await startWorker({ args: ['--var', `LLM_BASE_URL:${mock.url}`, '--var', 'LLM_MODEL:mock-gpt', '--var', `LLM_API_KEY:${KEY}`,
    '--var', `LLM_TIMEOUT_MS:${TIMEOUT_MS}`] });
});

let w;
after(async () => {
  await w?.stop();
  mock.server?.closeAllConnections();
  await new Promise((r) => mock.server ? mock.server.close(r) : r());
});

const PROMPT = 'a watercolor painting of a fox in a forest';
const compose = async (extra) => {
  const r = await fetch(`${w.url}/v1/compose`, { method: 'POST', headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ prompt: PROMPT, num_images: 4, seed: 5, ...extra }) });
  return { status: r.status, text: await r.text() };
};

test('health lists the LLM composer when it is configured', async () => {
  const j = await (await fetch(`${w.url}/v1/health`)).json();
  assert.deepEqual(j.composers, ['local', 'llm']);
  assert.ok(!JSON.stringify(j).includes(KEY) && !JSON.stringify(j).includes(mock.url), 'no endpoint or key in health');
});

test('a good answer is validated and used', async () => {
  mock.mode = 'good';
  mock.seen = [];
  const r = await compose({ composer: 'llm' });
  assert.equal(r.status, 200, r.text);
  const j = JSON.parse(r.text);
  // what the worker sent: the OpenAI chat-completions request with the key, the model and the candidates
  assert.equal(mock.seen.length, 1);
  const sent = mock.seen[0];
  assert.equal(sent.method, 'POST');
  assert.equal(sent.url, '/v1/chat/completions');
  assert.equal(sent.auth, `Bearer ${KEY}`);
  assert.equal(sent.body.model, 'mock-gpt');
  const user = JSON.parse(sent.body.messages[1].content);
  assert.equal(user.prompt, PROMPT);
  assert.ok(user.adapters.length > 10 && user.adapters.length <= 150, `${user.adapters.length} candidates`);
  // what came back: the model's topics and adapters, two invalid parts dropped
  assert.deepEqual(j.composer, { used: 'llm', model: 'mock-gpt', dropped: 2 });
  const want = goodAnswer(user);
  assert.deepEqual(j.topics.map((t) => t.name), ['watercolor painting', 'fox', 'forest']);
  assert.deepEqual(j.topics.map((t) => t.adapters.map((a) => a.id)),
    [[Number(Object.keys(want['watercolor painting'])[0])], [want.fox[0]], []]);
  for (const t of j.topics) assert.equal(PROMPT.slice(t.span[0], t.span[1]), t.name);
  assert.equal(j.images.length, 4);
  for (const img of j.images) {
    assert.deepEqual(Object.keys(img.mask).map(Number).sort(), j.topics.flatMap((t) => t.adapters.map((a) => a.id)).sort());
    for (const a of img.active) assert.ok(img.a1111.includes(':'), a.id);
  }
});

test('garbage, refusals, error statuses and timeouts fall back to the local composer', async () => {
  const local = JSON.parse((await compose({ composer: 'local' })).text);
  assert.deepEqual(local.composer, { used: 'local' });
  for (const [mode, code] of [['garbage', 'llm_invalid_reply'], ['refusal', 'llm_invalid_reply'], ['error', 'llm_http_error'], ['slow', 'llm_timeout']]) {
    mock.mode = mode;
    const r = await compose({ composer: 'llm' });
    assert.equal(r.status, 200, `${mode}: ${r.text}`);
    const j = JSON.parse(r.text);
    assert.equal(j.composer.requested, 'llm');
    assert.equal(j.composer.used, 'local');
    assert.equal(j.composer.fallback.code, code, mode);
    assert.match(j.composer.fallback.message, /local composer answered/);
    assert.deepEqual([j.topics, j.images], [local.topics, local.images], `${mode}: the local answer`);
    assert.ok(!r.text.includes(LEAK) && !r.text.includes(KEY) && !/\.rs:|panicked|RuntimeError/.test(r.text), `${mode}: nothing internal`);
  }
  mock.mode = 'good';
  const still = await compose({ composer: 'llm' });
  assert.equal(JSON.parse(still.text).composer.used, 'llm', 'the worker keeps using the LLM after failures');
});

test('the composer option is checked', async () => {
  for (const composer of ['gpt-4', 5, null]) {
    const r = await compose({ composer });
    assert.equal(r.status, 400);
    assert.equal(JSON.parse(r.text).error.code, 'invalid_request');
  }
});
