"""Generation oracles for the tiny pipeline (tests/fixtures/tiny_sd/oracle/).

Scope: the hand-written txt2img loop (tokenize -> CLIP -> [uncond, cond] -> scale_model_input -> UNet -> CFG ->
scheduler.step -> VAE decode) for DDIM, Euler-ancestral and DPM++ 2M Karras, each checked against the pipeline's
own __call__; clip-skip-2 embeddings; standalone UNet forward / VAE decode / VAE encode; everything in one
`oracle.safetensors`; and `scheduler_tables.json` (timesteps, sigmas, alpha-derived values for 4/20/35 steps).
"""
from pathlib import Path

import numpy as np
import torch

from common import (GUIDANCE, HEIGHT, MAX_LEN, NEGATIVE, PROMPT, SD15_SCHEDULER_CONFIG, SEED, STEPS, WIDTH,
                    max_abs_diff, save_st, write_json)

SCHEDULERS = ("ddim", "euler_a", "dpmpp_2m_karras")
TABLE_STEPS = (4, 20, 35)  # 35 = the reference Stylus setting
EULER_A_SEED = SEED + 7
UNET_T = 500


def make_scheduler(name):
    from diffusers import DDIMScheduler, DPMSolverMultistepScheduler, EulerAncestralDiscreteScheduler

    cfg = dict(SD15_SCHEDULER_CONFIG)
    if name == "ddim":  # eta = 0 at step time; clip_sample must be False explicitly (DDIM's default is True)
        return DDIMScheduler.from_config(cfg, clip_sample=False)
    if name == "euler_a":
        return EulerAncestralDiscreteScheduler.from_config(cfg)
    if name == "dpmpp_2m_karras":
        return DPMSolverMultistepScheduler.from_config(cfg, algorithm_type="dpmsolver++", solver_order=2,
                                                       use_karras_sigmas=True)
    raise KeyError(name)


def encode(pipe, prompts, clip_skip=None):
    """Token ids [B,77] and CLIP embeddings; clip_skip=N -> final_layer_norm(hidden_states[-(N+1)]).

    (diffusers 0.42.1's own clip_skip path crashes on transformers 5: `text_encoder.text_model` is gone.)"""
    ids = pipe.tokenizer(prompts, padding="max_length", max_length=MAX_LEN, truncation=True,
                         return_tensors="pt").input_ids
    with torch.no_grad():
        o = pipe.text_encoder(ids, output_hidden_states=True)
        if clip_skip is None:
            return ids, o[0]
        te = pipe.text_encoder
        ln = te.text_model.final_layer_norm if hasattr(te, "text_model") else te.final_layer_norm
        return ids, ln(o.hidden_states[-(clip_skip + 1)])


def init_latents():
    g = torch.Generator().manual_seed(SEED + 100)
    return torch.randn((1, 4, HEIGHT // 8, WIDTH // 8), generator=g, dtype=torch.float32)


def to_uint8(decoded):
    x = (decoded / 2 + 0.5).clamp(0, 1)
    return (x.permute(0, 2, 3, 1) * 255).round().to(torch.uint8)


def run_loop(pipe, sched_name, latents0, emb, generator=None):
    """The 4-step CFG loop written out by hand; returns {name: tensor} (no prefix)."""
    from diffusers.utils.torch_utils import randn_tensor

    sched = make_scheduler(sched_name)
    sched.set_timesteps(STEPS)
    rec = {"timesteps": sched.timesteps.to(torch.float32)}
    if getattr(sched, "sigmas", None) is not None:
        rec["sigmas"] = sched.sigmas.to(torch.float32)
    lat = latents0 * sched.init_noise_sigma
    rec["latents_0"] = lat.clone()
    with torch.no_grad():
        for i, t in enumerate(sched.timesteps):
            x = sched.scale_model_input(torch.cat([lat] * 2), t)
            eps = pipe.unet(x, t, encoder_hidden_states=emb).sample
            eu, ec = eps.chunk(2)
            guided = eu + GUIDANCE * (ec - eu)
            kw = {}
            if generator is not None:
                # record the noise EulerAncestral's step draws: randn_tensor(model_output.shape, generator, dtype)
                state = generator.get_state()
                rec[f"step{i}_noise"] = randn_tensor(guided.shape, generator=generator, dtype=guided.dtype)
                generator.set_state(state)
                kw["generator"] = generator
            lat = sched.step(guided, t, lat, **kw).prev_sample
            rec[f"step{i}_model_input"] = x
            rec[f"step{i}_eps_uncond"] = eu
            rec[f"step{i}_eps_text"] = ec
            rec[f"step{i}_eps_guided"] = guided
            rec[f"latents_{i + 1}"] = lat.clone()
        dec = pipe.vae.decode(lat / pipe.vae.config.scaling_factor).sample
    rec["decoded"] = dec
    rec["image_uint8"] = to_uint8(dec)
    return rec, float(sched.init_noise_sigma)


def replay_euler_a(rec):
    """Re-compute the Euler-ancestral trajectory from the recorded guided eps and noise, in f32 with diffusers'
    operation order (x0 = x - s*eps; d = (x - x0)/s; x += d*(s_down - s); x += noise*s_up)."""
    sig = rec["sigmas"]
    lat = rec["latents_0"].clone()
    for i in range(STEPS):
        s_from, s_to = sig[i], sig[i + 1]
        s_up = (s_to ** 2 * (s_from ** 2 - s_to ** 2) / s_from ** 2) ** 0.5
        s_down = (s_to ** 2 - s_up ** 2) ** 0.5
        x0 = lat - s_from * rec[f"step{i}_eps_guided"]
        d = (lat - x0) / s_from
        lat = lat + d * (s_down - s_from)
        lat = lat + rec[f"step{i}_noise"] * s_up
    return max_abs_diff(lat, rec[f"latents_{STEPS}"])


def pipeline_check(pipe, sched_name, latents0, rec):
    """pipe(...) with the same latents (and generator) must reproduce the manual loop."""
    p = pipe.__class__(**{**pipe.components, "scheduler": make_scheduler(sched_name)})
    p.set_progress_bar_config(disable=True)
    res = {}
    for out_type in ("latent", "np"):
        g = torch.Generator().manual_seed(EULER_A_SEED) if sched_name == "euler_a" else None
        r = p(PROMPT, negative_prompt=NEGATIVE, num_inference_steps=STEPS, guidance_scale=GUIDANCE,
              latents=latents0.clone(), height=HEIGHT, width=WIDTH, output_type=out_type, generator=g)
        if out_type == "latent":
            res["final_latents_max_abs_diff"] = max_abs_diff(r.images, rec[f"latents_{STEPS}"])
        else:
            img01 = (rec["decoded"] / 2 + 0.5).clamp(0, 1).permute(0, 2, 3, 1)
            res["image01_max_abs_diff"] = max_abs_diff(torch.from_numpy(r.images), img01)
    return res


def generate(out, pipe, check_pipeline=True):
    d = Path(out) / "tiny_sd" / "oracle"
    d.mkdir(parents=True, exist_ok=True)
    lat0 = init_latents()
    ids, emb = encode(pipe, [NEGATIVE, PROMPT])
    _, emb_cs2 = encode(pipe, [NEGATIVE, PROMPT], clip_skip=2)
    tensors = {"input_ids": ids.to(torch.int64), "text_embeddings": emb, "text_embeddings_clip_skip2": emb_cs2,
               "init_latents": lat0}
    meta = {}
    for s in SCHEDULERS:
        g = torch.Generator().manual_seed(EULER_A_SEED) if s == "euler_a" else None
        rec, ins = run_loop(pipe, s, lat0, emb, generator=g)
        for k, v in rec.items():
            tensors[f"{s}.{k}"] = v
        m = {"init_noise_sigma": ins, "timesteps": rec["timesteps"].tolist(),
             "sigmas": rec["sigmas"].tolist() if "sigmas" in rec else None,
             "final_latents_absmean": float(rec[f"latents_{STEPS}"].abs().mean()),
             "scheduler_config": {k: v for k, v in sorted(make_scheduler(s).config.items())
                                  if not k.startswith("_")}}
        if s == "euler_a":
            m["generator_seed"] = EULER_A_SEED
            m["replay_from_recorded_noise_max_abs_diff"] = replay_euler_a(rec)
        if check_pipeline:
            m["pipeline_vs_manual"] = pipeline_check(pipe, s, lat0, rec)
        meta[s] = m
    tensors.update(standalone(pipe, emb))
    save_st(d / "oracle.safetensors", tensors)
    write_json(d / "scheduler_tables.json", scheduler_tables())
    return meta, {k: [list(v.shape), str(v.dtype).replace("torch.", "")] for k, v in sorted(tensors.items())}


def unet_forward_inputs(emb):
    g = torch.Generator().manual_seed(SEED + 200)
    sample = torch.randn((1, 4, HEIGHT // 8, WIDTH // 8), generator=g)
    return sample, torch.tensor([UNET_T], dtype=torch.int64), emb[1:2].clone()


def unet_forward(unet, emb):
    sample, t, ctx = unet_forward_inputs(emb)
    with torch.no_grad():
        out = unet(sample, t, encoder_hidden_states=ctx).sample
    return {"unet_forward.sample": sample, "unet_forward.timestep": t, "unet_forward.encoder_hidden_states": ctx,
            "unet_forward.out": out}


def standalone(pipe, emb):
    res = unet_forward(pipe.unet, emb)
    g = torch.Generator().manual_seed(SEED + 300)
    z = torch.randn((1, 4, HEIGHT // 8, WIDTH // 8), generator=g)
    img = torch.rand((1, 3, HEIGHT, WIDTH), generator=g) * 2 - 1
    with torch.no_grad():
        dec = pipe.vae.decode(z).sample  # raw latent in, no 1/0.18215 scaling
        dist = pipe.vae.encode(img).latent_dist
    res.update({"vae_decode.latent": z, "vae_decode.out": dec, "vae_encode.image": img,
                "vae_encode.mean": dist.mean, "vae_encode.logvar": dist.logvar})
    return res


def scheduler_tables():
    """Timesteps / sigmas / alpha-derived values for each scheduler and step count, so Rust can check its tables."""
    base = make_scheduler("ddim")
    ac = base.alphas_cumprod  # f32, as diffusers computes it
    out = {"num_train_timesteps": 1000, "beta_schedule": "scaled_linear (linspace(sqrt(b0), sqrt(b1), 1000, f32)^2)",
           "alphas_cumprod_f32": ac.tolist(), "betas_f32": base.betas.tolist(), "schedulers": {}}
    for name in SCHEDULERS:
        per = {}
        for n in TABLE_STEPS:
            s = make_scheduler(name)
            s.set_timesteps(n)
            ts = s.timesteps
            row = {"timesteps": [float(t) for t in ts], "init_noise_sigma": float(s.init_noise_sigma)}
            if name == "ddim":
                step = 1000 // n
                row["alpha_prod_t"] = [float(ac[int(t)]) for t in ts]
                row["alpha_prod_t_prev"] = [float(ac[int(t) - step]) if int(t) - step >= 0 else
                                            float(s.final_alpha_cumprod) for t in ts]
            else:
                sig = s.sigmas.to(torch.float32)
                row["sigmas"] = sig.tolist()
            if name == "euler_a":
                sd = sig.double()
                up = [float((sd[i + 1] ** 2 * (sd[i] ** 2 - sd[i + 1] ** 2) / sd[i] ** 2) ** 0.5) for i in range(n)]
                row["sigma_up"] = up
                row["sigma_down"] = [float((sd[i + 1] ** 2 - up[i] ** 2) ** 0.5) for i in range(n)]
                row["scale_model_input_divisor"] = [float((sd[i] ** 2 + 1) ** 0.5) for i in range(n)]
            if name == "dpmpp_2m_karras":
                sd = sig.double()
                a_t = 1 / (sd ** 2 + 1) ** 0.5
                s_t = sd * a_t
                row["alpha_t"] = a_t.tolist()
                row["sigma_t"] = s_t.tolist()
                row["lambda_t"] = [float(torch.log(a) - torch.log(b)) if b > 0 else None for a, b in zip(a_t, s_t)]
                row["solver_order_per_step"] = [1 if (i == 0 or i == n - 1) else 2 for i in range(n)]
            per[str(n)] = row
        out["schedulers"][name] = per
    out["notes"] = {
        "ddim": "leading spacing + steps_offset 1 (no timestep_spacing key in SD1.5's config); eta 0; "
                "clip_sample False; set_alpha_to_one False -> final alpha_prod = alphas_cumprod[0]",
        "euler_a": "linspace spacing, sigmas interpolated from sqrt((1-ac)/ac) over t, final sigma 0; "
                   "init_noise_sigma = sigma_max (linspace spacing); model input = x / sqrt(sigma^2+1)",
        "dpmpp_2m_karras": "karras sigmas (rho 7) between sigma_min/max of the training sigmas; timesteps = "
                           "round(interpolated t of each sigma); final sigma 0 (final_sigmas_type zero) -> last "
                           "step first order; first step first order",
    }
    return out
