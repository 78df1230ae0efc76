#!/usr/bin/env python3
"""Full-size SD1.5 UNet step on this CPU (issue #5 item 9): ours (burn `flex` with each convolution kernel, and
burn `wgpu` on lavapipe when asked) against PyTorch CPU eager (diffusers' UNet2DConditionModel, SD1.5 config, random weights) measured in the
same run, with the same thread count as ours (1: burn-flex here is single-threaded) and with all cores.

    ~/.venvs/ref/bin/python benches/unet_step.py [--latent 64] [--batch 2] [--reps 2] [--conv gemm,backend]
        [--attn host,backend] [--wgpu-latent 32] [--no-write]

Writes the `unet_step` section of BENCHMARKS.md. The GPU run (burn-wgpu on Vulkan vs PyTorch fp16 on the lent
H100/H200) is a separate, prepared device script: benches/gpu/README.md.
"""
import argparse
import os
import time

from benchlib import SD15_UNET, cargo_bench, read_section, write_section


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


def ours(device, latent, batch, reps, conv="gemm", attn="host"):
    return {"device": device, "conv": conv, "attn": attn, "latent": latent,
            **cargo_bench("unet_step", f"--device {device} --latent {latent} --batch {batch} --reps {reps} --conv {conv} --attn {attn}")}


LAVAPIPE = "| burn `wgpu` on lavapipe"
KEPT = " (kept from an earlier run)"


def earlier_lavapipe_rows():
    """The section's lavapipe rows, for a run that does not measure lavapipe again (it takes minutes)."""
    rows = [l for l in read_section("unet_step").splitlines() if l.startswith(LAVAPIPE)]
    return [r if KEPT in r else r.replace(" |", KEPT + " |", 1) for r in rows]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--latent", type=int, default=64)
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--conv", default="gemm,backend",
                    help="burn flex convolutions to time, comma-separated (gemm: the engine's default; backend: burn's conv2d)")
    ap.add_argument("--attn", default="host,backend",
                    help="burn flex attention kernels to time (with conv gemm), comma-separated (host: the engine's default on "
                         "the CPU; backend: burn-flex's attention)")
    ap.add_argument("--wgpu-latent", type=int, default=0,
                    help="also burn wgpu on lavapipe at this latent size, with PyTorch 1 thread (its ratio) and burn flex at the "
                         "same size (32: about 10 min); without it the section keeps its earlier lavapipe row")
    ap.add_argument("--no-write", action="store_true")
    a = ap.parse_args()
    combos = [(c, "host") for c in a.conv.split(",")] + [("gemm", t) for t in a.attn.split(",") if t != "host"]
    runs = [ours("cpu", a.latent, a.batch, a.reps, c, t) for c, t in combos]
    t1, version, params = torch_step(a.latent, a.batch, a.reps, 1)
    tn, _, _ = torch_step(a.latent, a.batch, a.reps, os.cpu_count())
    rows = [f"| PyTorch {version} CPU eager, 1 thread | {t1 / 1e3:.2f} s | 1.00 | – |",
            f"| PyTorch CPU eager, {os.cpu_count()} threads | {tn / 1e3:.2f} s | {tn / t1:.2f} | – |"]
    for r in runs:
        name = f"burn `flex` (single-threaded), conv `{r['conv']}`, attention `{r['attn']}`"
        if "error" in r:
            rows.append(f"| {name} | failed: {r['error']} | – | – |")
        else:
            rows.append(f"| {name} | {r['step_ms_median'] / 1e3:.2f} s | **{r['step_ms_median'] / t1:.2f}** | {r['first_step_ms'] / 1e3:.2f} s |")
    if a.wgpu_latent:
        n = a.wgpu_latent
        flex, lp = ours("cpu", n, a.batch, 1), ours("wgpu", n, a.batch, 1)
        tp, _, _ = torch_step(n, a.batch, 1, 1)
        if "error" in flex or "error" in lp:
            rows.append(f"{LAVAPIPE}, at {n}² latents | failed: {lp.get('error') or flex.get('error')} | – | – |")
        else:
            rows.append(f"{LAVAPIPE}, at {n}² latents (`--wgpu-latent {n}`; there PyTorch 1 thread {tp / 1e3:.1f} s, "
                        f"flex {flex['step_ms_median'] / 1e3:.1f} s) | {lp['step_ms_median'] / 1e3:.1f} s | "
                        f"**{lp['step_ms_median'] / tp:.1f}** (≈ {lp['step_ms_median'] / flex['step_ms_median']:.0f} × flex) | "
                        f"{lp['first_step_ms'] / 1e3:.1f} s |")
    else:
        rows += earlier_lavapipe_rows()
    px = a.latent * 8
    wl = f" --wgpu-latent {a.wgpu_latent}" if a.wgpu_latent else ""
    text = "\n".join([
        "## Full-size UNet step on this CPU (issue #5)",
        "",
        f"`~/.venvs/ref/bin/python benches/unet_step.py --latent {a.latent} --batch {a.batch} --reps {a.reps} --conv {a.conv} --attn {a.attn}{wl}` "
        f"({time.strftime('%Y-%m-%d')}): one SD1.5 UNet step ({params / 1e6:.0f} M parameters, random weights, f32) at "
        f"{px}×{px} ({a.latent}² latents), batch {a.batch} (the CFG pair), timestep 500; median of {a.reps} after a warm-up.",
        "Ratio = time / PyTorch 1 thread (goal ≤ 2).",
        "",
        "| engine | step | ratio | first step (kernel compile) |",
        "|---|---|---|---|",
        *rows,
        "",
        "Reading: burn-flex runs on one core. Its GEMMs (the linears; convolutions as `gemm`: 1×1 as a matmul, 3×3 as "
        "im2col + matmul, `stylus_diffusion::kernels`, or `backend`: burn's conv2d) are the `gemm` crate's, with its AVX-512 "
        "microkernels (`x86-v4`, picked at run time; AVX2 elsewhere). Attention `host` is `stylus_diffusion::attention::host` "
        "(two GEMMs per block of 512 query rows on the projections as they are, and a softmax vectorised for the CPU at run "
        "time); `backend` is burn-flex's attention (GEMMs per 64-key tile). The dev profile these run in builds `gemm` and "
        "burn-flex without debug assertions: with them the same GEMMs ran 3–4× slower (this row was 82.5 s, ratio 3.47, "
        "before). PyTorch uses oneDNN/MKL with AVX-512 and its flash-attention CPU kernel. lavapipe runs WGSL on the CPU "
        "through LLVM, one invocation at a time without vector units to speak of: a correctness target here, not a speed "
        "one (its ≤ 2 goal is out of reach for a software rasteriser; burn-flex is this CPU's fast path). The GPU comparison (burn-wgpu on Vulkan vs PyTorch fp16) is the prepared device script "
        "`benches/gpu/`, measured on a lent H200: see the next section.",
    ])
    print(text)
    if not a.no_write:
        write_section("unet_step", text)


if __name__ == "__main__":
    main()
