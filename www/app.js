// Stylus web app: composes adapters for a prompt through the worker (POST /v1/compose) or, when the
// worker is unreachable or "offline" is chosen, in this browser with the stylus-web WebAssembly
// composer over the index bundle the site serves at /index/ (the same compose code as the worker).
import init, { Composer } from './pkg/stylus_web.js';

const $ = (id) => document.getElementById(id);
let offline = null; // Promise<Composer>, loaded on first use

function setStatus(text, error = false) {
  $('status').textContent = text;
  $('status').className = error ? 'error' : '';
}

async function loadOffline() {
  await init();
  const manifest = await (await fetch('index/index.stylusix.json')).json();
  const parts = [];
  for (const name of manifest.shards) {
    const r = await fetch(`index/${name}`);
    if (!r.ok) throw new Error(`index shard ${name}: HTTP ${r.status}`);
    parts.push(new Uint8Array(await r.arrayBuffer()));
  }
  // The bundle itself, or its shards: assembled (and checked) by the composer.
  return Composer.fromParts(parts);
}

async function composeOffline(request) {
  offline ??= loadOffline();
  const c = await offline;
  try {
    return JSON.parse(c.compose(JSON.stringify(request)));
  } catch (e) {
    const [code, ...rest] = String(e.message ?? e).split(': ');
    throw Object.assign(new Error(rest.join(': ') || code), { code });
  }
}

async function composeWorker(request) {
  const base = $('worker-url').value.trim().replace(/\/$/, '');
  const r = await fetch(`${base}/v1/compose`, {
    method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(request),
  });
  const j = await r.json();
  if (!r.ok) throw Object.assign(new Error(j.error?.message ?? `HTTP ${r.status}`), { code: j.error?.code, http: true });
  return j;
}

function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  for (const c of children) e.append(c);
  return e;
}

function render(res) {
  const topics = $('topics');
  const images = $('images');
  topics.replaceChildren(el('h2', {}, 'Topics and adapters'));
  const names = new Map();
  for (const t of res.topics) {
    const box = el('div', { class: 'topic' }, el('h3', {}, `“${t.name}”`));
    if (t.adapters.length === 0) box.append(el('p', {}, 'No adapter fits this topic.'));
    for (const a of t.adapters) {
      names.set(a.id, a.name);
      box.append(el('div', { class: 'adapter', 'data-id': String(a.id) },
        el('a', { href: a.model_page, target: '_blank', rel: 'noopener' }, a.name),
        el('span', {}, el('span', { class: 'badge' }, a.category), ` weight ${a.weight.toFixed(2)}`),
        el('small', {}, `matched: ${a.why.join(', ')} · score ${a.score.toFixed(2)} · ${(a.size_bytes / 1e6).toFixed(0)} MB`)));
    }
    topics.append(box);
  }
  images.replaceChildren(el('h2', {}, 'Images (one mask each)'));
  res.images.forEach((img, i) => {
    const active = img.active.map((a) => `${names.get(a.id) ?? a.id} × ${a.weight.toFixed(2)}`).join(', ') || 'no adapter';
    images.append(el('div', { class: 'image' }, el('strong', {}, `Image ${i + 1}: `), active, el('code', {}, img.a1111)));
  });
}

async function onCompose(ev) {
  ev.preventDefault();
  const request = {
    prompt: $('prompt').value,
    negative_prompt: $('negative').value,
    num_images: Number($('num-images').value),
    seed: Number($('seed').value),
    options: { mask_mode: $('mask-mode').value },
  };
  const mode = $('mode').value;
  setStatus('Composing…');
  const t0 = performance.now();
  try {
    let res;
    let via = 'worker';
    if (mode === 'offline') {
      res = await composeOffline(request);
      via = 'offline (WebAssembly)';
    } else {
      try {
        res = await composeWorker(request);
      } catch (e) {
        if (mode === 'worker' || e.http) throw e; // the worker answered: its error stands
        res = await composeOffline(request);
        via = 'offline (WebAssembly; the worker was unreachable)';
      }
    }
    render(res);
    document.body.dataset.via = via.startsWith('offline') ? 'offline' : 'worker';
    setStatus(`Composed via ${via} in ${(performance.now() - t0).toFixed(0)} ms.`);
  } catch (e) {
    setStatus(`Error${e.code ? ` (${e.code})` : ''}: ${e.message}`, true);
  }
}

$('compose-form').addEventListener('submit', onCompose);
