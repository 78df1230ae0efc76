// Stylus engine client (page and widget): starts engine-worker.js (a Web Worker; through a blob
// module when the page is on another origin), speaks its message protocol (stylus.d.ts), turns a
// compose result + the visitor's adapter choices into per-image LoRA weights, and generates one
// image per mask, streaming download and step progress.

/** Whether this browser can run the engine: {ok, reason}. */
export async function checkWebGPU() {
  if (!globalThis.navigator?.gpu) {
    return { ok: false, reason: 'This browser has no WebGPU (navigator.gpu is missing), so images cannot be generated here. Composing still works. Use a recent Chrome or Edge (113+), or enable WebGPU in your browser\'s settings.' };
  }
  try {
    const a = await navigator.gpu.requestAdapter();
    if (!a) return { ok: false, reason: 'WebGPU is present but found no GPU adapter (blocklisted driver or disabled hardware acceleration), so images cannot be generated here. Composing still works.' };
  } catch (e) {
    return { ok: false, reason: `WebGPU failed to start (${e?.message || e}). Composing still works.` };
  }
  return { ok: true, reason: '' };
}

function spawnWorker(url) {
  if (new URL(url).origin === globalThis.location?.origin) return new Worker(url, { type: 'module' });
  // A worker script must be same-origin: a blob module that imports the engine (served with CORS).
  const src = `import ${JSON.stringify(url)};`;
  return new Worker(URL.createObjectURL(new Blob([src], { type: 'text/javascript' })), { type: 'module' });
}

export class Engine {
  /** base: URL of the folder holding engine-worker.js and engine/ (the site, or the widget's origin). */
  constructor(base) {
    this.base = new URL('./', base).href;
    this.worker = spawnWorker(new URL('engine-worker.js', this.base).href);
    this.next = 0;
    this.pending = new Map();
    this.model = null;
    this.loras = 0; // adapters added to the Generator since its model was loaded
    this.worker.onmessage = (ev) => {
      const m = ev.data;
      const p = this.pending.get(m.id);
      if (!p) return;
      if (m.progress) p.onProgress?.(m.progress);
      else if (m.download) p.onDownload?.(m.download);
      else {
        this.pending.delete(m.id);
        if (m.ok) p.resolve(m.result);
        else {
          const [code, ...rest] = String(m.error).split(': ');
          p.reject(Object.assign(new Error(rest.join(': ') || code), { code }));
        }
      }
    };
    this.worker.onerror = (e) => {
      for (const p of this.pending.values()) p.reject(Object.assign(new Error(`the engine worker failed: ${e.message || 'script error'}`), { code: 'worker_failed' }));
      this.pending.clear();
    };
  }

  call(msg, { onProgress, onDownload } = {}) {
    return new Promise((resolve, reject) => {
      const id = this.next++;
      this.pending.set(id, { resolve, reject, onProgress, onDownload });
      this.worker.postMessage({ id, ...msg });
    });
  }

  /**
   * Loads the engine wasm (parts, verified) once, in `precision` ('f32', 'f16' or 'auto': f16 where
   * the GPU has shader-f16); the first call's precision holds until the page reloads.
   */
  init(onDownload, precision = 'f32') {
    this.ready ??= this.call({
      type: 'init',
      pkg: new URL('engine/stylus_web.js', this.base).href,
      wasmParts: new URL('engine/stylus_web_bg.wasm.parts.json', this.base).href,
      precision,
    }, { onDownload }).catch((e) => { this.ready = null; throw e; });
    return this.ready;
  }

  /**
   * modelUrl: a converted model's manifest.json, or a single .safetensors (then `config`). With
   * warm = {request, onProgress}, the worker compiles that request's kernels on a zero-weight
   * stand-in while the model downloads (only when it comes from the network).
   */
  async loadModel({ modelUrl, tokenizerUrl = '', config = 'sd15' }, onDownload, warm = null) {
    const model = new URL(modelUrl, globalThis.location?.href).href;
    const tokenizer = new URL(tokenizerUrl || 'tokenizer.json', tokenizerUrl ? globalThis.location?.href : model).href;
    const key = `${model}|${tokenizer}|${config}`;
    if (this.model === key) return null;
    const msg = /\.json($|\?)/.test(model) ? { manifest: model, tokenizer } : { checkpoint: model, tokenizer, config };
    const r = await this.call({ type: 'loadModel', ...msg, warmUp: warm?.request }, { onDownload, onProgress: warm?.onProgress });
    this.model = key;
    this.loras = 0;
    this.warmed = r?.warmed ? this.warmKey(warm.request) : null;
    return r;
  }

  /** Requests with the same key launch the same kernels (for the loaded model). */
  warmKey(request) {
    return `${this.model}|${request.width}x${request.height}|${request.batch ?? 1}|${(request.cfg ?? 5) > 1}`;
  }

  /**
   * Compiles the GPU kernels a generation of this request launches (once per model and request
   * shape: compiled kernels live as long as the worker). The worker runs it while the next
   * messages download. Its errors resolve to null (the generation reports its own), except a
   * cancel, which rejects with code `cancelled`.
   */
  warmUp(request, onProgress) {
    const key = this.warmKey(request);
    if (this.warmed === key) return Promise.resolve(null);
    this.warmed = key;
    return this.call({ type: 'warmUp', request }, { onProgress }).then(() => key, (e) => {
      this.warmed = null;
      if (e.code === 'cancelled') throw e;
      return null;
    });
  }

  /** Stops the running generation or warm-up; `generateAll` stops at its next stage too. */
  cancel() {
    this.cancelRequested = true;
    return this.call({ type: 'cancel' });
  }
  stats() { return this.call({ type: 'stats' }); }
  terminate() { this.worker.terminate(); for (const p of this.pending.values()) p.reject(new Error('terminated')); }
}

/**
 * The adapters of a compose result with the visitor's choices (overrides: id → {enabled, weight})
 * and, per image, the weight of each adapter: the composer's per-image weight scaled by the
 * visitor's weight / the recommended one (0 when switched off).
 */
export function plan(result, overrides = new Map()) {
  const adapters = [];
  const seen = new Set();
  for (const t of result.topics) {
    for (const a of t.adapters) {
      if (seen.has(a.id)) continue;
      seen.add(a.id);
      const o = overrides.get(a.id) || {};
      adapters.push({ ...a, enabled: o.enabled ?? true, userWeight: o.weight ?? a.weight });
    }
  }
  const byId = new Map(adapters.map((a) => [a.id, a]));
  const images = result.images.map((img) => {
    const active = img.active.map((x) => {
      const a = byId.get(x.id);
      const w = !a || !a.enabled ? 0 : (a.weight ? x.weight * (a.userWeight / a.weight) : a.userWeight);
      return { id: x.id, name: x.name ?? a?.name ?? String(x.id), weight: Math.round(w * 1000) / 1000 };
    }).filter((x) => x.weight !== 0);
    return { prompt: img.prompt, negative: img.negative_prompt || '', active };
  });
  const used = adapters.filter((a) => images.some((i) => i.active.some((x) => x.id === a.id)));
  return { adapters, used, images };
}

/** Steps between two live previews unless `settings.previewEvery` says otherwise (0: none). */
export const PREVIEW_EVERY = 5;

/**
 * One image per mask: downloads the engine, the model and the adapters the images use, then
 * generates image i with its adapters (seed + i). The GPU kernels compile while the model downloads
 * (on a stand-in) or else while the adapters do (`Engine.warmUp`). cb: onDownload(d), onWarmUp(p),
 * onStep(p, i, n), onImage(img, i, planned), onStatus(text).
 */
export async function generateAll(engine, result, settings, overrides, cb = {}) {
  engine.cancelRequested = false;
  // A cancel between the worker's calls (downloads, the warm-up) stops here rather than being lost.
  const check = () => {
    if (engine.cancelRequested) throw Object.assign(new Error('the generation was cancelled'), { code: 'cancelled' });
  };
  const p = plan(result, overrides);
  const request = (img, seed, batch) => ({
    prompt: img.prompt, negative: [settings.negative, img.negative].filter(Boolean).join(', '),
    steps: settings.steps, cfg: settings.cfg, seed, width: settings.width, height: settings.height,
    scheduler: settings.scheduler, batch, previewEvery: settings.previewEvery ?? PREVIEW_EVERY,
  });
  const n = p.images.length;
  // One batch (one mask per image, as Stylus does) when every image has the same prompt.
  const oneBatch = p.images.every((i) => i.prompt === p.images[0].prompt && i.negative === p.images[0].negative);
  const first = request(p.images[0], settings.seed, oneBatch ? n : 1);
  cb.onStatus?.('Loading the engine…');
  await engine.init(cb.onDownload, settings.precision);
  cb.onStatus?.('Loading the model…');
  await engine.loadModel(settings, cb.onDownload, { request: first, onProgress: cb.onWarmUp });
  check();
  // Otherwise shader compilation overlaps the adapter downloads (the worker warms up meanwhile). With
  // nothing to download there is nothing to overlap: the first step compiles, as the warm-up would.
  const warm = p.used.length ? engine.warmUp(first, cb.onWarmUp) : null;
  warm?.catch(() => {}); // awaited below, unless a failed download or a cancel ends this first
  const index = new Map();
  for (const a of p.used) {
    cb.onStatus?.(`Downloading adapter ${a.name}…`);
    const url = new URL(a.download_url, settings.loraBase || globalThis.location?.href).href;
    const i = await engine.call({ type: 'addLora', url, sha256: a.sha256, size: a.size_bytes, name: a.name }, { onDownload: cb.onDownload });
    index.set(a.id, i);
    engine.loras = Math.max(engine.loras, i + 1);
    check();
  }
  const rows = p.images.map((img) => {
    const w = new Array(engine.loras).fill(0);
    for (const x of img.active) w[index.get(x.id)] = x.weight;
    return w;
  });
  if (warm) {
    cb.onStatus?.('Preparing the GPU (compiling kernels)…');
    await warm;
  }
  check();
  // Step events go to onStep; latent previews ({stage: 'preview', images}) to onPreview per image.
  const steps = (first, n) => (s) => {
    if (s.stage === 'preview') s.images.forEach((image, k) => cb.onPreview?.(image, first + k, s));
    else cb.onStep?.(s, first, n);
  };
  const out = [];
  if (oneBatch) {
    await engine.call({ type: 'setAdapters', weights: rows.some((r) => r.some((v) => v !== 0)) ? rows : [] });
    cb.onStatus?.(`Generating ${n} image${n > 1 ? 's' : ''}…`);
    const images = await engine.call({ type: 'generate', request: request(p.images[0], settings.seed, n) }, { onProgress: steps(0, 1) });
    images.forEach((image, i) => { out.push(image); cb.onImage?.(image, i, p.images[i]); });
  } else {
    for (const [i, img] of p.images.entries()) {
      check();
      await engine.call({ type: 'setAdapters', weights: img.active.length ? [rows[i]] : [] });
      cb.onStatus?.(`Generating image ${i + 1} of ${n}…`);
      const [image] = await engine.call({ type: 'generate', request: request(img, settings.seed + i, 1) }, { onProgress: steps(i, n) });
      out.push(image);
      cb.onImage?.(image, i, img);
    }
  }
  return { images: out, plan: p };
}

/** A canvas showing an engine image ({width, height, rgb}). */
export function toCanvas(img, doc = document) {
  const c = doc.createElement('canvas');
  c.width = img.width;
  c.height = img.height;
  const data = new ImageData(img.width, img.height);
  for (let i = 0, j = 0; i < img.rgb.length; i += 3, j += 4) {
    data.data[j] = img.rgb[i]; data.data[j + 1] = img.rgb[i + 1]; data.data[j + 2] = img.rgb[i + 2]; data.data[j + 3] = 255;
  }
  c.getContext('2d').putImageData(data, 0, 0);
  return c;
}

/** Human-readable download progress: "1.2 / 35.0 MB · 4.1 MB/s · 8 s left" or "cached". */
export function describeDownload(d) {
  const mb = (n) => (n / 1e6).toFixed(1);
  if (d.cached) return `${mb(d.total)} MB · cached`;
  const parts = [d.total ? `${mb(d.loaded)} / ${mb(d.total)} MB` : `${mb(d.loaded)} MB`];
  if (d.rate) parts.push(`${mb(d.rate)} MB/s`);
  if (d.eta != null && d.loaded < d.total) parts.push(`${Math.ceil(d.eta)} s left`);
  if (d.resumedFrom) parts.push(`resumed at ${mb(d.resumedFrom)} MB`);
  return parts.join(' · ');
}
