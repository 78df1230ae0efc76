// Stylus service worker (PWA): precaches the app shell, the compose wasm, the engine's glue and parts
// manifest and the index shards; answers from the network first (so a deploy shows at once) and,
// when the network fails, from its caches — including the download store's (store.js
// CACHE_NAME: engine wasm parts, model shards, LoRAs, tokenizer), so the app reloads, composes and
// generates offline after one visit. Range requests (resumed downloads) always go to the network.
const SHELL = 'stylus-shell-v1';
const FILES = 'stylus-files-v1'; // = store.js CACHE_NAME
const ASSETS = [
  './', 'index.html', 'app.js', 'compose.js', 'engine.js', 'engine-worker.js', 'store.js', 'limits.js', 'widget.js',
  'style.css', 'manifest.webmanifest', 'icons/icon.svg', 'icons/icon-192.png', 'icons/icon-512.png',
  'pkg/stylus_web.js', 'pkg/stylus_web_bg.wasm', 'engine/stylus_web.js', 'engine/stylus_web_bg.wasm.parts.json',
  'index/index.stylusix.json',
];
// Responses larger than this are left to the download store (it verifies and keeps them itself).
const SHELL_MAX_BYTES = 8 << 20;

async function precache() {
  const cache = await caches.open(SHELL);
  // One missing file (e.g. no engine on this deploy) must not stop the rest.
  await Promise.allSettled(ASSETS.map((a) => cache.add(new Request(a, { cache: 'reload' }))));
  try {
    const m = await (await cache.match('index/index.stylusix.json'))?.json();
    await Promise.allSettled((m?.shards || []).map((s) => cache.add(`index/${s}`)));
  } catch { /* no index on this deploy */ }
}

self.addEventListener('install', (ev) => {
  ev.waitUntil(precache().then(() => self.skipWaiting()));
});

self.addEventListener('activate', (ev) => {
  ev.waitUntil((async () => {
    for (const k of await caches.keys()) if (k !== SHELL && k !== FILES) await caches.delete(k);
    await self.clients.claim();
  })());
});

async function fromCache(req) {
  const hit = await caches.match(req, { ignoreSearch: req.mode === 'navigate' });
  if (hit) return hit;
  if (req.mode === 'navigate') return (await caches.match('index.html')) || caches.match('./');
  return null;
}

self.addEventListener('fetch', (ev) => {
  const req = ev.request;
  if (req.method !== 'GET' || req.headers.has('range')) return;
  ev.respondWith((async () => {
    try {
      const res = await fetch(req);
      const small = Number(res.headers.get('content-length') || 0) <= SHELL_MAX_BYTES;
      if (res.status === 200 && new URL(req.url).origin === self.location.origin && small) {
        const copy = res.clone();
        ev.waitUntil(caches.open(SHELL).then((c) => c.put(req, copy)).catch(() => {}));
      }
      return res;
    } catch (e) {
      const hit = await fromCache(req);
      if (hit) return hit;
      throw e;
    }
  })());
});
