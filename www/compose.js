// Stylus compose client (page and widget): POST {worker}/v1/compose, or offline in this browser with
// the stylus-web WebAssembly composer over the index bundle served at {base}index/ (the same compose
// code as the worker). Errors carry the worker's stable `code`; `http` marks an answer of the worker.

export function createComposer(base) {
  let offline = null; // Promise<Composer>, loaded on first use

  async function loadOffline() {
    const { default: init, Composer } = await import(new URL('pkg/stylus_web.js', base).href);
    await init();
    const r = await fetch(new URL('index/index.stylusix.json', base));
    if (!r.ok) throw Object.assign(new Error(`index manifest: HTTP ${r.status}`), { code: 'index_missing' });
    const manifest = await r.json();
    const parts = [];
    for (const name of manifest.shards) {
      const s = await fetch(new URL(`index/${name}`, base));
      if (!s.ok) throw Object.assign(new Error(`index shard ${name}: HTTP ${s.status}`), { code: 'index_missing' });
      parts.push(new Uint8Array(await s.arrayBuffer()));
    }
    return Composer.fromParts(parts); // the bundle itself, or its shards: assembled and checked
  }

  async function composeOffline(request) {
    offline ??= loadOffline().catch((e) => { offline = null; throw e; });
    const c = await offline;
    try {
      return JSON.parse(c.compose(JSON.stringify(request)));
    } catch (e) {
      const [code, ...rest] = String(e.message ?? e).split(': ');
      throw Object.assign(new Error(rest.join(': ') || code), { code });
    }
  }

  async function composeWorker(request, workerUrl) {
    const url = `${String(workerUrl || '').trim().replace(/\/$/, '')}/v1/compose`;
    const r = await fetch(new URL(url, base), {
      method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(request),
    });
    let j;
    try { j = await r.json(); } catch { throw new Error(`the worker answered HTTP ${r.status} without JSON`); }
    if (!r.ok) throw Object.assign(new Error(j.error?.message ?? `HTTP ${r.status}`), { code: j.error?.code, http: true });
    return j;
  }

  /** mode: 'auto' (worker, offline when it is unreachable), 'worker' or 'offline'. → {result, via} */
  async function compose(request, { workerUrl = '', mode = 'auto' } = {}) {
    if (mode === 'offline') return { result: await composeOffline(request), via: 'offline' };
    try {
      return { result: await composeWorker(request, workerUrl), via: 'worker' };
    } catch (e) {
      if (mode === 'worker' || e.http) throw e; // the worker answered: its error stands
      return { result: await composeOffline(request), via: 'offline-fallback' };
    }
  }

  return { compose };
}
