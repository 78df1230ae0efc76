"""Tiny random-weight Stable Diffusion 1.5 pipeline (tests/fixtures/tiny_sd/diffusers/).

Scope: the tiny configs (exact SD1.5 topology and key names, small widths), seeded fp16-grid weights, and the
diffusers-folder export (model_index.json, unet/, vae/, text_encoder/ with hub `text_model.*` key names,
tokenizer/, scheduler/ = SD1.5's scheduler_config.json verbatim), all weights as fp16 safetensors.
"""
import json
import shutil
from pathlib import Path

import torch

from tokenizer import write_vocab_merges
from common import HEIGHT, SD15_SCHEDULER_CONFIG, SEED, reinit_, save_st, te_state_dict_hub, write_json

TEXT_HIDDEN = 8

# SD1.5 text encoder (openai/clip-vit-large-patch14 text tower) config values, small widths
TINY_TE = dict(vocab_size=49408, hidden_size=TEXT_HIDDEN, intermediate_size=4 * TEXT_HIDDEN, num_hidden_layers=3,
               num_attention_heads=4, max_position_embeddings=77, hidden_act="quick_gelu", layer_norm_eps=1e-5,
               projection_dim=TEXT_HIDDEN, pad_token_id=1, bos_token_id=0, eos_token_id=2,
               attention_dropout=0.0, dropout=0.0, initializer_factor=1.0, initializer_range=0.02)

TINY_UNET = dict(sample_size=HEIGHT // 8, in_channels=4, out_channels=4, center_input_sample=False,
                 flip_sin_to_cos=True, freq_shift=0,
                 down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
                 mid_block_type="UNetMidBlock2DCrossAttn",
                 up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
                 only_cross_attention=False, block_out_channels=(8, 16, 24, 24), layers_per_block=2,
                 downsample_padding=1, mid_block_scale_factor=1, act_fn="silu", norm_num_groups=4, norm_eps=1e-5,
                 cross_attention_dim=TEXT_HIDDEN, attention_head_dim=8, use_linear_projection=False)

TINY_VAE = dict(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 4,
                up_block_types=("UpDecoderBlock2D",) * 4, block_out_channels=(8, 16, 24, 24), layers_per_block=2,
                act_fn="silu", latent_channels=4, norm_num_groups=4, sample_size=HEIGHT, scaling_factor=0.18215)


def tiny_configs():
    return {"text_encoder": TINY_TE, "unet": TINY_UNET, "vae": TINY_VAE, "scheduler": SD15_SCHEDULER_CONFIG}


def build_modules():
    """Build the three tiny models and re-draw all weights (seeded, sorted-key order, fp16 grid)."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(SEED)
    te = reinit_(CLIPTextModel(CLIPTextConfig(**TINY_TE)).eval(), SEED + 1)
    unet = reinit_(UNet2DConditionModel(**TINY_UNET).eval(), SEED + 2)
    vae = reinit_(AutoencoderKL(**TINY_VAE).eval(), SEED + 3)
    return te, unet, vae


def _fp16(sd):
    return {k: (v.half() if v.is_floating_point() else v) for k, v in sd.items()}


def _clean_config(path):
    """Re-write a saved config.json with sorted keys (and without the version-specific noise of paths)."""
    cfg = json.loads(Path(path).read_text())
    cfg.pop("_name_or_path", None)
    if "vocab_size" in cfg:
        cfg["architectures"] = ["CLIPTextModel"]
    write_json(path, cfg, indent=2)


def save_diffusers(out, te, unet, vae):
    """Write the diffusers folder. Weights go through our own writer (fp16, sorted keys, fixed metadata)."""
    d = Path(out) / "tiny_sd" / "diffusers"
    if d.exists():
        shutil.rmtree(d)
    for sub in ("unet", "vae", "text_encoder", "scheduler"):
        (d / sub).mkdir(parents=True)
    unet.save_config(str(d / "unet"))
    vae.save_config(str(d / "vae"))
    te.config.save_pretrained(str(d / "text_encoder"))
    for sub in ("unet", "vae", "text_encoder"):
        _clean_config(d / sub / "config.json")
    save_st(d / "unet" / "diffusion_pytorch_model.safetensors", _fp16(unet.state_dict()), {"format": "pt"})
    save_st(d / "vae" / "diffusion_pytorch_model.safetensors", _fp16(vae.state_dict()), {"format": "pt"})
    # hub key names (`text_model.embeddings...`): transformers 5 loads both spellings, real files use this one
    save_st(d / "text_encoder" / "model.safetensors", _fp16(te_state_dict_hub(te)), {"format": "pt"})
    write_json(d / "scheduler" / "scheduler_config.json", SD15_SCHEDULER_CONFIG, indent=2)
    write_vocab_merges(d / "tokenizer")  # vocab.json, merges.txt, SD1.5 tokenizer configs
    import diffusers

    model_index = {
        "_class_name": "StableDiffusionPipeline",
        "_diffusers_version": diffusers.__version__,
        "feature_extractor": [None, None],
        "requires_safety_checker": False,
        "safety_checker": [None, None],
        "scheduler": ["diffusers", "PNDMScheduler"],
        "text_encoder": ["transformers", "CLIPTextModel"],
        "tokenizer": ["transformers", "CLIPTokenizer"],
        "unet": ["diffusers", "UNet2DConditionModel"],
        "vae": ["diffusers", "AutoencoderKL"],
    }
    write_json(d / "model_index.json", model_index, indent=2)
    return d


def load_pipeline(diffusers_dir, dtype=torch.float32):
    """Load the tiny pipeline from the folder (fp16 files upcast to fp32: lossless, values are on the fp16 grid)."""
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_pretrained(str(diffusers_dir), dtype=dtype, safety_checker=None,
                                                   requires_safety_checker=False, local_files_only=True)
    pipe.set_progress_bar_config(disable=True)
    for m in (pipe.unet, pipe.vae, pipe.text_encoder):
        m.eval()
    return pipe


def check_reload(pipe, te, unet, vae):
    """Max |diff| between the in-memory models and the pipeline re-loaded from the fp16 folder (must be 0)."""
    res = {}
    for name, mod in (("unet", unet), ("vae", vae), ("text_encoder", te)):
        a, b = mod.state_dict(), getattr(pipe, name).state_dict()
        missing = sorted(set(a) - set(b))
        md = max(((a[k].float() - b[k].float()).abs().max().item() for k in a if k in b), default=0.0)
        res[name] = {"max_abs_diff": md, "missing": missing,
                     "params": sum(p.numel() for p in mod.parameters())}
    return res
