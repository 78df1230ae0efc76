// Web Worker hosting the WebGPU `Generator` (stylus-web built with `engine`), so generation never
// blocks the page. Protocol: the page posts {id, type, ...}; the worker answers {id, ok, result} or
// {id, ok: false, error: "code: message"}, and streams {id, progress} / {id, download} on the way.
//   init        {pkg}                      URL of stylus_web.js (engine build)
//   loadModel   {checkpoint, tokenizer, config, sha256?}   URLs (or Uint8Arrays) of the files
//   addLora     {url | bytes, sha256?}     → result: adapter index
//   setAdapters {weights}                  [[w per adapter] per image], [] = none
//   generate    {request}                  {prompt, negative, steps, cfg, seed, width, height, scheduler, batch}
//   cancel      {}                         stops the running generation at its next step
let mod;
let gen;

async function bytes(src, id, what) {
  if (src instanceof Uint8Array) return src;
  const res = await fetch(src);
  if (!res.ok) throw new Error(`download_failed: ${what}: HTTP ${res.status} for ${src}`);
  const total = Number(res.headers.get('content-length')) || 0;
  const reader = res.body.getReader();
  const parts = [];
  let loaded = 0;
  const t0 = performance.now();
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    parts.push(value);
    loaded += value.length;
    const s = (performance.now() - t0) / 1000;
    self.postMessage({ id, download: { what, loaded, total, rate: s > 0 ? loaded / s : 0, eta: total && loaded ? ((total - loaded) * s) / loaded : null } });
  }
  const out = new Uint8Array(loaded);
  let o = 0;
  for (const p of parts) { out.set(p, o); o += p.length; }
  return out;
}

self.onmessage = async (ev) => {
  const { id, type } = ev.data;
  const reply = (msg, transfer) => self.postMessage({ id, ...msg }, transfer || []);
  try {
    switch (type) {
      case 'init':
        mod = await import(ev.data.pkg);
        await mod.default();
        gen = await mod.Generator.create();
        return reply({ ok: true });
      case 'loadModel': {
        const [ckpt, tok] = await Promise.all([bytes(ev.data.checkpoint, id, 'model'), bytes(ev.data.tokenizer, id, 'tokenizer')]);
        gen.loadModel(ckpt, tok, ev.data.config || 'sd15', ev.data.sha256 || null);
        return reply({ ok: true });
      }
      case 'addLora':
        return reply({ ok: true, result: gen.addLora(await bytes(ev.data.url || ev.data.bytes, id, 'lora'), ev.data.sha256 || null) });
      case 'setAdapters':
        gen.setAdapters(JSON.stringify(ev.data.weights || []));
        return reply({ ok: true });
      case 'generate': {
        const images = await gen.generate(JSON.stringify(ev.data.request), (p) => reply({ progress: p }));
        return reply({ ok: true, result: images }, images.map((i) => i.rgb.buffer));
      }
      case 'cancel':
        gen?.cancel();
        return reply({ ok: true });
      default:
        throw new Error(`bad_message: unknown type ${type}`);
    }
  } catch (e) {
    reply({ ok: false, error: String((e && e.message) || e) });
  }
};
