"""Original (CompVis/ldm) single-file export of the tiny pipeline (tests/fixtures/tiny_sd/ldm/, key_map.json).

Scope: an explicit diffusers -> ldm key mapping for UNet, VAE and CLIP (generalised to any number of levels
and layers_per_block), the extra tensors real SD1.x files carry (text position_ids int64 [1,77] and the 12
top-level DDPM buffers), the fp16 single file `tiny_sd15_fp16.safetensors`, `ldm_keys.json` (key -> [shape,
dtype]), `key_map.json` (ldm key -> [diffusers component, key]), the verification through diffusers' own
independent `from_single_file` converter, and a tiny pickled `.ckpt` the Rust loader must refuse.
"""
import re
from pathlib import Path

import torch

from common import SD15_SCHEDULER_CONFIG, save_st, te_state_dict_hub, write_json

_RESNET_UNET = {"norm1": "in_layers.0", "conv1": "in_layers.2", "norm2": "out_layers.0", "conv2": "out_layers.3",
                "time_emb_proj": "emb_layers.1", "conv_shortcut": "skip_connection"}
_VAE_ATTN = {"group_norm": "norm", "to_q": "q", "to_k": "k", "to_v": "v", "to_out.0": "proj_out"}


def unet_key_to_ldm(k, lpb, has_attn_up):
    """diffusers UNet2DConditionModel key -> ldm `model.diffusion_model.` key (without the prefix)."""
    fixed = {"time_embedding.linear_1.": "time_embed.0.", "time_embedding.linear_2.": "time_embed.2.",
             "conv_in.": "input_blocks.0.0.", "conv_norm_out.": "out.0.", "conv_out.": "out.2."}
    for a, b in fixed.items():
        if k.startswith(a):
            return b + k[len(a):]

    def resnet(rest):
        name, tail = rest.split(".", 1)
        return _RESNET_UNET[name] + "." + tail

    m = re.match(r"down_blocks\.(\d+)\.(resnets|attentions)\.(\d+)\.(.*)", k)
    if m:
        i, kind, j, rest = int(m[1]), m[2], int(m[3]), m[4]
        idx = (lpb + 1) * i + j + 1
        return f"input_blocks.{idx}.0.{resnet(rest)}" if kind == "resnets" else f"input_blocks.{idx}.1.{rest}"
    m = re.match(r"down_blocks\.(\d+)\.downsamplers\.0\.conv\.(.*)", k)
    if m:
        return f"input_blocks.{(lpb + 1) * (int(m[1]) + 1)}.0.op.{m[2]}"
    m = re.match(r"mid_block\.resnets\.(\d+)\.(.*)", k)
    if m:
        return f"middle_block.{2 * int(m[1])}.{resnet(m[2])}"
    m = re.match(r"mid_block\.attentions\.0\.(.*)", k)
    if m:
        return f"middle_block.1.{m[1]}"
    m = re.match(r"up_blocks\.(\d+)\.(resnets|attentions)\.(\d+)\.(.*)", k)
    if m:
        i, kind, j, rest = int(m[1]), m[2], int(m[3]), m[4]
        idx = (lpb + 1) * i + j
        return f"output_blocks.{idx}.0.{resnet(rest)}" if kind == "resnets" else f"output_blocks.{idx}.1.{rest}"
    m = re.match(r"up_blocks\.(\d+)\.upsamplers\.0\.conv\.(.*)", k)
    if m:
        i = int(m[1])
        return f"output_blocks.{(lpb + 1) * i + lpb}.{2 if has_attn_up[i] else 1}.conv.{m[2]}"
    raise KeyError(f"unmapped UNet key {k}")


def vae_key_to_ldm(k, n_levels):
    """diffusers AutoencoderKL key -> ldm `first_stage_model.` key (without the prefix)."""
    if k.split(".")[0] in ("quant_conv", "post_quant_conv"):
        return k
    part, rest = k.split(".", 1)  # encoder / decoder
    if rest.startswith(("conv_in.", "conv_out.")):
        return k
    if rest.startswith("conv_norm_out."):
        return f"{part}.norm_out.{rest[len('conv_norm_out.'):]}"

    def resnet(r):
        return r.replace("conv_shortcut.", "nin_shortcut.")

    m = re.match(r"down_blocks\.(\d+)\.resnets\.(\d+)\.(.*)", rest)
    if m:
        return f"{part}.down.{m[1]}.block.{m[2]}.{resnet(m[3])}"
    m = re.match(r"down_blocks\.(\d+)\.downsamplers\.0\.conv\.(.*)", rest)
    if m:
        return f"{part}.down.{m[1]}.downsample.conv.{m[2]}"
    m = re.match(r"up_blocks\.(\d+)\.resnets\.(\d+)\.(.*)", rest)
    if m:  # ldm numbers decoder up blocks in reverse
        return f"{part}.up.{n_levels - 1 - int(m[1])}.block.{m[2]}.{resnet(m[3])}"
    m = re.match(r"up_blocks\.(\d+)\.upsamplers\.0\.conv\.(.*)", rest)
    if m:
        return f"{part}.up.{n_levels - 1 - int(m[1])}.upsample.conv.{m[2]}"
    m = re.match(r"mid_block\.resnets\.(\d+)\.(.*)", rest)
    if m:
        return f"{part}.mid.block_{int(m[1]) + 1}.{resnet(m[2])}"
    m = re.match(r"mid_block\.attentions\.0\.(group_norm|to_q|to_k|to_v|to_out\.0)\.(.*)", rest)
    if m:
        return f"{part}.mid.attn_1.{_VAE_ATTN[m[1]]}.{m[2]}"
    raise KeyError(f"unmapped VAE key {k}")


def ddpm_buffers():
    """The 12 DDPM buffers real SD1.x single files carry at the top level (f32, from the scaled_linear betas)."""
    c = SD15_SCHEDULER_CONFIG
    betas = torch.linspace(c["beta_start"] ** 0.5, c["beta_end"] ** 0.5, c["num_train_timesteps"],
                           dtype=torch.float64) ** 2
    ac = torch.cumprod(1 - betas, 0)
    acp = torch.cat([torch.ones(1, dtype=torch.float64), ac[:-1]])
    pv = betas * (1 - acp) / (1 - ac)
    bufs = {"betas": betas, "alphas_cumprod": ac, "alphas_cumprod_prev": acp, "sqrt_alphas_cumprod": ac.sqrt(),
            "sqrt_one_minus_alphas_cumprod": (1 - ac).sqrt(), "log_one_minus_alphas_cumprod": (1 - ac).log(),
            "sqrt_recip_alphas_cumprod": (1 / ac).sqrt(), "sqrt_recipm1_alphas_cumprod": (1 / ac - 1).sqrt(),
            "posterior_variance": pv, "posterior_log_variance_clipped": torch.log(torch.clamp(pv, min=1e-20)),
            "posterior_mean_coef1": betas * acp.sqrt() / (1 - ac),
            "posterior_mean_coef2": (1 - acp) * (1 - betas).sqrt() / (1 - ac)}
    return {k: v.float() for k, v in bufs.items()}


def build_ldm_state_dict(unet, vae, te):
    """Returns (ldm state dict in fp32/int64, key map ldm -> (component, diffusers key), reshaped keys)."""
    ucfg, vcfg = unet.config, vae.config
    lpb = ucfg.layers_per_block
    usd = unet.state_dict()
    has_attn_up = {i: any(k.startswith(f"up_blocks.{i}.attentions.") for k in usd)
                   for i in range(len(ucfg.block_out_channels))}
    sd, key_map, reshaped = {}, {}, []
    for k, v in usd.items():
        nk = "model.diffusion_model." + unet_key_to_ldm(k, lpb, has_attn_up)
        sd[nk], key_map[nk] = v, ["unet", k]
    for k, v in vae.state_dict().items():
        nk = "first_stage_model." + vae_key_to_ldm(k, len(vcfg.block_out_channels))
        if re.search(r"mid\.attn_1\.(q|k|v|proj_out)\.weight$", nk) and v.ndim == 2:
            v = v.reshape(*v.shape, 1, 1)  # ldm VAE attention q/k/v/proj_out are 1x1 convs
            reshaped.append(nk)
        sd[nk], key_map[nk] = v, ["vae", k]
    for k, v in te_state_dict_hub(te).items():
        nk = "cond_stage_model.transformer." + k
        sd[nk], key_map[nk] = v, ["text_encoder", k]
    assert len(sd) == len(key_map), "ldm key collision"
    extras = {"cond_stage_model.transformer.text_model.embeddings.position_ids": torch.arange(77, dtype=torch.int64)[None]}
    extras.update(ddpm_buffers())
    for k, v in extras.items():
        sd[k] = v
    return sd, key_map, sorted(extras), sorted(reshaped)


def export_ldm(out, te, unet, vae, diffusers_dir):
    d = Path(out) / "tiny_sd" / "ldm"
    d.mkdir(parents=True, exist_ok=True)
    sd, key_map, extras, reshaped = build_ldm_state_dict(unet, vae, te)
    weights16 = {k: (v if (k in extras or not v.is_floating_point()) else v.half()) for k, v in sd.items()}
    path = d / "tiny_sd15_fp16.safetensors"
    save_st(path, weights16)
    write_json(d / "ldm_keys.json", {k: [list(v.shape), str(v.dtype).replace("torch.", "")]
                                     for k, v in weights16.items()})
    write_json(Path(out) / "tiny_sd" / "key_map.json", {
        "map": key_map,
        "not_weights": {k: None for k in extras},
        "reshaped_linear_to_conv1x1": reshaped,
        "note": "map: ldm key -> [diffusers component, key inside that component's state dict]; text_encoder keys "
                "use hub names (text_model.*). not_weights: position_ids (int64) and the DDPM buffers (f32), absent "
                "from the diffusers folder. reshaped: ldm stores these VAE attention weights as [C,C,1,1], diffusers "
                "as [C,C]."})
    make_pickle_ckpt(d / "tiny_pickle.ckpt", sd)
    rt = verify_from_single_file(path, diffusers_dir, te, unet, vae)
    return {"n_tensors": len(sd), "n_weights": len(key_map), "extras": extras, "reshaped": reshaped,
            "bytes": path.stat().st_size, "from_single_file": rt}


def make_pickle_ckpt(path, sd):
    """A few-KB torch.save zip+pickle checkpoint ({"state_dict": ...}); the Rust loader must refuse pickles."""
    small = {k: sd[k].clone() for k in ("model.diffusion_model.out.2.bias", "model.diffusion_model.input_blocks.0.0.bias")}
    torch.save({"state_dict": small, "global_step": 0}, str(path))
    assert path.stat().st_size < 10_000


def verify_from_single_file(path, diffusers_dir, te, unet, vae):
    """diffusers' own ldm -> diffusers converter must reproduce the weights exactly, with no missing keys."""
    from diffusers import StableDiffusionPipeline

    p2 = StableDiffusionPipeline.from_single_file(str(path), config=str(diffusers_dir), local_files_only=True,
                                                  safety_checker=None, requires_safety_checker=False,
                                                  dtype=torch.float32)
    res, total = {}, 0.0
    for name, mod in (("unet", unet), ("vae", vae), ("text_encoder", te)):
        a, b = mod.state_dict(), getattr(p2, name).state_dict()
        missing = sorted(set(a) - set(b))
        unexpected = sorted(set(b) - set(a))
        md = max(((a[k].float() - b[k].float()).abs().max().item() for k in a if k in b), default=0.0)
        total = max(total, md)
        res[name] = {"max_abs_diff": md, "missing": missing, "unexpected": unexpected,
                     "loaded_dtype": str(next(getattr(p2, name).parameters()).dtype)}
    res["max_abs_diff"] = total
    res["ok"] = total == 0.0 and not any(res[c]["missing"] for c in ("unet", "vae", "text_encoder"))
    assert res["ok"], res
    return res
