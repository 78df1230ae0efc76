// Scale benchmark, wasm half (issue #3): loads an index bundle into the wasm32 composer (dist/web-node,
// the same stylus-core code the worker and the browser run) under Node, then times `search` (embed + ANN +
// exact re-score + BM25 fusion) for each query. Usage: node benches/index_scale_wasm.mjs BUNDLE QUERIES.jsonl
// Prints one JSON line: load ms, p50/p99 µs, process RSS.
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { performance } from "node:perf_hooks";

const [bundlePath, queriesPath] = process.argv.slice(2);
if (!bundlePath || !queriesPath) {
  console.error("usage: node benches/index_scale_wasm.mjs BUNDLE QUERIES.jsonl");
  process.exit(2);
}
const require = createRequire(import.meta.url);
const web = require("../dist/web-node/stylus_web.js");
const bytes = readFileSync(bundlePath);
const t0 = performance.now();
const composer = new web.Composer(bytes);
const loadMs = performance.now() - t0;
const queries = readFileSync(queriesPath, "utf8").split("\n").filter(Boolean).map((l) => JSON.parse(l));
for (const q of queries.slice(0, 20)) composer.search(q, 150); // warm-up
const us = [];
for (const q of queries) {
  const a = performance.now();
  const hits = JSON.parse(composer.search(q, 150));
  us.push((performance.now() - a) * 1000);
  if (!Array.isArray(hits)) throw new Error("search returned no list");
}
us.sort((a, b) => a - b);
const pct = (p) => us[Math.min(us.length - 1, Math.floor(us.length * p))];
// wasm linear memory is not exported by the nodejs glue; rss minus the bundle bytes bounds it from above
const m = process.memoryUsage();
console.log(JSON.stringify({ adapters: composer.adapters, queries: us.length, load_ms: loadMs, p50_us: pct(0.5), p99_us: pct(0.99), rss_bytes: m.rss, bundle_bytes: bytes.length }));
