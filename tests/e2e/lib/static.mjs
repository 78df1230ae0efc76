// A static file server on 127.0.0.1 (an ephemeral port) for browser tests: URL prefixes mapped to
// folders, with the MIME types browsers insist on (application/wasm for streaming compilation).
import http from 'node:http';
import fs from 'node:fs';
import path from 'node:path';

const TYPES = {
  '.html': 'text/html; charset=utf-8', '.js': 'text/javascript', '.mjs': 'text/javascript',
  '.wasm': 'application/wasm', '.json': 'application/json', '.css': 'text/css',
};

// routes: { '/pkg/': '/abs/dir', ... }; pages: { '/': '<html>…' } served from memory.
export function serveStatic({ routes = {}, pages = {} }) {
  const server = http.createServer((req, res) => {
    const url = new URL(req.url, 'http://127.0.0.1');
    if (pages[url.pathname] !== undefined) {
      res.writeHead(200, { 'content-type': TYPES['.html'] });
      return res.end(pages[url.pathname]);
    }
    for (const [prefix, dir] of Object.entries(routes)) {
      if (!url.pathname.startsWith(prefix)) continue;
      const file = path.resolve(dir, decodeURIComponent(url.pathname.slice(prefix.length)));
      if (!file.startsWith(path.resolve(dir) + path.sep) || !fs.existsSync(file) || !fs.statSync(file).isFile()) break;
      res.writeHead(200, { 'content-type': TYPES[path.extname(file)] || 'application/octet-stream' });
      return fs.createReadStream(file).pipe(res);
    }
    res.writeHead(404, { 'content-type': 'text/plain' });
    res.end('not found');
  });
  return new Promise((resolve) => {
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      resolve({ url: `http://127.0.0.1:${port}`, close: () => new Promise((r) => server.close(r)) });
    });
  });
}
