#!/usr/bin/env python3
"""Retrieval quality benchmark (issue #3): our index (static embedder over `Title; Tags` + BM25 fields + BM25
example prompts, fused; also with the reference's dense text, `--dense-text reference`) against two baselines computed in the same run — brute-force all-MiniLM-L6-v2 (sentence-transformers,
the reference's embedding text `Title; Description; Tags`) and our BM25 over name/tags/trigger words/description
— on the shared catalog's SD 1.x non-NSFW cards. Writes the `retrieval_quality` section of BENCHMARKS.md.

Sets (queries built here, deterministic):
  known-item  a card's first example prompt, <lora:…>/<lyco:…>/<hypernet:…> tags removed -> that card;
  hard        the same with the card's trigger words removed too;
  COCO silver the reference composer's chosen ids (shared/data/stylus/coco_rank.csv) that are in the set,
              for each caption with at least one; recall pooled over (caption, chosen id) pairs.
Our index and both baselines never see the query prompt: every index is built with each card's first example
prompt held out (`--example-prompts holdout-first`; the baselines index no example prompts at all).

Needs: the built CLI (cargo build --workspace), the MiniLM model folder (scripts/setup.sh), and a Python with
sentence-transformers for the MiniLM baseline (STYLUS_REF_PYTHON, default ~/.venvs/ref/bin/python; see
tests/reference/requirements.txt). Usage: python3 benches/retrieval_quality.py [--dim 256] [--fusion 0.4,0.3,0.3]
"""
import argparse, ast, csv, hashlib, json, os, re, subprocess, sys, time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benches"))
from benchlib import write_section  # noqa: E402

SHARED = Path(os.environ.get("STYLUS_SHARED", ROOT.parent / "shared"))
CATALOG = SHARED / "data/civitai/civitai_lora_top10k_2023-07.jsonl"
COCO = SHARED / "data/stylus/coco_rank.csv"
CACHE = Path(os.environ.get("STYLUS_BENCH_CACHE", Path.home() / ".cache/stylus/quality"))
TARGET = Path(os.environ.get("CARGO_TARGET_DIR", Path.home() / ".cache/stylus/target"))
MODEL = Path(os.environ.get("STYLUS_MINILM_DIR", Path.home() / ".cache/stylus/minilm"))
REF_PY = os.environ.get("STYLUS_REF_PYTHON", str(Path.home() / ".venvs/ref/bin/python"))
NET = re.compile(r"<(lora|lyco|lycoris|hypernet)[^>]*>", re.I)
# the evaluation set: SD 1.x, not flagged NSFW; no other filter
POLICY = {"base_model_prefixes": ["SD 1"], "allow_nsfw": False, "nsfw_tags": [], "nsfw_name_words": [], "blacklist": [],
          "character_tags": [], "exclude_sliders": False, "min_example_prompts": 0, "min_downloads": 0}


def run(cmd, **kw):
    t0 = time.time()
    r = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, **kw)
    if r.returncode != 0:
        sys.exit(f"failed ({r.returncode}): {' '.join(map(str, cmd))}\n{r.stderr[-3000:]}")
    return r, time.time() - t0


def load_cards():
    cards = []
    for line in CATALOG.open():
        d = json.loads(line)
        v = d.get("latest_version") or {}
        if not d.get("nsfw") and str(v.get("baseModel", "")).startswith("SD 1"):
            cards.append(d)
    return cards


def query_sets(cards):
    pos = {c["id"]: i for i, c in enumerate(cards)}
    ki, hard = [], []
    for c in cards:
        ex = c.get("example_prompts") or []
        q = re.sub(r"\s+", " ", NET.sub(" ", ex[0])).strip() if ex else ""
        if not q:
            continue
        ki.append((q, [c["id"]]))
        h = q
        for w in (c.get("latest_version") or {}).get("trainedWords") or []:
            for part in [w] + w.split(","):
                if part.strip():
                    h = re.sub(re.escape(part.strip()), " ", h, flags=re.I)
        h = re.sub(r"[\s,]+", " ", h).strip(" ,")
        if h:
            hard.append((h, [c["id"]]))
    coco = []
    for r in csv.DictReader(COCO.open()):
        try:
            d = ast.literal_eval(r["ranked_adapters"])
        except (ValueError, SyntaxError):
            continue
        gold = sorted({i for v in d.values() for i in v if i in pos})
        if gold:
            coco.append((r["caption"], gold))
    return {"known-item": ki, "hard known-item": hard, "COCO silver": coco}


def metrics(ranks, sets):
    out = {}
    for name, qs in sets.items():
        rk = ranks[name]
        if name == "COCO silver":
            pairs = [(set(r), g) for r, (_, gold) in zip(rk, qs) for g in gold]
            at = lambda k: sum(g in set(r[:k]) for r, (_, gold) in zip(rk, qs) for g in gold) / len(pairs)
            out[name] = {"R@10": at(10), "R@20": at(20), "R@150": at(150), "n": len(pairs)}
        else:
            rank = [r.index(g[0]) if g[0] in r else None for r, (_, g) in zip(rk, qs)]
            n = len(rank)
            out[name] = {"R@1": sum(x == 0 for x in rank) / n, "R@10": sum(x is not None and x < 10 for x in rank) / n,
                         "MRR": sum(1 / (x + 1) for x in rank if x is not None) / n, "n": n}
    return out


def ours(args, sets, tag, embedder, examples, dense_text="title-tags"):
    idx = CACHE / f"index-{tag}.bin"
    pol = CACHE / "policy.json"
    pol.write_text(json.dumps(POLICY))
    cmd = [TARGET / "debug/stylus", "index", "build", "--catalog", CATALOG, "--out", idx, "--policy", pol, "--with-descriptions",
           "--example-prompts", examples, "--shard-mib", "1000"]
    if embedder:
        cmd += ["--embedder", embedder, "--fusion", args.fusion, "--dense-text", dense_text]
    _, build_s = run(cmd)
    ranks, secs = {}, {}
    for name, qs in sets.items():
        qf = CACHE / "queries.jsonl"
        qf.write_text("".join(json.dumps(q) + "\n" for q, _ in qs))
        of = CACHE / f"ranks-{tag}.jsonl"
        _, secs[name] = run([TARGET / "debug/stylus", "index", "eval", "--index", idx, "--queries", qf, "-k", "150", "--out", of])
        ranks[name] = [json.loads(l) for l in of.read_text().splitlines()]
    return ranks, build_s


MINILM = r"""
import json, sys, numpy as np
from sentence_transformers import SentenceTransformer
m = SentenceTransformer(sys.argv[1], device="cpu", local_files_only=True)
job = json.load(open(sys.argv[2]))
docs = m.encode(job["docs"], batch_size=64, normalize_embeddings=True, convert_to_numpy=True)
out = {}
for name, qs in job["sets"].items():
    q = m.encode(qs, batch_size=64, normalize_embeddings=True, convert_to_numpy=True)
    s = q @ docs.T
    out[name] = [[job["ids"][j] for j in np.argsort(-row, kind="stable")[:150]] for row in s]
json.dump(out, open(sys.argv[3], "w"))
"""


def minilm(cards, sets):
    docs = [f"{c['name']}; {c.get('description') or ''}; {', '.join(c.get('tags') or [])}" for c in cards]
    job = {"docs": docs, "ids": [c["id"] for c in cards], "sets": {k: [q for q, _ in v] for k, v in sets.items()}}
    key = hashlib.sha256(json.dumps(job).encode()).hexdigest()[:16]
    out = CACHE / f"minilm-{key}.json"
    if not out.exists():
        jf = CACHE / "minilm-job.json"
        jf.write_text(json.dumps(job))
        print("MiniLM baseline: encoding with sentence-transformers (cached after the first run) …", flush=True)
        run([REF_PY, "-c", MINILM, MODEL, jf, out])
    return json.loads(out.read_text())


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dim", type=int, default=256)
    ap.add_argument("--fusion", default="0.4,0.3,0.3")
    args = ap.parse_args()
    CACHE.mkdir(parents=True, exist_ok=True)
    stylus = TARGET / "debug/stylus"
    if not stylus.exists():
        sys.exit(f"{stylus} missing: run cargo build --workspace first")
    cards = load_cards()
    sets = query_sets(cards)
    teacher = CACHE / "teacher.safetensors"
    if not teacher.exists():
        print("distilling the MiniLM token table (once) …", flush=True)
        run([stylus, "embedder", "distill", "--out", teacher, "--quiet"])
    emb = CACHE / f"static-d{args.dim}.bin"
    _, static_s = run([stylus, "embedder", "static", "--teacher", teacher, "--catalog", CATALOG, "--dim", args.dim, "--out", emb])
    res = {}
    res["BM25 (fields)"] = metrics(ours(args, sets, "bm25", None, "none")[0], sets)
    res["MiniLM brute force"] = metrics(minilm(cards, sets), sets)
    r, build_s = ours(args, sets, "ours", emb, "holdout-first")
    res[f"ours: static d{args.dim} of `Title; Tags` + BM25 fields + BM25 examples ({args.fusion})"] = metrics(r, sets)
    r2, _ = ours(args, sets, "ours-noex", emb, "none")
    res["ours without example prompts"] = metrics(r2, sets)
    r3, _ = ours(args, sets, "ours-reftext", emb, "holdout-first", "reference")
    res["ours embedding the reference's `Title; Description; Tags` (`--dense-text reference`)"] = metrics(r3, sets)
    lines = [f"Catalog: {len(cards)} SD 1.x non-NSFW cards of the shared 2023-07 dump; queries: "
             + ", ".join(f"{k} {len(v)}" for k, v in sets.items()) + " (COCO: captions with a chosen id in the set). "
             f"Static embedder build {static_s:.1f} s, index build {build_s:.1f} s (dev profile).", "",
             "| retriever | known-item R@1 | R@10 | MRR | hard R@1 | R@10 | MRR | COCO R@10 | R@20 | R@150 |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for name, m in res.items():
        k, h, c = m["known-item"], m["hard known-item"], m["COCO silver"]
        lines.append(f"| {name} | {k['R@1']:.3f} | {k['R@10']:.3f} | {k['MRR']:.3f} | {h['R@1']:.3f} | {h['R@10']:.3f} | {h['MRR']:.3f} "
                     f"| {c['R@10']:.3f} | {c['R@20']:.3f} | {c['R@150']:.3f} |")
    ours_m = res[list(res)[2]]
    goals = [("known-item R@10", ours_m["known-item"]["R@10"], 0.60), ("hard known-item R@10", ours_m["hard known-item"]["R@10"], 0.25),
             ("COCO R@10", ours_m["COCO silver"]["R@10"], 0.60), ("COCO R@150", ours_m["COCO silver"]["R@150"], 0.88)]
    lines += ["", "Goals (issue #3): " + "; ".join(f"{n} {v:.3f} vs ≥ {g:.2f} {'met' if v >= g else 'NOT met'}" for n, v, g in goals) + "."]
    base = [res["BM25 (fields)"], res["MiniLM brute force"]]
    ratio = lambda s, k: ours_m[s][k] / max(b[s][k] for b in base)
    lines += ["Ratio ours / best baseline: " + ", ".join(f"{s} {k} {ratio(s, k):.2f}" for s, k in
              [("known-item", "R@10"), ("hard known-item", "R@10"), ("COCO silver", "R@10"), ("COCO silver", "R@150")]) + "."]
    text = "\n".join(lines)
    print(text)
    write_section("retrieval_quality", text)


if __name__ == "__main__":
    main()
