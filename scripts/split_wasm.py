#!/usr/bin/env python3
"""Compresses the WebGPU engine's wasm (gzip, about 1/6 of its size) and splits the compressed stream
into parts of at most 25 MiB (Cloudflare Workers' per-asset limit) with a JSON manifest of sizes and
sha256; the browser (www/store.js `fetchParts`) downloads, verifies, reassembles and decompresses
them (DecompressionStream) before `WebAssembly` instantiation.

    python3 scripts/split_wasm.py [--src dist/web-engine] [--out www/engine] [--part-mib 24]

Writes OUT/stylus_web.js (the engine's wasm-bindgen glue), OUT/stylus_web.d.ts,
OUT/stylus_web_bg.wasm.parts.json ({file, size, sha256, part_limit, encoding: "gzip", encoded_size,
encoded_sha256, parts: [{file, size, sha256}]}; size and sha256 of the wasm itself) and the parts,
named after the whole file's hash (stylus_web_bg.<sha12>.<i>.gz.part) so a changed engine
never meets a stale cached part. When worker/assets exists (staged by build_wasm.py's worker entry),
OUT is copied there as well. Called by build_wasm.py after the web-engine entry."""
import argparse
import gzip
import hashlib
import json
import shutil
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LIMIT = 25 * 1024 * 1024


def split(src: Path, out: Path, part_bytes: int) -> dict:
    if part_bytes > LIMIT:
        raise SystemExit(f"split_wasm: --part-mib must be at most 25 (asked {part_bytes / 2**20:.1f} MiB)")
    wasm = src / "stylus_web_bg.wasm"
    if not wasm.exists():
        raise SystemExit(f"split_wasm: {wasm} is missing; build it first: python3 scripts/build_wasm.py web-engine")
    data = wasm.read_bytes()
    whole = hashlib.sha256(data).hexdigest()
    z = gzip.compress(data, compresslevel=9, mtime=0)  # no time stamp: the same wasm, the same bytes
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    parts = []
    for i, off in enumerate(range(0, len(z), part_bytes)):
        chunk = z[off:off + part_bytes]
        name = f"stylus_web_bg.{whole[:12]}.{i}.gz.part"
        (out / name).write_bytes(chunk)
        parts.append({"file": name, "size": len(chunk), "sha256": hashlib.sha256(chunk).hexdigest()})
    manifest = {"file": wasm.name, "size": len(data), "sha256": whole, "part_limit": part_bytes, "encoding": "gzip",
                "encoded_size": len(z), "encoded_sha256": hashlib.sha256(z).hexdigest(), "parts": parts}
    (out / "stylus_web_bg.wasm.parts.json").write_text(json.dumps(manifest, indent=1) + "\n")
    for f in ("stylus_web.js", "stylus_web.d.ts"):
        shutil.copy2(src / f, out / f)
    return manifest


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--src", default="dist/web-engine")
    ap.add_argument("--out", default="www/engine")
    ap.add_argument("--part-mib", type=float, default=24)
    a = ap.parse_args()
    out = ROOT / a.out
    m = split(ROOT / a.src, out, int(a.part_mib * 1024 * 1024))
    assets = ROOT / "worker/assets"
    if assets.is_dir() and out.resolve() == (ROOT / "www/engine").resolve():
        shutil.rmtree(assets / "engine", ignore_errors=True)
        shutil.copytree(out, assets / "engine")
    sizes = ", ".join(f"{p['size']:,}" for p in m["parts"])
    print(f"split_wasm: {m['file']} ({m['size']:,} B, gzip {m['encoded_size']:,} B) -> {out.relative_to(ROOT)}: {len(m['parts'])} parts ({sizes} B)")


if __name__ == "__main__":
    main()
