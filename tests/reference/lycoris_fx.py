"""LyCORIS LoHa / LoKr fixtures for the tiny pipeline (tests/fixtures/lora/loha.safetensors, lokr.safetensors).

Scope: a dozen modules each (UNet attention linears, 1x1 proj convs, 3x3 resnet convs, CLIP linears) with kohya
`lora_unet_` / `lora_te_` names and LyCORIS tensor names/shapes (as lycoris.modules.{loha,lokr} lay them out,
non-Tucker); the merged weights from `lycoris.functional` (diffusers refuses these files) checked against the
closed-form rule; the returned oracle entries go into merged_oracle.safetensors.
"""
import numpy as np
import torch

from common import SEED, get_module, max_abs_diff, save_st

MODULES = [
    ("unet", "down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q"),
    ("unet", "down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k"),
    ("unet", "down_blocks.1.attentions.1.proj_in"),
    ("unet", "down_blocks.1.resnets.0.conv1"),
    ("unet", "mid_block.attentions.0.transformer_blocks.0.attn1.to_out.0"),
    ("unet", "mid_block.attentions.0.transformer_blocks.0.ff.net.0.proj"),
    ("unet", "up_blocks.1.attentions.2.transformer_blocks.0.attn2.to_v"),
    ("unet", "up_blocks.2.resnets.1.conv2"),
    ("unet", "up_blocks.3.attentions.0.transformer_blocks.0.ff.net.2"),
    ("unet", "up_blocks.3.attentions.2.proj_out"),
    ("text_encoder", "text_model.encoder.layers.0.self_attn.q_proj"),
    ("text_encoder", "text_model.encoder.layers.2.mlp.fc1"),
]
RANK, ALPHA = 4, 2.0
# LoKr layouts per module index: default = w1 full + w2 low-rank (lokr_w2_a/b)
LOKR_BOTH_FULL = {4, 7}       # lokr_w1 + lokr_w2 full: scale is 1 whatever `alpha` says
LOKR_BOTH_LOWRANK = {5}       # lokr_w1_a/b + lokr_w2_a/b (decompose_both), rank 2


def factorization(n):
    """LyCORIS' own factorization(dim, -1): the divisor pair (m, n/m), m <= n/m, closest to sqrt(n)."""
    from lycoris.functional.general import factorization as f

    return f(n, -1)


def _shape_info(mod):
    if isinstance(mod, torch.nn.Linear):
        return mod.out_features, mod.in_features, ()
    return mod.out_channels, mod.in_channels, tuple(mod.kernel_size)


def loha_tensors(g, mod, key):
    o, i, k = _shape_info(mod)
    flat_in = i * int(np.prod(k)) if k else i  # non-Tucker conv: [r, in*kh*kw]
    t = {f"{key}.hada_w1_a": torch.randn(o, RANK, generator=g) * 0.5,
         f"{key}.hada_w1_b": torch.randn(RANK, flat_in, generator=g) / float(np.sqrt(flat_in)),
         f"{key}.hada_w2_a": torch.randn(o, RANK, generator=g) * 0.5,
         f"{key}.hada_w2_b": torch.randn(RANK, flat_in, generator=g) / float(np.sqrt(flat_in)),
         f"{key}.alpha": torch.tensor(ALPHA)}
    return {n: v.half() for n, v in t.items()}  # F16 file, 0-d F16 alpha


def lokr_tensors(g, mod, key, idx):
    o, i, k = _shape_info(mod)
    (om, on), (im, inn) = factorization(o), factorization(i)
    kk = int(np.prod(k)) if k else 1
    t = {}
    if idx in LOKR_BOTH_LOWRANK:
        r = 2
        t[f"{key}.lokr_w1_a"] = torch.randn(om, r, generator=g) * 0.5
        t[f"{key}.lokr_w1_b"] = torch.randn(r, im, generator=g) * 0.5
    else:
        t[f"{key}.lokr_w1"] = torch.randn(om, im, generator=g) * 0.5
    if idx in LOKR_BOTH_FULL:
        t[f"{key}.lokr_w2"] = torch.randn(on, inn, *k, generator=g) / float(np.sqrt(inn * kk))
        t[f"{key}.alpha"] = torch.tensor(3.0)  # deliberately != rank: must be ignored (scale 1)
    else:
        r = 2 if idx in LOKR_BOTH_LOWRANK else RANK
        t[f"{key}.lokr_w2_a"] = torch.randn(on, r, generator=g) * 0.5
        t[f"{key}.lokr_w2_b"] = torch.randn(r, inn * kk, generator=g) / float(np.sqrt(inn * kk))  # conv: flattened
        t[f"{key}.alpha"] = torch.tensor(ALPHA)
    return t  # F32 file


def loha_rule(t, key, shape):
    f = {n: v.double() for n, v in t.items()}
    r = f[f"{key}.hada_w1_b"].shape[0]
    d = (f[f"{key}.hada_w1_a"] @ f[f"{key}.hada_w1_b"]) * (f[f"{key}.hada_w2_a"] @ f[f"{key}.hada_w2_b"])
    return d.reshape(shape) * (float(f[f"{key}.alpha"]) / r)


def lokr_rule(t, key, shape):
    f = {n: v.double() for n, v in t.items()}
    g = lambda n: f.get(f"{key}.{n}")  # noqa: E731
    w1 = g("lokr_w1") if g("lokr_w1") is not None else g("lokr_w1_a") @ g("lokr_w1_b")
    if g("lokr_w2") is not None:
        w2 = g("lokr_w2")
    else:
        w2 = g("lokr_w2_a") @ g("lokr_w2_b")
        if len(shape) == 4:
            w2 = w2.reshape(w2.shape[0], -1, *shape[2:])
    if w2.ndim == 4:
        w1 = w1[:, :, None, None]
    factorised = g("lokr_w1_b") if g("lokr_w1_b") is not None else g("lokr_w2_b")
    scale = 1.0 if factorised is None else float(g("alpha")) / factorised.shape[0]
    return torch.kron(w1, w2).reshape(shape) * scale


def lycoris_delta(kind, t, key, shape):
    """The reference: lycoris.functional (what LyCORIS / sd-webui use to rebuild the weights)."""
    from lycoris.functional import loha as F_loha, lokr as F_lokr

    f = {n: v.float() for n, v in t.items()}
    if kind == "loha":
        r = f[f"{key}.hada_w1_b"].shape[0]
        dw = F_loha.diff_weight(f[f"{key}.hada_w1_b"], f[f"{key}.hada_w1_a"], f[f"{key}.hada_w2_b"],
                                f[f"{key}.hada_w2_a"], None, None, gamma=torch.tensor(float(f[f"{key}.alpha"]) / r))
    else:
        g = lambda n: f.get(f"{key}.{n}")  # noqa: E731
        dw = F_lokr.diff_weight(g("lokr_w1"), g("lokr_w1_a"), g("lokr_w1_b"), g("lokr_w2"), g("lokr_w2_a"),
                                g("lokr_w2_b"), None, gamma=float(g("alpha")))  # divides by the rank itself
    return dw.reshape(shape)


def make_lycoris(d, unet, te, table, base, scale, diffusers_dir):
    inv = {v: k for k, v in table.items()}
    g = torch.Generator().manual_seed(SEED + 20)
    files = {"loha": {}, "lokr": {}}
    per_module = []
    for idx, (comp, path) in enumerate(MODULES):
        mod = get_module(unet if comp == "unet" else te, path)
        key = inv[(comp, path)]
        files["loha"].update(loha_tensors(g, mod, key))
        files["lokr"].update(lokr_tensors(g, mod, key, idx))
        per_module.append((comp, path, key, tuple(mod.weight.shape)))
    save_st(d / "loha.safetensors", files["loha"], {"ss_network_module": "lycoris.kohya", "ss_network_dim": str(RANK),
                                                    "ss_network_alpha": str(ALPHA),
                                                    "ss_network_args": '{"algo": "loha"}'})
    save_st(d / "lokr.safetensors", files["lokr"], {"ss_network_module": "lycoris.kohya", "ss_network_dim": str(RANK),
                                                    "ss_network_alpha": str(ALPHA),
                                                    "ss_network_args": '{"algo": "lokr"}'})
    merged, meta = {}, {}
    for kind in ("loha", "lokr"):
        t = files[kind]
        md = 0.0
        for comp, path, key, shape in per_module:
            w = base[f"{comp}.{path}.weight"]
            ref = (w.float() + scale * lycoris_delta(kind, t, key, shape)).float()
            rule = (w.double() + scale * (loha_rule if kind == "loha" else lokr_rule)(t, key, shape)).float()
            md = max(md, max_abs_diff(ref, rule))
            merged[f"{kind}/{comp}.{path}.weight"] = ref
        meta[kind] = {"file": f"{kind}.safetensors", "n_modules": len(per_module),
                      "n_conv3x3": sum(1 for m in per_module if len(m[3]) == 4 and m[3][-1] == 3),
                      "via": f"W + {scale} * lycoris.functional.{kind}.diff_weight (f32)",
                      "max_abs_diff_rule_vs_lycoris": md, "diffusers_load_lora_weights": _diffusers_refuses(
                          diffusers_dir, d, f"{kind}.safetensors"),
                      "modules": [f"{c}.{p}" for c, p, _, _ in per_module]}
        assert md < 1e-5, (kind, md)
    meta["lokr"]["layouts"] = {"w1 full + w2_a/w2_b (scale alpha/r)": "default",
                               "w1 + w2 full (scale 1; stored alpha 3.0 ignored)": [MODULES[i][1] for i in sorted(LOKR_BOTH_FULL)],
                               "w1_a/w1_b + w2_a/w2_b rank 2 (scale alpha/2)": [MODULES[i][1] for i in sorted(LOKR_BOTH_LOWRANK)]}
    meta["loha"]["dtype"] = "F16 (alpha 0-d F16)"
    meta["lokr"]["dtype"] = "F32"
    return merged, meta


def _diffusers_refuses(diffusers_dir, d, name):
    from tiny_model import load_pipeline

    p = load_pipeline(diffusers_dir)
    try:
        p.load_lora_weights(str(d), weight_name=name)
        return "loaded (unexpected)"
    except Exception as e:  # noqa: BLE001 - we record the refusal
        return f"refused: {type(e).__name__}: {str(e).splitlines()[0][:160]}"
