"""LoRA fixtures for the tiny pipeline (tests/fixtures/lora/): files in the formats people download, and the
fused weights the reference stack produces for them.

Scope: kohya LoRA (attention-only, F16, `ss_*` metadata), kohya LoCon (+ resnet/sampler convs, BF16), PEFT/
diffusers (`lora_A`/`lora_B`, alpha in `lora_adapter_metadata`) and a PEFT file with no alpha; fusing each with
diffusers `load_lora_weights` + `fuse_lora(lora_scale)` and comparing with the closed-form rule; the merged
oracle file, the LoRA UNet-forward oracle and meta.json. LyCORIS LoHa/LoKr live in lycoris_fx.py.
"""
import json
from pathlib import Path

import numpy as np
import torch

from common import SEED, hub_te, max_abs_diff, save_st, te_state_dict_hub, write_json

LORA_SCALE = 0.7
KOHYA = dict(rank=4, alpha=2.0)
LOCON = dict(rank=4, alpha=2.0, conv_rank=2, conv_alpha=1.0)
PEFT = dict(rank=4, alpha=8.0)
NOALPHA = dict(rank=2)


# ---------------------------------------------------------------------------------------------- targets / names

def kohya_targets(unet, te, locon=False):
    """kohya-ss sd-scripts networks/lora.py for SD1.x: Linear / Conv2d inside Transformer2DModel (UNet) and
    CLIPAttention / CLIPMLP (TE); with conv_dim (LoCon) also inside ResnetBlock2D / Downsample2D / Upsample2D.
    Returns [(component, module path (TE: hub `text_model.` name), module)] in model order."""
    from diffusers.models.resnet import Downsample2D, ResnetBlock2D, Upsample2D
    from diffusers.models.transformers.transformer_2d import Transformer2DModel
    from transformers.models.clip.modeling_clip import CLIPMLP, CLIPAttention

    ucls = (Transformer2DModel,) + ((ResnetBlock2D, Downsample2D, Upsample2D) if locon else ())
    out, seen = [], set()
    for comp, root, classes in (("unet", unet, ucls), ("text_encoder", te, (CLIPAttention, CLIPMLP))):
        for name, mod in root.named_modules():
            if not isinstance(mod, classes):
                continue
            for cname, child in mod.named_modules():
                if cname and isinstance(child, (torch.nn.Linear, torch.nn.Conv2d)):
                    full = f"{name}.{cname}"
                    full = hub_te(full) if comp == "text_encoder" else full
                    if (comp, full) not in seen:
                        seen.add((comp, full))
                        out.append((comp, full, child))
    return out


def select_targets(unet, te, leaves_unet, leaves_te):
    """Modules whose path ends with one of the given leaf names (PEFT `target_modules` semantics)."""
    return [t for t in kohya_targets(unet, te)
            if any(t[1].endswith("." + s) for s in (leaves_unet if t[0] == "unet" else leaves_te))]


def kohya_name(comp, path):
    return ("lora_unet_" if comp == "unet" else "lora_te_") + path.replace(".", "_")


def kohya_name_table(unet, te):
    """'lora_unet_<path with _>' -> (component, path); built by enumerating the model because '_' -> '.' is
    ambiguous (to_out_0, ff_net_0_proj, transformer_blocks). Checked collision-free."""
    table = {}
    for comp, root in (("unet", unet), ("text_encoder", te)):
        for name, mod in root.named_modules():
            if isinstance(mod, (torch.nn.Linear, torch.nn.Conv2d)):
                path = hub_te(name) if comp == "text_encoder" else name
                k = kohya_name(comp, path)
                assert k not in table, f"kohya name collision {k}"
                table[k] = (comp, path)
    return table


# ---------------------------------------------------------------------------------------------- file writers

def low_rank_pair(g, mod, r):
    """(down, up): down [r, in] or [r, in, kh, kw] (a real conv), up [out, r] or [out, r, 1, 1]."""
    if isinstance(mod, torch.nn.Linear):
        down = torch.randn(r, mod.in_features, generator=g) / float(np.sqrt(mod.in_features))
        up = torch.randn(mod.out_features, r, generator=g) / float(np.sqrt(r))
    else:
        kh, kw = mod.kernel_size
        down = torch.randn(r, mod.in_channels, kh, kw, generator=g) / float(np.sqrt(mod.in_channels * kh * kw))
        up = torch.randn(mod.out_channels, r, 1, 1, generator=g) / float(np.sqrt(r))
    return down, up


def make_kohya(targets, seed, rank, alpha, conv_rank=None, conv_alpha=None, dtype=torch.float16):
    g = torch.Generator().manual_seed(seed)
    sd = {}
    for comp, path, mod in targets:
        is3 = isinstance(mod, torch.nn.Conv2d) and mod.kernel_size != (1, 1)
        r, a = (conv_rank, conv_alpha) if (is3 and conv_rank) else (rank, alpha)
        down, up = low_rank_pair(g, mod, r)
        k = kohya_name(comp, path)
        sd[f"{k}.lora_down.weight"] = down.to(dtype)
        sd[f"{k}.lora_up.weight"] = up.to(dtype)
        if a is not None:
            sd[f"{k}.alpha"] = torch.tensor(float(a)).to(dtype)  # 0-d, saved in the file's dtype (as kohya does)
    return sd


def make_peft(targets, seed, rank):
    """diffusers/PEFT keys: unet.<module>.lora_A.weight (down) / lora_B.weight (up); text_encoder.text_model...."""
    g = torch.Generator().manual_seed(seed)
    sd = {}
    for comp, path, mod in targets:
        down, up = low_rank_pair(g, mod, rank)
        sd[f"{comp}.{path}.lora_A.weight"] = down
        sd[f"{comp}.{path}.lora_B.weight"] = up
    return sd


# ---------------------------------------------------------------------------------------------- the rule

def lowrank_delta(down, up):
    """dW = up @ down for Linear / 1x1 conv; 3x3 (LoCon): dW[o,i,h,w] = sum_r up[o,r] down[r,i,h,w]."""
    if down.ndim == 2:
        return up @ down
    return torch.einsum("or,rihw->oihw", up.flatten(1), down)


def rule_merge(base, entries, scale):
    """W' = W + scale * (alpha / r) * dW for every (comp, path, down, up, alpha|None), in float64 -> f32."""
    res = {}
    for comp, path, down, up, alpha in entries:
        r = down.shape[0]
        a = float(r) if alpha is None else float(alpha)
        key = f"{comp}.{path}.weight"
        d = lowrank_delta(down.double(), up.double()).reshape(base[key].shape)
        res[key] = (base[key].double() + scale * (a / r) * d).float()
    return res


def kohya_entries(sd, table):
    out = []
    for k in sorted(sd):
        if k.endswith(".lora_down.weight"):
            n = k[: -len(".lora_down.weight")]
            comp, path = table[n]
            a = sd.get(n + ".alpha")
            out.append((comp, path, sd[k].float(), sd[n + ".lora_up.weight"].float(),
                        None if a is None else float(a.float())))
    return out


def peft_entries(sd, alpha):
    out = []
    for k in sorted(sd):
        if k.endswith(".lora_A.weight"):
            comp, path = k[: -len(".lora_A.weight")].split(".", 1)
            out.append((comp, path, sd[k].float(), sd[k.replace("lora_A", "lora_B")].float(), alpha))
    return out


# ---------------------------------------------------------------------------------------------- diffusers

def base_weights(pipe):
    w = {f"unet.{k}": v.clone() for k, v in pipe.unet.state_dict().items()}
    w.update({f"text_encoder.{k}": v.clone() for k, v in te_state_dict_hub(pipe.text_encoder).items()})
    return w


def diffusers_fuse(diffusers_dir, lora_dir, weight_name, scale):
    """Fresh pipeline, load_lora_weights, fuse_lora(lora_scale), unload; returns (pipe, changed weights)."""
    from tiny_model import load_pipeline

    p = load_pipeline(diffusers_dir)
    before = base_weights(p)
    p.load_lora_weights(str(lora_dir), weight_name=weight_name, adapter_name="x")
    p.fuse_lora(lora_scale=scale, adapter_names=["x"])
    p.unload_lora_weights()
    after = base_weights(p)
    changed = {k: after[k] for k in before if k in after and not torch.equal(before[k], after[k])}
    return p, changed


def compare(rule, got):
    common = sorted(set(rule) & set(got))
    return {"n_modules_rule": len(rule), "n_changed_by_diffusers": len(got),
            "only_changed_by_diffusers": sorted(set(got) - set(rule))[:10],
            "expected_but_unchanged": sorted(set(rule) - set(got))[:10],
            "max_abs_diff_rule_vs_diffusers": max((max_abs_diff(rule[k], got[k]) for k in common), default=None)}


def make_loras(out, pipe, diffusers_dir, unet_forward_fn, emb_fn):
    """Writes lora/*.safetensors, merged_oracle.safetensors (+ LyCORIS cases), lora_unet_forward.safetensors."""
    import lycoris_fx
    from safetensors.torch import load_file
    from diffusers import StableDiffusionPipeline

    d = Path(out) / "lora"
    d.mkdir(parents=True, exist_ok=True)
    unet, te = pipe.unet, pipe.text_encoder
    table = kohya_name_table(unet, te)
    base = base_weights(pipe)
    meta, merged = {"lora_scale": LORA_SCALE, "cases": {}}, {}

    # kohya LoRA: attention-only, UNet + TE, rank 4 alpha 2, F16
    kt = kohya_targets(unet, te)
    kohya = make_kohya(kt, SEED + 10, **KOHYA)
    save_st(d / "kohya_lora.safetensors", kohya, {
        "ss_network_module": "networks.lora", "ss_network_dim": "4", "ss_network_alpha": "2.0",
        "ss_base_model_version": "sd_v1", "ss_output_name": "tiny_kohya", "ss_sd_model_name": "tiny_sd15.safetensors",
        "ss_training_comment": "seeded random weights for tests", "ss_num_train_images": "12",
        "ss_tag_frequency": json.dumps({"10_astronaut": {"astronaut": 10, "horse": 7, "mars": 3}}, sort_keys=True)})
    # kohya LoCon: + resnet conv1/conv2 (3x3: conv rank 2, alpha 1), conv_shortcut + time_emb_proj (1x1/linear:
    # network rank 4, alpha 2), down/upsampler convs (3x3); BF16 tensors
    lt = kohya_targets(unet, te, locon=True)
    locon = make_kohya(lt, SEED + 12, **LOCON, dtype=torch.bfloat16)
    save_st(d / "kohya_locon.safetensors", locon, {
        "ss_network_module": "networks.lora", "ss_network_dim": "4", "ss_network_alpha": "2.0",
        "ss_network_args": json.dumps({"conv_alpha": "1", "conv_dim": "2"}, sort_keys=True),
        "ss_base_model_version": "sd_v1", "ss_output_name": "tiny_locon"})
    # PEFT/diffusers: the targets diffusers' training scripts use (to_q/to_k/to_v/to_out.0 + CLIP q/k/v/out_proj)
    pt = select_targets(unet, te, ("to_q", "to_k", "to_v", "to_out.0"), ("q_proj", "k_proj", "v_proj", "out_proj"))
    peft = make_peft(pt, SEED + 13, PEFT["rank"])
    StableDiffusionPipeline.save_lora_weights(
        str(d), weight_name="peft_lora.safetensors",
        unet_lora_layers={k[len("unet."):]: v for k, v in peft.items() if k.startswith("unet.")},
        text_encoder_lora_layers={k[len("text_encoder."):]: v for k, v in peft.items() if k.startswith("text_encoder.")},
        unet_lora_adapter_metadata={"r": PEFT["rank"], "lora_alpha": PEFT["alpha"],
                                    "target_modules": ["to_k", "to_out.0", "to_q", "to_v"]},
        text_encoder_lora_adapter_metadata={"r": PEFT["rank"], "lora_alpha": PEFT["alpha"],
                                            "target_modules": ["k_proj", "out_proj", "q_proj", "v_proj"]})
    # no alpha anywhere (PEFT keys, no header metadata) -> alpha = r; cross-attention k/v + CLIP k/v only, rank 2
    nt = select_targets(unet, te, ("attn2.to_k", "attn2.to_v"), ("k_proj", "v_proj"))
    noalpha = make_peft(nt, SEED + 14, NOALPHA["rank"])
    save_st(d / "peft_lora_noalpha.safetensors", noalpha, {"format": "pt"})

    cases = {
        "kohya": ("kohya_lora.safetensors", kohya_entries(load_file(str(d / "kohya_lora.safetensors")), table)),
        "locon": ("kohya_locon.safetensors", kohya_entries(load_file(str(d / "kohya_locon.safetensors")), table)),
        "peft": ("peft_lora.safetensors", peft_entries(load_file(str(d / "peft_lora.safetensors")), PEFT["alpha"])),
        "peft_noalpha": ("peft_lora_noalpha.safetensors",
                         peft_entries(load_file(str(d / "peft_lora_noalpha.safetensors")), None)),
    }
    fused_kohya = None
    for name, (fname, entries) in cases.items():
        rule = rule_merge(base, entries, LORA_SCALE)
        p, got = diffusers_fuse(diffusers_dir, d, fname, LORA_SCALE)
        info = compare(rule, got)
        info.update(file=fname, via="diffusers load_lora_weights + fuse_lora(lora_scale=0.7)",
                    n_3x3_modules=sum(1 for e in entries if e[2].ndim == 4 and e[2].shape[-1] != 1),
                    ranks=sorted({int(e[2].shape[0]) for e in entries}),
                    alphas=sorted({e[4] for e in entries if e[4] is not None}) or "absent (alpha = r)",
                    n_unet=sum(k.startswith("unet.") for k in got),
                    n_text_encoder=sum(k.startswith("text_encoder.") for k in got))
        assert info["max_abs_diff_rule_vs_diffusers"] is not None and info["max_abs_diff_rule_vs_diffusers"] < 1e-5, info
        assert not info["expected_but_unchanged"] and not info["only_changed_by_diffusers"], info
        meta["cases"][name] = info
        for k, v in got.items():
            merged[f"{name}/{k}"] = v
        if name == "kohya":
            fused_kohya = p
    meta["peft_adapter_metadata_header"] = json.loads(
        _header(d / "peft_lora.safetensors")["__metadata__"]["lora_adapter_metadata"])

    ly_merged, ly_meta = lycoris_fx.make_lycoris(d, unet, te, table, base, LORA_SCALE, diffusers_dir)
    merged.update(ly_merged)
    meta["cases"].update(ly_meta)
    save_st(d / "merged_oracle.safetensors", merged)

    # one UNet forward (and the CLIP embeddings) with the kohya LoRA fused at 0.7, same inputs as the base oracle
    emb = emb_fn(fused_kohya)
    fwd = {k.replace("unet_forward.", ""): v for k, v in unet_forward_fn(fused_kohya.unet, emb).items()}
    fwd["text_embeddings"] = emb
    save_st(d / "lora_unet_forward.safetensors", fwd)
    meta["lora_unet_forward"] = {"lora": "kohya_lora.safetensors", "lora_scale": LORA_SCALE,
                                 "inputs": "sample/timestep/encoder_hidden_states as tiny_sd/oracle unet_forward.* "
                                           "but encoder_hidden_states from the LoRA-fused text encoder",
                                 "tensors": sorted(fwd)}
    meta["rule"] = ("W' = W + lora_scale * (alpha / r) * dW (fp32 upcast; r = down.shape[0]; alpha missing -> r); "
                    "dW = up @ down (Linear, 1x1 conv), einsum('or,rihw->oihw') for 3x3 LoCon; LoHa/LoKr see cases")
    meta["files"] = {f.name: f.stat().st_size for f in sorted(d.glob("*.safetensors"))}
    meta["key_examples"] = {f.name: sorted(_header(f))[:6] for f in sorted(d.glob("*.safetensors"))
                            if f.name not in ("merged_oracle.safetensors", "lora_unet_forward.safetensors")}
    write_json(d / "meta.json", meta)
    return {k: {kk: v[kk] for kk in ("n_changed_by_diffusers", "max_abs_diff_rule_vs_diffusers", "n_modules",
                                     "max_abs_diff_rule_vs_lycoris") if kk in v}
            for k, v in meta["cases"].items()}


def _header(path):
    with open(path, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
        return json.loads(f.read(n))
