// Stylus web app: composes adapters for a prompt (worker, or offline in WebAssembly: compose.js),
// shows the topics and adapters (weights editable, each switchable), and generates one image per
// mask on this GPU through the engine Web Worker (engine.js), with download and step progress, a
// save link per image, persisted settings and a clear message when WebGPU is missing.
import { createComposer } from './compose.js';
import { Engine, checkWebGPU, generateAll, plan, toCanvas, describeDownload } from './engine.js';
import { requestPersistence, estimate } from './store.js';

const $ = (id) => document.getElementById(id);
const composer = createComposer(new URL('./', location.href));
const SETTINGS = ['worker-url', 'model-url', 'tokenizer-url', 'scheduler', 'steps', 'cfg', 'width', 'height', 'precision'];
let engine = null;
let last = null; // {result, request}
const overrides = new Map(); // adapter id → {enabled, weight}
let busy = false;

function setStatus(text, error = false) {
  $('status').textContent = text;
  $('status').className = error ? 'error' : '';
}
const errText = (e) => `Error${e.code ? ` (${e.code})` : ''}: ${e.message}`;

function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  for (const c of children) e.append(c);
  return e;
}

// ---- settings: inputs of the Settings panel, kept in localStorage; ?id=value in the URL overrides ----
function loadSettings() {
  let saved = {};
  try { saved = JSON.parse(localStorage.getItem('stylus.settings') || '{}'); } catch {}
  const q = new URLSearchParams(location.search);
  for (const id of SETTINGS) {
    const v = q.get(id) ?? saved[id];
    if (v != null) $(id).value = v;
  }
  for (const id of ['prompt', 'negative', 'num-images', 'seed', 'mode']) if (q.get(id) != null) $(id).value = q.get(id);
}
function saveSettings() {
  const o = {};
  for (const id of SETTINGS) o[id] = $(id).value;
  try { localStorage.setItem('stylus.settings', JSON.stringify(o)); } catch {}
}
function genSettings() {
  const num = (id) => Number($(id).value);
  return {
    modelUrl: $('model-url').value.trim(), tokenizerUrl: $('tokenizer-url').value.trim(), config: 'sd15',
    steps: num('steps'), cfg: num('cfg'), width: num('width'), height: num('height'), seed: num('seed'),
    scheduler: $('scheduler').value, negative: $('negative').value.trim(), precision: $('precision').value || 'f32',
  };
}

// ---- compose result ----
function renderImages() {
  if (!last) return;
  const p = plan(last.result, overrides);
  $('images').querySelectorAll('.image').forEach((box, i) => {
    const img = p.images[i];
    box.querySelector('.used').textContent = img.active.map((a) => `${a.name} × ${a.weight.toFixed(2)}`).join(', ') || 'no adapter';
    box.querySelector('code').textContent = a1111(last.result.images[i], img.active);
  });
}

// The A1111 prompt of an image with the visitor's weights: the composer's `<lora:NAME:W>` tags name
// its active adapters in order; switched-off adapters lose their tag.
function a1111(orig, active) {
  const names = new Map(orig.active.map((a, k) => [a.id, [...orig.a1111.matchAll(/<lora:([^>]+):[-\d.]+>/g)][k]?.[1]]));
  const text = orig.a1111.replace(/\s*<lora:[^>]+>/g, '');
  return [text, ...active.filter((a) => names.get(a.id)).map((a) => `<lora:${names.get(a.id)}:${a.weight.toFixed(2)}>`)].join(' ');
}

const mb = (n) => (n >= 1e7 ? (n / 1e6).toFixed(0) : (n / 1e6).toFixed(1));

function render(res) {
  const topics = $('topics');
  topics.replaceChildren(el('h2', {}, 'Topics and adapters'));
  for (const t of res.topics) {
    const box = el('div', { class: 'topic' }, el('h3', {}, `“${t.name}”`));
    if (t.adapters.length === 0) box.append(el('p', {}, 'No adapter fits this topic.'));
    for (const a of t.adapters) {
      const use = el('input', { type: 'checkbox', class: 'use', 'aria-label': `use ${a.name}` });
      use.checked = overrides.get(a.id)?.enabled ?? true;
      const weight = el('input', { type: 'number', class: 'weight', min: '0', max: '2', step: '0.05', value: String(overrides.get(a.id)?.weight ?? a.weight), 'aria-label': `weight of ${a.name}` });
      const sync = () => {
        overrides.set(a.id, { enabled: use.checked, weight: Number(weight.value) });
        for (const o of topics.querySelectorAll(`.adapter[data-id="${a.id}"]`)) {
          o.querySelector('.use').checked = use.checked;
          o.querySelector('.weight').value = weight.value;
        }
        renderImages();
      };
      use.addEventListener('change', sync);
      weight.addEventListener('input', sync);
      box.append(el('div', { class: 'adapter', 'data-id': String(a.id) },
        el('label', { class: 'name' }, use, ' ', el('a', { href: a.model_page, target: '_blank', rel: 'noopener' }, a.name)),
        el('span', {}, el('span', { class: 'badge' }, a.category), ' weight ', weight),
        el('small', {}, `matched: ${a.why.join(', ')} · score ${a.score.toFixed(2)} · ${mb(a.size_bytes)} MB`)));
    }
    topics.append(box);
  }
  const images = $('images');
  images.replaceChildren(el('h2', {}, 'Images (one mask each)'));
  const grid = el('div', { class: 'grid' });
  res.images.forEach((img, i) => {
    grid.append(el('div', { class: 'image', 'data-index': String(i) },
      el('div', { class: 'canvas' }),
      el('strong', {}, `Image ${i + 1}: `), el('span', { class: 'used' }),
      el('code', {}, img.a1111)));
  });
  images.append(grid);
  renderImages();
}

async function compose() {
  const request = {
    prompt: $('prompt').value,
    negative_prompt: $('negative').value,
    num_images: Number($('num-images').value),
    seed: Number($('seed').value),
    options: { mask_mode: $('mask-mode').value },
  };
  const t0 = performance.now();
  const { result, via } = await composer.compose(request, { workerUrl: $('worker-url').value, mode: $('mode').value });
  const label = { worker: 'worker', offline: 'offline (WebAssembly)', 'offline-fallback': 'offline (WebAssembly; the worker was unreachable)' }[via];
  overrides.clear();
  last = { result, request };
  render(result);
  document.body.dataset.via = via === 'worker' ? 'worker' : 'offline';
  setStatus(`Composed via ${label} in ${(performance.now() - t0).toFixed(0)} ms.`);
  return result;
}

async function onCompose(ev) {
  ev.preventDefault();
  if (busy) return;
  setStatus('Composing…');
  try { await compose(); } catch (e) { setStatus(errText(e), true); }
}

// ---- generation ----
function downloadRow(d) {
  const key = d.part !== undefined ? d.what : d.url;
  let row = [...$('downloads').children].find((r) => r.dataset.key === key);
  if (!row) {
    row = el('div', { class: 'download' }, el('span', { class: 'what' }, d.shard ? `${d.what} ${d.shard}` : d.what), el('progress', { max: '1', value: '0' }), el('span', { class: 'text' }));
    row.dataset.key = key;
    $('downloads').append(row);
  }
  row.querySelector('progress').max = d.total || 1;
  row.querySelector('progress').value = d.total ? d.loaded : 0;
  row.querySelector('.text').textContent = describeDownload(d);
  row.dataset.cached = String(!!d.cached);
}

function onStep(s, i, n) {
  const frac = s.stage === 'denoising' ? s.done / s.total : s.stage === 'decoding' ? 1 : 0;
  $('step-bar').value = (i + frac) / n;
  $('step-text').textContent = `${n > 1 ? `image ${i + 1}/${n}: ` : ''}${s.stage} ${s.done}/${s.total}`;
}

/** A live preview (latent resolution, 1/8 of the image) scaled into image i's box until the image comes. */
function showPreview(img, i) {
  const box = $('images').querySelector(`.image[data-index="${i}"] .canvas`);
  if (!box || box.querySelector('a.save')) return;
  const c = toCanvas(img);
  c.className = 'preview';
  c.title = 'preview while denoising';
  box.replaceChildren(c);
  document.body.dataset.previews = String(Number(document.body.dataset.previews || 0) + 1);
}

function showImage(img, i) {
  const box = $('images').querySelector(`.image[data-index="${i}"] .canvas`);
  if (!box) return;
  const c = toCanvas(img);
  const a = el('a', { class: 'save', download: `stylus-${$('seed').value}-${i + 1}.png`, href: '#' }, 'Save image');
  c.toBlob((b) => { a.href = URL.createObjectURL(b); });
  box.replaceChildren(c, a);
  document.body.dataset.firstImageMs ??= String(Math.round(performance.now())); // since navigation start
}

async function onGenerate() {
  if (busy) return;
  busy = true;
  $('generate').disabled = true;
  $('cancel').hidden = false;
  const t0 = performance.now();
  try {
    if (!last) { setStatus('Composing…'); await compose(); }
    const settings = genSettings();
    if (!settings.modelUrl) throw Object.assign(new Error('set a model URL in Settings'), { code: 'no_model' });
    saveSettings();
    $('progress').hidden = false;
    $('downloads').replaceChildren();
    $('step-bar').value = 0;
    requestPersistence().then(showStorage);
    engine ??= new Engine(location.href);
    const { images } = await generateAll(engine, last.result, settings, overrides, {
      onDownload: downloadRow, onWarmUp: (s) => { $('step-text').textContent = `compiling GPU kernels ${s.done}/${s.total}`; }, onStep, onPreview: showPreview, onStatus: (t) => setStatus(t), onImage: showImage,
    });
    setStatus(`Generated ${images.length} image${images.length === 1 ? '' : 's'} in ${((performance.now() - t0) / 1000).toFixed(1)} s.`);
    document.body.dataset.generated = String(images.length);
    document.body.dataset.wasmMemory = String((await engine.stats()).wasmMemoryBytes);
    showStorage();
  } catch (e) {
    setStatus(errText(e), true);
  } finally {
    busy = false;
    $('generate').disabled = document.body.dataset.webgpu === 'no';
    $('cancel').hidden = true;
  }
}

async function showStorage(persisted) {
  const est = await estimate();
  const p = persisted === true ? 'persistent' : persisted === false ? 'best-effort (the browser may evict it)' : '';
  if (est) $('storage-info').textContent = ` Stored files: ${(est.usage / 1e6).toFixed(1)} MB of ${(est.quota / 1e6).toFixed(0)} MB${p ? `, ${p}` : ''}.`;
}

async function start() {
  loadSettings();
  for (const id of SETTINGS) $(id).addEventListener('change', saveSettings);
  $('compose-form').addEventListener('submit', onCompose);
  $('generate').addEventListener('click', onGenerate);
  $('cancel').addEventListener('click', () => engine?.cancel());
  const gpu = await checkWebGPU();
  document.body.dataset.webgpu = gpu.ok ? 'yes' : 'no';
  if (!gpu.ok) {
    $('no-webgpu').textContent = gpu.reason;
    $('no-webgpu').hidden = false;
    $('generate').disabled = true;
    $('generate').title = 'needs WebGPU';
  }
  if ('serviceWorker' in navigator && !new URLSearchParams(location.search).has('nosw')) {
    navigator.serviceWorker.register('sw.js').catch((e) => console.warn('service worker:', e));
  }
  document.body.dataset.ready = 'true';
}

start().catch((e) => setStatus(errText(e), true));
