#!/usr/bin/env python3
"""Entry point of the project's seeded, offline PyTorch reference fixture generator.

Scope: runs the generator stages (tokenizer, tiny pipeline + ldm export, generation oracles, LoRA files and
merged-weight oracles, MiniLM embeddings) into an output folder, normalises every safetensors header, writes the
per-area meta.json files and the SHA256SUMS list. See tests/reference/README.md.

    python tests/reference/make_fixtures.py [--out DIR] [--only tokenizer,tiny,ldm,oracle,lora,vae_tiled,minilm]
"""
import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402  (sets the offline / thread / determinism environment first)
from common import NEGATIVE, PROMPT, sha256_file, versions, write_json  # noqa: E402

STAGES = ("tokenizer", "tiny", "ldm", "oracle", "lora", "vae_tiled", "minilm")
TOLERANCES = {
    "note": "suggested tolerances for an fp32 Rust implementation against these fp32 oracles",
    "text_embeddings": "abs 1e-4 (or rel 1e-4)",
    "unet_eps_per_step": "rel 1e-4 of max |eps|",
    "latents_after_4_steps": "rel 1e-3 of max |latents| (random weights do not denoise: latents grow)",
    "decoded": "abs 1e-3",
    "image_uint8": "+-1 (rounding at .5 boundaries), +-2 max",
    "scheduler_tables": "abs 1e-6 (values are f32 as diffusers computes them)",
    "merged_lora_weights": "abs 1e-6",
    "fp16 tiny weights": "exact: every weight is on the fp16 grid, f16 -> f32 is lossless",
}


def normalise_safetensors(path):
    """Rewrite the JSON header with sorted keys (tensors and __metadata__) so files are byte-identical across runs
    (safetensors' writer keeps metadata in a hash map). Tensor data and offsets are untouched."""
    raw = Path(path).read_bytes()
    n = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8:8 + n])
    if "__metadata__" in header:
        header["__metadata__"] = {k: header["__metadata__"][k] for k in sorted(header["__metadata__"])}
    text = json.dumps(header, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()
    text += b" " * (-len(text) % 8)
    new = len(text).to_bytes(8, "little") + text + raw[8 + n:]
    if new != raw:
        Path(path).write_bytes(new)


def write_sha256sums(out):
    files = sorted(p for p in Path(out).rglob("*") if p.is_file() and p.name != "SHA256SUMS")
    lines = [f"{sha256_file(p)}  {p.relative_to(out).as_posix()}" for p in files]
    (Path(out) / "SHA256SUMS").write_text("\n".join(lines) + "\n")
    return len(lines)


def main():
    here = Path(__file__).resolve().parent
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=str(here.parent / "fixtures"), help="output folder (default tests/fixtures)")
    ap.add_argument("--only", default=",".join(STAGES), help="comma-separated subset of " + ",".join(STAGES))
    ap.add_argument("--skip-pipeline-check", action="store_true", help="don't re-run pipe(...) to check the loops")
    a = ap.parse_args()
    stages = [s for s in a.only.split(",") if s]
    bad = set(stages) - set(STAGES)
    if bad:
        ap.error(f"unknown stage(s) {sorted(bad)}")
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    vers = versions()
    t_all = time.perf_counter()
    timings, summary = {}, {}

    def stage(name, fn):
        t0 = time.perf_counter()
        summary[name] = fn()
        timings[name] = round(time.perf_counter() - t0, 1)
        print(f"[{name}] {timings[name]} s", flush=True)

    if "tokenizer" in stages:
        import tokenizer

        stage("tokenizer", lambda: tokenizer.make_tokenizer(out)[1])

    needs_models = set(stages) & {"tiny", "ldm", "oracle", "lora", "vae_tiled"}
    if needs_models:
        import tiny_model

        te, unet, vae = tiny_model.build_modules()
        ddir = out / "tiny_sd" / "diffusers"
        if "tiny" in stages or not (ddir / "model_index.json").exists():
            stage("tiny", lambda: str(tiny_model.save_diffusers(out, te, unet, vae)))
        pipe = tiny_model.load_pipeline(ddir)
        reload = tiny_model.check_reload(pipe, te, unet, vae)
        assert all(v["max_abs_diff"] == 0.0 and not v["missing"] for v in reload.values()), reload
        tiny_meta = {"configs": tiny_model.tiny_configs(), "reload_fp16_folder_vs_memory": reload,
                     "weights_init": "seeded per model (SEED+1 text encoder, +2 UNet, +3 VAE), sorted parameter "
                                     "names; weights N(0,1/fan_in), biases N(0,0.05^2), norm weights 1+N(0,0.1^2), "
                                     "embeddings N(0,0.25^2); all rounded to the fp16 grid",
                     "seed": common.SEED, "versions": vers}
        if "ldm" in stages:
            import ldm_export

            stage("ldm", lambda: ldm_export.export_ldm(out, te, unet, vae, ddir))
            tiny_meta["ldm_export"] = summary["ldm"]
        if "tiny" in stages or "ldm" in stages:
            old = out / "tiny_sd" / "meta.json"
            if "ldm" not in stages and old.exists():
                tiny_meta["ldm_export"] = json.loads(old.read_text()).get("ldm_export")
            write_json(out / "tiny_sd" / "meta.json", tiny_meta)
        if "oracle" in stages:
            import oracle

            def run_oracle():
                gen, tensors = oracle.generate(out, pipe, check_pipeline=not a.skip_pipeline_check)
                write_json(out / "tiny_sd" / "oracle" / "meta.json", {
                    "prompt": PROMPT, "negative_prompt": NEGATIVE, "guidance_scale": common.GUIDANCE,
                    "steps": common.STEPS, "height": common.HEIGHT, "width": common.WIDTH,
                    "init_latents": f"torch.randn((1,4,8,8), generator=torch.Generator().manual_seed({common.SEED + 100}))",
                    "unet_forward": f"sample = randn seed {common.SEED + 200}, timestep {oracle.UNET_T}, "
                                    "encoder_hidden_states = text_embeddings[1:2] (cond)",
                    "vae": f"decode: raw latent (no 1/0.18215), encode: uniform(-1,1) image; seed {common.SEED + 300}",
                    "schedulers": gen, "tensors": tensors, "tolerances": TOLERANCES, "versions": vers})
                return {s: gen[s].get("pipeline_vs_manual") for s in gen}

            stage("oracle", run_oracle)
        if "lora" in stages:
            import loras
            import oracle

            stage("lora", lambda: loras.make_loras(out, pipe, ddir, oracle.unet_forward,
                                                   lambda p: oracle.encode(p, [NEGATIVE, PROMPT])[1]))
        if "vae_tiled" in stages:
            import vae_tiled

            stage("vae_tiled", lambda: vae_tiled.make_vae_tiled(out, pipe))
    if "minilm" in stages:
        import minilm

        stage("minilm", lambda: minilm.make_minilm(out))

    for p in sorted(out.rglob("*.safetensors")):
        normalise_safetensors(p)
    for p in out.rglob("*"):
        if p.is_file():
            p.chmod(0o644)  # safetensors writes 0600
    n = write_sha256sums(out)
    print(json.dumps({"summary": summary, "timings_s": timings, "total_s": round(time.perf_counter() - t_all, 1),
                      "sha256sums_files": n}, indent=1, default=str, sort_keys=True))


if __name__ == "__main__":
    main()
