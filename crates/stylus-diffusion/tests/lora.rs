//! LoRA adapters on the burn networks, against the committed diffusers/peft/LyCORIS oracle
//! (`tests/fixtures/lora/`, written by `tests/reference/loras.py`):
//! * kohya LoRA at scale 0.7: CLIP embeddings and one UNet forward equal diffusers'
//!   `load_lora_weights` + `fuse_lora(lora_scale=0.7)` (abs 1e-4 / rel 1e-4 of max |ε|);
//! * every format (kohya, LoCon with 3×3 convs, PEFT with and without alpha, LoHa, LoKr): the
//!   weights the engine uses equal the fused weights of the oracle (abs 2e-6);
//! * per-image masks in one batch equal separate runs per mask (rel 1e-4), in the text encoder, the
//!   UNet and a whole guided generation;
//! * switching sets never modifies the base: clearing gives the base output bit for bit, and a
//!   switch uploads only adapter factors.

mod common;

use common::fixture;
use stylus_diffusion::attention::AttentionConfig;
use stylus_diffusion::nn::{from_vec, to_vec};
use stylus_diffusion::{device_from_env, Checkpoint, Error, GenerateRequest, ModelFiles, Pipeline};
use stylus_lora::{LoraFile, ModuleKey, ModuleTable};
use stylus_sd::checkpoint::{parse, to_f32};
use stylus_sd::{Component, SchedulerKind, SdConfig};

fn pipeline() -> Pipeline {
    let model = fixture("tiny_sd/ldm/tiny_sd15_fp16.safetensors");
    let tok = fixture("tokenizer/tokenizer.json");
    Pipeline::load(&SdConfig::tiny(), &ModelFiles { checkpoint: Checkpoint::SingleFile(&model), tokenizer_json: &tok }, &device_from_env().unwrap()).unwrap()
}

fn lora(file: &str) -> LoraFile {
    LoraFile::parse(&fixture(&format!("lora/{file}")), &ModuleTable::new(&SdConfig::tiny()).unwrap()).unwrap()
}

/// `(name, key) → f32 values` of a safetensors fixture.
fn tensors(rel: &str) -> Vec<(String, Vec<f32>)> {
    let bytes = fixture(rel);
    let st = parse(&bytes).unwrap();
    let values = |v: &safetensors::tensor::TensorView<'_>| match v.dtype() {
        safetensors::Dtype::I64 => v.data().chunks_exact(8).map(|c| i64::from_le_bytes(c.try_into().unwrap()) as f32).collect(),
        _ => to_f32(v).unwrap(),
    };
    let mut out: Vec<_> = st.tensors().into_iter().map(|(k, v)| (k.clone(), values(&v))).collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

fn get(ts: &[(String, Vec<f32>)], key: &str) -> Vec<f32> {
    ts.iter().find(|(k, _)| k == key).unwrap_or_else(|| panic!("no tensor {key}")).1.clone()
}

fn max_abs(v: &[f32]) -> f32 {
    v.iter().fold(0.0, |m, x| m.max(x.abs()))
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).fold(0.0, |m, (x, y)| m.max((x - y).abs()))
}

fn check(what: &str, got: &[f32], want: &[f32], tol: f32) {
    let d = max_diff(got, want);
    println!("{what}: max |diff| {d:.3e} (tolerance {tol:.1e}, max |ref| {:.3e})", max_abs(want));
    assert!(d <= tol, "{what}: max |diff| {d} > {tol}");
}

fn oracle_ids() -> Vec<u32> {
    let bytes = fixture("tiny_sd/oracle/oracle.safetensors");
    let st = parse(&bytes).unwrap();
    let t = st.tensor("input_ids").unwrap();
    t.data().chunks_exact(8).map(|c| i64::from_le_bytes(c.try_into().unwrap()) as u32).collect()
}

/// UNet ε for the fixture's sample/timestep/context.
fn unet_out(pipe: &Pipeline, fwd: &[(String, Vec<f32>)]) -> Vec<f32> {
    let dev = device_from_env().unwrap();
    let x = from_vec(get(fwd, "sample"), [1, 4, 8, 8], &dev).unwrap();
    let ctx = from_vec(get(fwd, "encoder_hidden_states"), [1, 77, 8], &dev).unwrap();
    to_vec(pipe.unet.forward(x, &get(fwd, "timestep"), &ctx, &AttentionConfig::default()).unwrap()).unwrap()
}

#[test]
fn kohya_lora_forward_matches_diffusers_fuse() {
    let mut pipe = pipeline();
    let fwd = tensors("lora/lora_unet_forward.safetensors");
    let attn = AttentionConfig::default();
    let ids = oracle_ids();
    let base_out = unet_out(&pipe, &fwd);
    let base_emb = to_vec(pipe.text_encoder.forward(&ids, 2, 0, &attn).unwrap()).unwrap();

    let kohya = lora("kohya_lora.safetensors");
    let report = pipe.set_adapters(&[(&kohya, 0.7)]).unwrap();
    assert_eq!((report.modules, report.per_image), (210, false), "192 UNet + 18 text-encoder layers");
    let emb = to_vec(pipe.text_encoder.forward(&ids, 2, 0, &attn).unwrap()).unwrap();
    check("kohya 0.7: text_embeddings (abs 1e-4)", &emb, &get(&fwd, "text_embeddings"), 1e-4);
    let out = unet_out(&pipe, &fwd);
    let want = get(&fwd, "out");
    check("kohya 0.7: unet out (rel 1e-4)", &out, &want, 1e-4 * max_abs(&want));
    // The adapter visibly changes both networks (so the checks above can fail).
    assert!(max_diff(&base_emb, &emb) > 1e-2 && max_diff(&base_out, &out) > 1e-2, "{} {}", max_diff(&base_emb, &emb), max_diff(&base_out, &out));

    pipe.clear_adapters();
    assert_eq!(unet_out(&pipe, &fwd), base_out, "clearing restores the base bit for bit");
    assert_eq!(to_vec(pipe.text_encoder.forward(&ids, 2, 0, &attn).unwrap()).unwrap(), base_emb);
}

#[test]
fn every_format_merges_like_the_reference() {
    let mut pipe = pipeline();
    let oracle = tensors("lora/merged_oracle.safetensors");
    let cases = [
        ("kohya", "kohya_lora.safetensors"),
        ("locon", "kohya_locon.safetensors"),
        ("peft", "peft_lora.safetensors"),
        ("peft_noalpha", "peft_lora_noalpha.safetensors"),
        ("loha", "loha.safetensors"),
        ("lokr", "lokr.safetensors"),
    ];
    let untouched = ModuleKey::new(Component::Unet, "conv_in");
    let base_conv_in = pipe.lora().effective_weight(&untouched).unwrap();
    for (case, file) in cases {
        let f = lora(file);
        let report = pipe.set_adapters(&[(&f, 0.7)]).unwrap();
        let mut worst = 0f32;
        let mut n = 0;
        for (key, want) in oracle.iter().filter(|(k, _)| k.starts_with(&format!("{case}/"))) {
            let name = &key[case.len() + 1..];
            let (component, path) = match name.split_once('.') {
                Some(("unet", p)) => (Component::Unet, p),
                Some(("text_encoder", p)) => (Component::TextEncoder, p),
                _ => panic!("oracle key {key}"),
            };
            let module = ModuleKey::new(component, path.strip_suffix(".weight").unwrap());
            let got = pipe.lora().effective_weight(&module).unwrap();
            worst = worst.max(max_diff(&got, want));
            n += 1;
        }
        println!("{case}: {n} fused weights, max |diff| {worst:.3e} (tolerance 2e-6)");
        assert_eq!(report.modules, n, "{case}: the engine patches exactly the modules diffusers/LyCORIS change");
        assert!(n > 0 && worst <= 2e-6, "{case}: max |diff| {worst}");
        assert_eq!(pipe.lora().effective_weight(&untouched).unwrap(), base_conv_in, "{case}: untouched layer");
    }
}

/// Three adapters (low-rank linear, LoCon 3×3 conv, dense LoHa), three images with different masks.
fn mixed() -> (Vec<LoraFile>, Vec<Vec<f32>>) {
    let files = vec![lora("kohya_lora.safetensors"), lora("kohya_locon.safetensors"), lora("loha.safetensors")];
    let weights = vec![vec![0.7, 0.0, 0.5], vec![0.0, 0.8, 0.0], vec![0.3, 0.3, 0.3]];
    (files, weights)
}

#[test]
fn per_image_masks_in_one_batch_equal_separate_runs() {
    let mut pipe = pipeline();
    let dev = device_from_env().unwrap();
    let attn = AttentionConfig::default();
    let fwd = tensors("lora/lora_unet_forward.safetensors");
    let (files, weights) = mixed();
    let refs: Vec<&LoraFile> = files.iter().collect();
    let sample = get(&fwd, "sample");
    let ctx1 = get(&fwd, "encoder_hidden_states");
    // Three different samples; rows 3..6 repeat them (the CFG layout `[uncond…, cond…]`).
    let samples: Vec<Vec<f32>> = (0..3).map(|i| sample.iter().map(|v| v * (1.0 + 0.25 * i as f32)).collect()).collect();
    let batch6: Vec<f32> = samples.concat().repeat(2);
    let ids = oracle_ids();
    let prompt_row = ids[77..].to_vec();

    let report = pipe.set_adapters_per_image(&refs, &weights).unwrap();
    assert!(report.per_image && report.modules > 0);
    let t = get(&fwd, "timestep");
    let x = from_vec(batch6, [6, 4, 8, 8], &dev).unwrap();
    let ctx = from_vec(ctx1.repeat(6), [6, 77, 8], &dev).unwrap();
    let together = to_vec(pipe.unet.forward(x, &t, &ctx, &attn).unwrap()).unwrap();
    let emb_together = to_vec(pipe.text_encoder.forward(&prompt_row.repeat(3), 3, 0, &attn).unwrap()).unwrap();

    let per = 4 * 8 * 8;
    for (i, w) in weights.iter().enumerate() {
        let set: Vec<(&LoraFile, f32)> = refs.iter().copied().zip(w.iter().copied()).collect();
        pipe.set_adapters(&set).unwrap();
        let x = from_vec(samples[i].clone(), [1, 4, 8, 8], &dev).unwrap();
        let ctx = from_vec(ctx1.clone(), [1, 77, 8], &dev).unwrap();
        let alone = to_vec(pipe.unet.forward(x, &t, &ctx, &attn).unwrap()).unwrap();
        let tol = 1e-4 * max_abs(&alone);
        check(&format!("image {i}: batched unet row (rel 1e-4)"), &together[i * per..(i + 1) * per], &alone, tol);
        check(&format!("image {i}: batched unet CFG row (rel 1e-4)"), &together[(i + 3) * per..(i + 4) * per], &alone, tol);
        let emb = to_vec(pipe.text_encoder.forward(&prompt_row, 1, 0, &attn).unwrap()).unwrap();
        check(&format!("image {i}: batched text embeddings (abs 1e-5)"), &emb_together[i * 77 * 8..(i + 1) * 77 * 8], &emb, 1e-5);
    }
}

#[test]
fn per_image_generation_equals_one_generation_per_mask() {
    let mut pipe = pipeline();
    let (files, weights) = mixed();
    let refs: Vec<&LoraFile> = files.iter().collect();
    let req = |seed, batch| GenerateRequest {
        prompt: "a red fox".into(),
        negative: "blurry".into(),
        steps: 2,
        width: 64,
        height: 64,
        seed,
        batch,
        scheduler: SchedulerKind::DpmPp2mKarras,
        ..Default::default()
    };
    pipe.set_adapters_per_image(&refs, &weights).unwrap();
    let together = pipe.generate_with(&req(5, 3), &mut stylus_diffusion::SeededNoise { seed: 5 }, &mut |_| {}).unwrap();
    let err = pipe.generate(&req(5, 2), &mut |_| {}).unwrap_err();
    assert!(matches!(err, Error::Request(_)) && err.to_string().contains("3 images"), "{err}");

    let per = 4 * 8 * 8;
    let mut alone_latents = Vec::new();
    for (i, w) in weights.iter().enumerate() {
        let set: Vec<(&LoraFile, f32)> = refs.iter().copied().zip(w.iter().copied()).collect();
        pipe.set_adapters(&set).unwrap();
        let one = pipe.generate_with(&req(5 + i as u64, 1), &mut stylus_diffusion::SeededNoise { seed: 5 + i as u64 }, &mut |_| {}).unwrap();
        let lat = &together.latents[i * per..(i + 1) * per];
        check(&format!("generation image {i}: latents (rel 1e-3)"), lat, &one.latents, 1e-3 * max_abs(&one.latents));
        let px = together.images[i].rgb.iter().zip(&one.images[0].rgb).map(|(&a, &b)| (a as i16 - b as i16).abs()).max().unwrap();
        assert!(px <= 2, "image {i}: pixels differ by {px}");
        alone_latents.push(one.latents);
    }
    assert!(max_diff(&alone_latents[0], &alone_latents[1]) > 1e-3, "different masks give different images");
}

#[test]
fn switching_uploads_only_adapter_factors_and_restores_exactly() {
    let mut pipe = pipeline();
    let fwd = tensors("lora/lora_unet_forward.safetensors");
    let base = unet_out(&pipe, &fwd);
    let kohya = lora("kohya_lora.safetensors");
    let locon = lora("kohya_locon.safetensors");
    // Bytes of the adapters' own factors (f32 on the device), counted from the parsed files.
    let factor_bytes =
        |f: &LoraFile| -> u64 { f.modules().map(|(_, m)| m.low_rank().map(|lr| 4 * (lr.up.data.len() + lr.down.data.len()) as u64).unwrap()).sum() };
    let before = stylus_diffusion::nn::uploaded_bytes();
    let a = pipe.set_adapters(&[(&kohya, 0.8)]).unwrap();
    let b = pipe.set_adapters(&[(&locon, 0.6), (&kohya, 0.2)]).unwrap();
    let uploaded = stylus_diffusion::nn::uploaded_bytes() - before;
    assert_eq!(a.uploaded_bytes, factor_bytes(&kohya));
    assert_eq!(b.uploaded_bytes, factor_bytes(&locon) + factor_bytes(&kohya));
    assert_eq!(uploaded, a.uploaded_bytes + b.uploaded_bytes, "nothing but factors crossed to the device (no base weights)");
    assert_ne!(unet_out(&pipe, &fwd), base);
    pipe.set_adapters(&[]).unwrap();
    assert_eq!(unet_out(&pipe, &fwd), base, "an empty set is the base, bit for bit");
}

#[test]
fn bad_adapter_input_is_a_typed_error_and_changes_nothing() {
    let mut pipe = pipeline();
    let fwd = tensors("lora/lora_unet_forward.safetensors");
    let kohya = lora("kohya_lora.safetensors");
    pipe.set_adapters(&[(&kohya, 0.7)]).unwrap();
    let patched = unet_out(&pipe, &fwd);
    let e = pipe.set_adapters(&[(&kohya, f32::NAN)]).unwrap_err();
    assert!(matches!(e, Error::Lora(stylus_lora::Error::BadWeight(_))), "{e}");
    let e = pipe.set_adapters_per_image(&[&kohya], &[vec![0.5], vec![0.1, 0.2]]).unwrap_err();
    assert!(e.to_string().contains("image 1 has 2 adapter weights for 1 adapters"), "{e}");
    let e = pipe.set_adapters_per_image(&[&kohya], &[]).unwrap_err();
    assert!(matches!(e, Error::Request(_)), "{e}");
    assert_eq!(unet_out(&pipe, &fwd), patched, "a refused set leaves the previous one in place");
}
