#!/usr/bin/env python3
"""Full-size SD1.5 UNet step on this CPU (issue #5 item 9): ours (burn `flex`, and burn `wgpu` on lavapipe when
asked) against PyTorch CPU eager (diffusers' UNet2DConditionModel, SD1.5 config, random weights) measured in the
same run, with the same thread count as ours (1: burn-flex here is single-threaded) and with all cores.

    ~/.venvs/ref/bin/python benches/unet_step.py [--latent 64] [--batch 2] [--reps 2] [--wgpu] [--no-write]

Writes the `unet_step` section of BENCHMARKS.md. The GPU run (burn-wgpu on Vulkan vs PyTorch fp16 on the lent
H100/H200) is a separate, prepared device script: benches/gpu/README.md.
"""
import argparse
import os
import time

from benchlib import SD15_UNET, cargo_bench, write_section


def torch_step(latent, batch, reps, threads):
    import torch
    from diffusers import UNet2DConditionModel

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    unet = UNet2DConditionModel(**SD15_UNET).eval()
    x = torch.randn(batch, 4, latent, latent)
    ctx = torch.randn(batch, 77, 768)
    t = torch.tensor(500)
    times = []
    with torch.no_grad():
        unet(x, t, encoder_hidden_states=ctx)  # warm-up
        for _ in range(reps):
            t0 = time.perf_counter()
            unet(x, t, encoder_hidden_states=ctx)
            times.append((time.perf_counter() - t0) * 1e3)
    return sorted(times)[len(times) // 2], torch.__version__, sum(p.numel() for p in unet.parameters())


def ours(device, latent, batch, reps):
    return {"device": device, **cargo_bench("unet_step", f"--device {device} --latent {latent} --batch {batch} --reps {reps}")}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--latent", type=int, default=64)
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--wgpu", action="store_true", help="also burn wgpu on lavapipe (slow)")
    ap.add_argument("--no-write", action="store_true")
    a = ap.parse_args()
    runs = [ours("cpu", a.latent, a.batch, a.reps)]
    if a.wgpu:
        runs.append(ours("wgpu", a.latent, a.batch, a.reps))
    t1, version, params = torch_step(a.latent, a.batch, a.reps, 1)
    tn, _, _ = torch_step(a.latent, a.batch, a.reps, os.cpu_count())
    rows = [f"| PyTorch {version} CPU eager, 1 thread | {t1 / 1e3:.2f} s | 1.00 | – |",
            f"| PyTorch CPU eager, {os.cpu_count()} threads | {tn / 1e3:.2f} s | {tn / t1:.2f} | – |"]
    for r in runs:
        name = {"cpu": "burn `flex` (single-threaded)", "wgpu": "burn `wgpu` on lavapipe (Vulkan on the CPU)"}[r["device"]]
        if "error" in r:
            rows.append(f"| {name} | failed: {r['error']} | – | – |")
        else:
            rows.append(f"| {name} | {r['step_ms_median'] / 1e3:.2f} s | {r['step_ms_median'] / t1:.2f} | {r['first_step_ms'] / 1e3:.2f} s |")
    px = a.latent * 8
    text = "\n".join([
        "## Full-size UNet step on this CPU (issue #5)",
        "",
        f"`~/.venvs/ref/bin/python benches/unet_step.py --latent {a.latent} --batch {a.batch} --reps {a.reps}` "
        f"({time.strftime('%Y-%m-%d')}): one SD1.5 UNet step ({params / 1e6:.0f} M parameters, random weights, f32) at "
        f"{px}×{px} ({a.latent}² latents), batch {a.batch} (the CFG pair), timestep 500; median of {a.reps} after a warm-up.",
        "Ratio = time / PyTorch 1 thread (goal ≤ 2).",
        "",
        "| engine | step | ratio | first step (kernel compile) |",
        "|---|---|---|---|",
        *rows,
        "",
        "Reading: burn-flex runs its convolutions and GEMMs on one core with AVX2 kernels, while PyTorch uses oneDNN/MKL "
        "(AVX-512 here); the goal needs faster conv kernels (implicit GEMM / Winograd) or burn-flex's `rayon`/`simd` "
        "features, measured against their compile-time cost. The browser path does not run on this backend.",
    ])
    print(text)
    if not a.no_write:
        write_section("unet_step", text)


if __name__ == "__main__":
    main()
