#!/usr/bin/env python3
"""The project's wasm build step: reads wasm-pack.toml and builds each [[build]] entry.

    python3 scripts/build_wasm.py            # every entry
    python3 scripts/build_wasm.py web worker # some entries

Needs the tools scripts/setup.sh installs; the environment (target dir, tool paths) comes from
scripts/env.sh, which this script sources itself."""
import shutil
import subprocess
import sys
import time
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TRIPLE = "wasm32-unknown-unknown"


def env():
    """The environment of scripts/env.sh (the one place tool paths are defined), over ours."""
    out = subprocess.run(["bash", "-c", 'source "$1" && env -0', "env", str(ROOT / "scripts/env.sh")],
                         check=True, capture_output=True).stdout
    return dict(kv.split("=", 1) for kv in out.decode().split("\0") if "=" in kv)


def cargo_bin_of(e):
    return Path(e["CARGO_BIN"])


def run(cmd, cwd, e):
    print("+", " ".join(map(str, cmd)), flush=True)
    subprocess.run(list(map(str, cmd)), cwd=cwd, env=e, check=True)


def build(b, e):
    out = ROOT / b["out_dir"]
    feats = ["--features", ",".join(b["features"])] if b.get("features") else []
    for i, st in enumerate(b.get("stage", [])):
        src, dst = ROOT / st["from"], ROOT / st["to"]
        if src == ROOT / "www" and not (src / "pkg" / "stylus_web.js").exists():
            sys.exit("build_wasm: www/pkg is missing; build the `web` entry first (build_wasm.py web worker)")
        if i == 0:
            shutil.rmtree(dst, ignore_errors=True)
        shutil.copytree(src, dst, dirs_exist_ok=True)
    if b["target"] == "worker":
        args = ["--release"] if b["profile"] == "release" else []
        # worker-build runs cargo itself and writes ./build in the crate directory.
        if not b.get("wasm_opt", True):
            args.append("--no-opt")
        run([str(cargo_bin_of(e) / "worker-build"), *args, *feats], ROOT / b["crate"], e)
        if (ROOT / b["crate"] / "build").resolve() != out.resolve():
            shutil.copytree(ROOT / b["crate"] / "build", out, dirs_exist_ok=True)
        return out
    run(["cargo", "build", "--lib", "--target", TRIPLE, "--profile", b["profile"], "-p", b["package"], *feats], ROOT, e)
    prof_dir = "release" if b["profile"] == "release" else ("debug" if b["profile"] == "dev" else b["profile"])
    wasm = Path(e["CARGO_TARGET_DIR"]) / TRIPLE / prof_dir / (b["package"].replace("-", "_") + ".wasm")
    out.mkdir(parents=True, exist_ok=True)
    run([e["WASM_BINDGEN_BIN"], wasm, "--target", b["target"], "--out-dir", out], ROOT, e)
    if b.get("wasm_opt"):
        for f in out.glob("*_bg.wasm"):
            run([e["WASM_OPT_BIN"], "-Oz", "--enable-bulk-memory", "--enable-reference-types",
                 "--enable-nontrapping-float-to-int", "--enable-sign-ext", "--enable-mutable-globals",
                 f, "-o", f], ROOT, e)
    return out


def main():
    cfg = tomllib.loads((ROOT / "wasm-pack.toml").read_text())
    builds = cfg["build"]
    want = sys.argv[1:]
    unknown = set(want) - {b["name"] for b in builds}
    if unknown:
        sys.exit(f"build_wasm: unknown entries {sorted(unknown)}; wasm-pack.toml has {[b['name'] for b in builds]}")
    e = env()
    for b in builds:
        if want and b["name"] not in want:
            continue
        t = time.time()
        out = build(b, e)
        if b["name"] == "web-engine":  # served as parts of at most 25 MiB (Workers' per-asset limit)
            run([sys.executable, ROOT / "scripts/split_wasm.py"], ROOT, e)
        sizes = ", ".join(f"{p.name} {p.stat().st_size:,} B" for p in sorted(out.rglob("*.wasm")))
        print(f"build_wasm: {b['name']} -> {out.relative_to(ROOT)} ({sizes}) in {time.time() - t:.0f} s", flush=True)


if __name__ == "__main__":
    main()
