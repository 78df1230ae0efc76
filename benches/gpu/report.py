#!/usr/bin/env python3
"""Writes the lent-GPU results (benches/gpu/run.sh's $OUT: results.jsonl, torch.json, gpu.txt, log.txt)
into BENCHMARKS.md between <!-- gpu:begin --> and <!-- gpu:end -->, as ratios against PyTorch measured in
the same device call. Usage: python3 benches/gpu/report.py OUT_DIR [OUT_DIR ...] [--skip=CALL:RUN ...] (several calls' folders,
numbered 1, 2, … in the order given; each row's ratios use its own call's PyTorch; --skip leaves a run
out, e.g. one measured on code that was not kept)."""
import datetime
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BUILDS = {
    "wgsl": "wgsl (the browser's build: WGSL, no autotune, no fusion)",
    "fast": "fast (`gpu-bench`: SPIR-V on Vulkan, where cooperative matrices (tensor cores) exist; autotune in runs before 2026-11-28 only)",
}


def load(dirs):
    """Rows of every call, each tagged with its call number and that call's PyTorch figures."""
    rows, torch, gpu, logs = [], None, "", []
    for n, d in enumerate(map(Path, dirs), 1):
        t = d / "torch.json"
        ref = json.loads(t.read_text().strip().splitlines()[-1]) if t.exists() and t.read_text().strip() else None
        torch = torch or ref
        f = d / "results.jsonl"
        if f.exists():
            for line in f.read_text().splitlines():
                if not line.strip():
                    continue
                r = dict(json.loads(line), call=n, ref=ref or {})
                # a step's `--check` comes as its own line after the step's: attach it
                if "check_rel_err" in r and "step_ms_median" not in r:
                    step = next((p for p in reversed(rows) if p["call"] == n and p.get("run") == r.get("run") and "step_ms_median" in p), None)
                    if step is not None:
                        step["check_rel_err"] = r["check_rel_err"]
                    continue
                rows.append(r)
        if not gpu and (d / "gpu.txt").exists():
            gpu = (d / "gpu.txt").read_text().strip().splitlines()[-1]
        if (d / "log.txt").exists():
            logs += [f"call {n} {line}" for line in (d / "log.txt").read_text().splitlines() if line.startswith("== ")]
    return rows, torch, gpu, logs


def fmt(v, nd=1):
    return "–" if v is None else f"{v:,.{nd}f}"


def err(v):
    """A relative error (max |diff| / max |reference|) as a short number, '–' where not measured."""
    return "–" if v is None else v if isinstance(v, str) else f"{v:.1e}"


def section(rows, torch, gpu, logs):
    day = datetime.date.today().isoformat()
    out = ["## On a lent GPU: burn on Vulkan vs PyTorch (issues #5, #6)", "",
           f"`benches/gpu/run.sh` through the device tool ({day}; {gpu or 'GPU unknown'}; PyTorch {(torch or {}).get('torch', '?')}, "
           "diffusers 0.42.1, eager). Full-size SD1.5 UNet with random weights (speed does not depend on them), 512² (64² latents), "
           "batch 2 (CFG), t = 500; each burn step is timed to the read-back of ε; the first step (shader compilation, autotune) is "
           "reported apart. Builds:", ""]
    out += [f"- {v}" for v in BUILDS.values()]
    calls = sorted({r["call"] for r in rows})
    refs = {r["call"]: r["ref"] for r in rows}
    out += ["", "PyTorch in each call (the same script, first thing in the call): " + "; ".join(
        f"call {c}: UNet step fp16 **{fmt(refs[c].get('unet_step_fp16_ms'))} ms**, fp32 {fmt(refs[c].get('unet_step_fp32_ms'))} ms, "
        f"5 rank-32 LoRAs fused {fmt(refs[c].get('lora_fuse_5x_rank32_ms'))} ms" for c in calls) + ". Goal (issue #5): burn-wgpu ≤ 1.5× PyTorch fp16.", ""]
    out += ["| call | run | conv | attention | matmul | dtype | first step (ms) | step median (ms) | vs PyTorch fp16 | vs PyTorch fp32 | check: rel. error of ε |",
            "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if "step_ms_median" in r:
            m, f16, f32 = r["step_ms_median"], r["ref"].get("unet_step_fp16_ms"), r["ref"].get("unet_step_fp32_ms")
            split = f", split-k {r['split_k']}" if r.get("split_k") else ""
            out.append(f"| {r['call']} | {r['run']} | {r.get('conv', 'backend')} | {r.get('attention', 'backend')} | {r.get('matmul', 'backend')}{split} | {r.get('dtype', 'f32')} | "
                       f"{fmt(r['first_step_ms'])} | {fmt(m)} | {fmt(m / f16 if f16 else None, 1)}× | {fmt(m / f32 if f32 else None, 1)}× | {err(r.get('check_rel_err'))} |")
    out.append("")
    ops = [r for r in rows if "op" in r]
    if ops:
        out += ["Single ops (median of the reps after one warm-up call; first call apart):", "",
                "| call | build | dtype | op | kernel | first call (ms) | median (ms) | rel. error |", "|---|---|---|---|---|---|---|---|"]
        out += [f"| {r['call']} | {r['build']} | {r.get('dtype') or ('f16' if 'f16' in r['run'] else 'f32')} | {r['op']} | {r['kernel']} | {fmt(r['first_ms'])} | {fmt(r['median_ms'], 3)} | {err(r.get('rel_err'))} |" for r in ops]
        out.append("")
    lora = [r for r in rows if "results" in r]
    if lora:
        out += ["LoRA application (issue #6 item 7): 5 kohya adapters on the 128 attention linears, merged on the device from the "
                "pristine base (`LoraHost::set`: factor upload + one GEMM per layer), median of 3; switch = another 5; base bytes "
                "re-uploaded on a switch (goal 0). Goal: ≤ 100 ms for 5 adapters.", "",
                "| call | build | rank | apply 5 (ms) | PyTorch fuse 5 (ms, same call) | ratio | switch (ms) | per-image set, 4 masks (ms) | restore (ms) | base bytes re-uploaded |",
                "|---|---|---|---|---|---|---|---|---|---|"]
        for r in lora:
            for x in r["results"]:
                ref = r["ref"].get(f"lora_fuse_5x_rank{x['rank']}_ms")
                out.append(f"| {r['call']} | {r['build']}{' f16' if r.get('dtype') == 'f16' else ''} | {x['rank']} | {fmt(x['apply5_ms'])} | {fmt(ref)} | {fmt(x['apply5_ms'] / ref if ref else None, 1)}× | "
                           f"{fmt(x['switch_ms'])} | {fmt(x['per_image_4_masks_ms'])} | {fmt(x['restore_ms'])} | {x['switch_base_bytes_reuploaded']} |")
        out.append("")
    if logs:
        out += ["Steps of the call (exit status 124 = stopped by its timeout):", "", "```", *logs, "```", ""]
    return "\n".join(out)


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    rows, torch, gpu, logs = load(args)
    skip = {tuple(a[len("--skip="):].split(":")) for a in sys.argv[1:] if a.startswith("--skip=")}  # CALL:RUN
    rows = [r for r in rows if (str(r["call"]), r["run"]) not in skip]
    if not rows and not torch:
        sys.exit("report.py: no results in " + " ".join(args))
    text = section(rows, torch, gpu, logs)
    # a small-mode check of the script (no NVIDIA GPU: lavapipe, tiny sizes) is printed, never recorded
    if "no NVIDIA GPU" in gpu:
        print(text)
        print("report.py: small-mode results (no NVIDIA GPU): BENCHMARKS.md left as it is", file=sys.stderr)
        return
    bm = ROOT / "BENCHMARKS.md"
    s = bm.read_text()
    begin, end = "<!-- gpu:begin -->", "<!-- gpu:end -->"
    block = f"{begin}\n{text}\n{end}"
    if begin in s:
        s = s[:s.index(begin)] + block + s[s.index(end) + len(end):]
    else:
        anchor = "<!-- convert:begin -->"
        s = s.replace(anchor, block + "\n\n" + anchor, 1) if anchor in s else s + "\n" + block + "\n"
    bm.write_text(s)
    print(text)


if __name__ == "__main__":
    main()
