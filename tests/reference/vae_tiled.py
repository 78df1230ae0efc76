"""Tiled VAE decoding oracle: diffusers' `AutoencoderKL.tiled_decode` (enable_tiling) on the tiny VAE with
small tiles, so the Rust tiled decoder (crates/stylus-diffusion/src/vae_tiled.rs) can be checked tile for tile,
seams and partial edge tiles included. Writes tiny_sd/oracle/vae_tiled.safetensors + vae_tiled.json."""
from pathlib import Path

import torch

from common import SEED, save_st, write_json

# 4-latent (32-pixel) tiles with diffusers' default 0.25 overlap: tiles start every 3 latents, seams are blended
# over 8 pixels, and a 16x12 latent ends in partial tiles on both axes.
TILE_LATENT = 4
TILE_SAMPLE = 32
OVERLAP = 0.25
SHAPE = (1, 4, 16, 12)


def make_vae_tiled(out, pipe):
    vae = pipe.vae
    g = torch.Generator().manual_seed(SEED + 400)
    z = torch.randn(SHAPE, generator=g)
    with torch.no_grad():
        vae.disable_tiling()
        full = vae.decode(z).sample
        vae.enable_tiling()
        vae.tile_latent_min_size = TILE_LATENT
        vae.tile_sample_min_size = TILE_SAMPLE
        vae.tile_overlap_factor = OVERLAP
        tiled = vae.decode(z).sample
        vae.disable_tiling()
    d = Path(out) / "tiny_sd" / "oracle"
    save_st(d / "vae_tiled.safetensors", {"latent": z, "tiled": tiled, "untiled": full})
    info = {"latent_shape": list(SHAPE), "latent_seed": SEED + 400, "tile_latent_min_size": TILE_LATENT,
            "tile_sample_min_size": TILE_SAMPLE, "tile_overlap_factor": OVERLAP,
            "via": "diffusers AutoencoderKL.enable_tiling() + decode (tiled_decode), raw latent (no 1/0.18215)",
            "max_abs_tiled_vs_untiled": float((tiled - full).abs().max())}
    write_json(d / "vae_tiled.json", info)
    return info
