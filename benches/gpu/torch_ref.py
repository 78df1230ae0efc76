#!/usr/bin/env python3
"""PyTorch reference for benches/gpu/run.sh, on the same GPU: SD1.5 UNet step (diffusers, random weights) at
the given latent size, batch 2, fp16 and fp32, and diffusers-style LoRA fusing (W += s * up @ down, in place)
of 5 rank-32 / rank-128 adapters into the 128 attention linears. Prints one JSON object."""
import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchlib import SD15_UNET, attention_linears  # noqa: E402


def sync(dev):
    if dev == "cuda":
        torch.cuda.synchronize()


def unet_step(dev, dtype, latent, reps):
    from diffusers import UNet2DConditionModel
    unet = UNet2DConditionModel(**SD15_UNET).to(dev, dtype).eval()
    x = torch.randn(2, 4, latent, latent, device=dev, dtype=dtype)
    ctx = torch.randn(2, 77, 768, device=dev, dtype=dtype)
    times = []
    with torch.no_grad():
        for i in range(reps + 2):
            sync(dev)
            t0 = time.perf_counter()
            unet(x, 500, encoder_hidden_states=ctx)
            sync(dev)
            if i >= 2:
                times.append((time.perf_counter() - t0) * 1e3)
    return sorted(times)[len(times) // 2]


def lora_fuse(dev, rank):
    shapes = attention_linears()
    ws = [torch.randn(o, i, device=dev) for o, i in shapes]
    ad = [[(torch.randn(o, rank, device=dev), torch.randn(rank, i, device=dev)) for o, i in shapes] for _ in range(5)]
    best = None
    for _ in range(3):
        sync(dev)
        t0 = time.perf_counter()
        for m, w in enumerate(ws):
            for a in ad:
                w.addmm_(a[m][0], a[m][1], alpha=0.08)
        sync(dev)
        t = (time.perf_counter() - t0) * 1e3
        best = t if best is None else min(best, t)
    return best


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--latent", type=int, default=64)
    ap.add_argument("--cpu", action="store_true")
    a = ap.parse_args()
    dev = "cpu" if a.cpu or not torch.cuda.is_available() else "cuda"
    out = {"device": torch.cuda.get_device_name() if dev == "cuda" else "cpu", "torch": torch.__version__, "latent": a.latent}
    out["unet_step_fp32_ms"] = unet_step(dev, torch.float32, a.latent, 5)
    if dev == "cuda":
        out["unet_step_fp16_ms"] = unet_step(dev, torch.float16, a.latent, 5)
        out["lora_fuse_5x_rank32_ms"] = lora_fuse(dev, 32)
        out["lora_fuse_5x_rank128_ms"] = lora_fuse(dev, 128)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
