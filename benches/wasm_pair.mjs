// Paired timing of two wasm32 builds of the composer (issue #3): loads both `dist/web-node`-style modules
// into one Node process with the same index bundle, then times `search` for every query on both,
// alternating which goes first, so that this machine's speed drift (up to ~1.6× between minutes) hits
// both alike. Prints one JSON line: p50 / p99 / mean µs of each, their ratio B / A, and how many queries
// got byte-identical answers from both.
// Usage: node benches/wasm_pair.mjs A/stylus_web.js B/stylus_web.js BUNDLE QUERIES.jsonl [REPEATS]
// (e.g. A = a copy of dist/web-node built from the previous commit, B = dist/web-node).
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { resolve } from "node:path";
import { performance } from "node:perf_hooks";

const [a, b, bundlePath, queriesPath, repeats] = process.argv.slice(2);
if (!a || !b || !bundlePath || !queriesPath) {
  console.error("usage: node benches/wasm_pair.mjs A/stylus_web.js B/stylus_web.js BUNDLE QUERIES.jsonl [REPEATS]");
  process.exit(2);
}
const require = createRequire(import.meta.url);
const bytes = readFileSync(bundlePath);
const composers = [a, b].map((m) => new (require(resolve(m)).Composer)(bytes));
const queries = readFileSync(queriesPath, "utf8").split("\n").filter(Boolean).map((l) => JSON.parse(l));
for (const c of composers) for (const q of queries.slice(0, 50)) c.search(q, 150); // warm-up
const us = [[], []];
let identical = 0;
for (let r = 0; r < (Number(repeats) || 2); r++) {
  queries.forEach((q, i) => {
    const out = [];
    for (const j of (i + r) % 2 ? [0, 1] : [1, 0]) {
      const t = performance.now();
      out[j] = composers[j].search(q, 150);
      us[j].push((performance.now() - t) * 1000);
    }
    identical += out[0] === out[1];
  });
}
const pct = (v, p) => [...v].sort((x, y) => x - y)[Math.min(v.length - 1, Math.floor(v.length * p))];
const mean = (v) => v.reduce((x, y) => x + y, 0) / v.length;
const stats = us.map((v) => ({ p50_us: Math.round(pct(v, 0.5)), p99_us: Math.round(pct(v, 0.99)), mean_us: Math.round(mean(v)) }));
console.log(JSON.stringify({ a: stats[0], b: stats[1], ratio_p50: +(stats[1].p50_us / stats[0].p50_us).toFixed(3), ratio_mean: +(mean(us[1]) / mean(us[0])).toFixed(3), identical, searches: us[0].length }));
