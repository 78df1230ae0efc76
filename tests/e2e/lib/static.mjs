// A static file server on 127.0.0.1 (an ephemeral port) for browser tests: URL prefixes mapped to
// folders, with the MIME types browsers insist on (application/wasm for streaming compilation),
// single-range requests (206), ETag revalidation (304), optional CORS, a request log (method, path,
// range, status, bytes sent) and a hook that may answer a request itself (to cut a connection mid-body, fake an API).
import http from 'node:http';
import fs from 'node:fs';
import path from 'node:path';

const TYPES = {
  '.html': 'text/html; charset=utf-8', '.js': 'text/javascript', '.mjs': 'text/javascript',
  '.wasm': 'application/wasm', '.json': 'application/json', '.css': 'text/css',
  '.webmanifest': 'application/manifest+json', '.png': 'image/png', '.svg': 'image/svg+xml',
};

const CORS = {
  'access-control-allow-origin': '*',
  'access-control-allow-headers': 'content-type, range',
  'access-control-allow-methods': 'GET, HEAD, POST, OPTIONS',
  'access-control-expose-headers': 'content-length, content-range, accept-ranges, etag',
};

// Resolves a URL path to a file under routes, or null.
function resolveFile(routes, pathname) {
  for (const [prefix, dir] of Object.entries(routes)) {
    if (!pathname.startsWith(prefix)) continue;
    const file = path.resolve(dir, decodeURIComponent(pathname.slice(prefix.length)) || 'index.html');
    if (file.startsWith(path.resolve(dir) + path.sep) && fs.existsSync(file) && fs.statSync(file).isFile()) return file;
  }
  return null;
}

// routes: { '/pkg/': '/abs/dir', ... }; pages: { '/': '<html>…' } served from memory; cors: add
// CORS headers; hook(req, res, ctx) → true when it answered (ctx: {url, file, log}).
// The returned server has .log: [{method, path, range, status, bytes}] (bytes of the body sent).
export function serveStatic({ routes = {}, pages = {}, cors = false, hook = null, headers = {} }) {
  const log = [];
  const server = http.createServer(async (req, res) => {
    const url = new URL(req.url, 'http://127.0.0.1');
    const entry = { method: req.method, path: url.pathname, range: req.headers.range || null, status: 0, bytes: 0, origin: req.headers.origin || null };
    log.push(entry);
    const extra = { ...(cors ? CORS : {}), ...headers };
    const head = (status, h) => { entry.status = status; res.writeHead(status, { ...extra, ...h }); };
    const origWrite = res.write.bind(res);
    const origEnd = res.end.bind(res);
    res.write = (chunk, ...a) => { if (chunk) entry.bytes += chunk.length; return origWrite(chunk, ...a); };
    res.end = (chunk, ...a) => { if (chunk && typeof chunk !== 'function') entry.bytes += chunk.length; return origEnd(chunk, ...a); };
    const file = resolveFile(routes, url.pathname);
    if (hook && (await hook(req, res, { url, file, entry, head }))) return;
    if (req.method === 'OPTIONS') { head(204, {}); return res.end(); }
    if (pages[url.pathname] !== undefined) {
      head(200, { 'content-type': TYPES['.html'] });
      return res.end(pages[url.pathname]);
    }
    if (!file) {
      head(404, { 'content-type': 'text/plain' });
      return res.end('not found');
    }
    const st = fs.statSync(file);
    const size = st.size;
    const type = TYPES[path.extname(file)] || 'application/octet-stream';
    // Revalidated on every use, like Cloudflare's static assets (ETag + must-revalidate).
    const etag = `"${size.toString(16)}-${Math.round(st.mtimeMs).toString(16)}"`;
    Object.assign(extra, { etag, 'cache-control': 'no-cache' });
    if (!req.headers.range && req.headers['if-none-match'] === etag) { head(304, {}); return res.end(); }
    const m = /^bytes=(\d+)-(\d*)$/.exec(req.headers.range || '');
    if (m) {
      const start = Number(m[1]);
      const end = m[2] ? Math.min(Number(m[2]), size - 1) : size - 1;
      if (start >= size) { head(416, { 'content-range': `bytes */${size}` }); return res.end(); }
      head(206, { 'content-type': type, 'content-length': end - start + 1, 'content-range': `bytes ${start}-${end}/${size}`, 'accept-ranges': 'bytes' });
      return fs.createReadStream(file, { start, end }).pipe(res);
    }
    head(200, { 'content-type': type, 'content-length': size, 'accept-ranges': 'bytes' });
    if (req.method === 'HEAD') return res.end();
    return fs.createReadStream(file).pipe(res);
  });
  const sockets = new Set();
  server.on('connection', (s) => { sockets.add(s); s.on('close', () => sockets.delete(s)); });
  return new Promise((resolve) => {
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      resolve({
        url: `http://127.0.0.1:${port}`, port, log,
        close: () => new Promise((r) => { for (const s of sockets) s.destroy(); server.close(r); }),
      });
    });
  });
}

// Sends the first `bytes` bytes of a file as a 200 response claiming the full length, then destroys
// the connection: an interrupted download.
export function cutAfter(res, file, bytes, entry, head) {
  const size = fs.statSync(file).size;
  head(200, { 'content-type': 'application/octet-stream', 'content-length': size, 'accept-ranges': 'bytes' });
  const buf = fs.readFileSync(file).subarray(0, bytes);
  res.write(buf, () => setTimeout(() => res.socket?.destroy(), 50));
  entry.cut = true;
}
