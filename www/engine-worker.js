// Web Worker hosting the WebGPU `Generator` (stylus-web built with `engine`), so generation never
// blocks the page. Files come through the download store (store.js: progress, sha256, Cache API /
// IndexedDB, resume). Protocol (typed in stylus.d.ts): the page posts {id, type, ...}; the worker
// answers {id, ok, result} or {id, ok: false, error: "code: message"}, and streams {id, progress}
// (generation stages) and {id, download} (store progress) on the way.
//   init        {pkg, wasmParts?, precision?}   URL of stylus_web.js (engine build); wasmParts: URL of the
//                                          parts manifest of its wasm (reassembled and verified here);
//                                          precision: 'f32' (default), 'f16' or 'auto' → result {precision}
//   loadModel   {manifest, tokenizer, retries?, warmUp?}       converted model (`stylus convert`)
//            or {checkpoint, tokenizer, config, sha256?, retries?, warmUp?}   single .safetensors file
//                                          warmUp: a generate request; when the model comes from the network,
//                                          its kernels compile on a zero-weight stand-in meanwhile
//                                          (result.warmed says whether that ran to the end)
//   addLora     {url | bytes, sha256?, size?, name?}   → result: adapter index (same url+sha: reused)
//   setAdapters {weights}                  [[w per adapter] per image], [] = none
//   warmUp      {request}                  compiles the kernels a `generate` of this request launches; later
//                                          messages download meanwhile (Generator calls run one at a time)
//   generate    {request}                  {prompt, negative, steps, cfg, seed, width, height, scheduler, batch}
//   cancel      {}                         stops the running generation (or warm-up) at its next step
//   stats       {}                         → {wasmMemoryBytes, loras}
import * as store from './store.js';
import { limitsProblem } from './limits.js';

let mod;
let wasm;
let gen;
let loras = new Map(); // url|sha → index, since the last loadModel
let loaded = false; // a model is in the Generator (a failed load keeps the old one); a switch then skips the stand-in
let queue = Promise.resolve(); // the Generator's work, one call at a time in arrival order (downloads run beside it)

// Runs `fn` (a Generator call) after everything queued before it; its result or error is the caller's.
function serial(fn) {
  const run = queue.then(fn);
  queue = run.catch(() => {});
  return run;
}

// A store progress handler: `onData` sees each event, the page gets it tagged as message `id`'s download.
function downloadProgress(id, tag, onData) {
  return (d) => { onData?.(d); self.postMessage({ id, download: { ...d, ...tag } }); };
}

async function bytes(src, id, what, opts = {}) {
  if (src instanceof Uint8Array) return src;
  if (src instanceof ArrayBuffer) return new Uint8Array(src);
  const { tag, onData, ...o } = opts;
  return store.fetchVerified(src, { ...o, what, onProgress: downloadProgress(id, tag, onData) });
}

async function init(id, { pkg, wasmParts, precision }) {
  if (gen) return { reused: true, precision: gen.precision };
  mod = await import(pkg);
  if (wasmParts) {
    const code = await store.fetchParts(wasmParts, { what: 'engine', onProgress: (d) => self.postMessage({ id, download: d }) });
    wasm = await mod.default({ module_or_path: code });
  } else {
    wasm = await mod.default();
  }
  gen = await mod.Generator.create(precision);
  return { precision: gen.precision };
}

// The first progress event of a model file that comes from the network (not the cache) starts the
// warm-up on a stand-in of `config`: shader compilation overlaps the download, a first visit's long part.
// Not when a model is loaded: the stand-in would sit beside it in GPU memory.
function standInStarter(id, m, tokP, state) {
  return (config) => (d) => {
    if (state.run || d.cached || !m.warmUp || loaded) return;
    const run = serial(() => tokP.then((tok) => gen.warmUpStandIn(config, tok, JSON.stringify(m.warmUp), (p) => self.postMessage({ id, progress: p }))));
    state.run = run.then(() => true, () => false);
  };
}

async function loadModel(id, m) {
  const retries = m.retries ?? 3;
  const tokP = bytes(m.tokenizer, id, 'tokenizer', { retries });
  tokP.catch(() => {}); // awaited below; a failure must not also surface as unhandled
  const standIn = {};
  const starter = standInStarter(id, m, tokP, standIn);
  if (m.manifest) {
    const manifest = await store.fetchJson(m.manifest, { what: 'model manifest' });
    if (!Array.isArray(manifest.shards)) throw new Error(`bad_model: ${m.manifest} is not a converted-model manifest (no shards)`);
    // Before downloading anything: can this GPU's buffers hold the model's largest tensor?
    const adapter = await self.navigator?.gpu?.requestAdapter?.().catch(() => null);
    const problem = limitsProblem(manifest, adapter?.limits, gen.precision === 'f16' ? 2 : 4);
    if (problem) throw new Error(`webgpu_limits: ${problem}`);
    const onData = starter(manifest.config);
    const shards = [];
    for (const [i, s] of manifest.shards.entries()) {
      const url = new URL(s.file, new URL(m.manifest, self.location.href)).href;
      const tag = { shard: `${i + 1}/${manifest.shards.length}` };
      shards.push(s.gzip // `stylus convert --gzip`: the compressed copy travels, the shard's sha256 is checked after
        ? await store.fetchGzipVerified(url, { gzip: s.gzip, sha256: s.sha256, what: 'model', retries, onProgress: downloadProgress(id, tag, onData) })
        : await bytes(url, id, 'model', { sha256: s.sha256, size: s.bytes, retries, tag, onData }));
    }
    const tok = await tokP;
    await serial(() => { gen.loadConvertedModel(JSON.stringify(manifest), shards, tok); loaded = true; });
    return { config: manifest.config, dtype: manifest.dtype, bytes: manifest.total_bytes, warmed: standIn.run ? await standIn.run : false };
  }
  const config = m.config || 'sd15';
  const [ckpt, tok] = await Promise.all([bytes(m.checkpoint, id, 'model', { sha256: m.sha256, retries, onData: starter(config) }), tokP]);
  await serial(() => { gen.loadModel(ckpt, tok, config, m.sha256 || null); loaded = true; });
  return { config, warmed: standIn.run ? await standIn.run : false };
}

async function addLora(id, m) {
  const key = m.url ? `${new URL(m.url, self.location.href).href}|${String(m.sha256 || '').toLowerCase()}` : null;
  if (key && loras.has(key)) return loras.get(key);
  const b = await bytes(m.url || m.bytes, id, m.name ? `lora ${m.name}` : 'lora', { sha256: m.sha256, size: m.size });
  const index = await serial(() => gen.addLora(b, m.sha256 || null));
  if (key) loras.set(key, index);
  return index;
}

self.onmessage = async (ev) => {
  const { id, type } = ev.data;
  const reply = (msg, transfer) => self.postMessage({ id, ...msg }, transfer || []);
  try {
    if (type !== 'init' && type !== 'cancel' && type !== 'stats' && !gen) throw new Error('not_ready: send init first');
    switch (type) {
      case 'init':
        return reply({ ok: true, result: await init(id, ev.data) });
      case 'loadModel': {
        const result = await loadModel(id, ev.data);
        loras = new Map();
        return reply({ ok: true, result });
      }
      case 'addLora':
        return reply({ ok: true, result: await addLora(id, ev.data) });
      case 'setAdapters':
        await serial(() => gen.setAdapters(JSON.stringify(ev.data.weights || [])));
        return reply({ ok: true });
      case 'warmUp':
        await serial(() => gen.warmUp(JSON.stringify(ev.data.request), (p) => reply({ progress: p })));
        return reply({ ok: true });
      case 'generate': {
        const images = await serial(() => gen.generate(JSON.stringify(ev.data.request), (p) => reply({ progress: p })));
        return reply({ ok: true, result: images }, images.map((i) => i.rgb.buffer));
      }
      case 'cancel':
        gen?.cancel();
        return reply({ ok: true });
      case 'stats':
        return reply({ ok: true, result: { wasmMemoryBytes: wasm?.memory?.buffer?.byteLength ?? 0, loras: loras.size } });
      default:
        throw new Error(`bad_message: unknown type ${type}`);
    }
  } catch (e) {
    reply({ ok: false, error: String((e && e.message) || e) });
  }
};
