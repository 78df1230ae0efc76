//! Applying Stylus' adapters to the full-size SD1.5 UNet (random weights; speed does not depend on
//! the values) on burn's CPU backend: 5 kohya LoRAs of rank R on the 128 attention linears
//! (`attn1`/`attn2` `to_q`/`to_k`/`to_v`/`to_out.0`, what Civitai LoRAs mostly train), then a switch
//! to 5 other adapters, a per-image (masked) set and a restore. Reports the bytes each step sends
//! to the device and how many of them are base weights (goal 0).
//!
//! `cargo bench -p stylus-diffusion --bench lora_apply -- [--ranks 32,128] [--reps 3] [--device cpu|wgpu] [--dtype f32|f16]`
//! (`--features wgpu` for the GPU; the device script in benches/gpu/ runs it on a lent GPU) prints a
//! table and one `BENCH_JSON {…}` line; `benches/lora_apply.py` runs it next to the PyTorch
//! reference and writes BENCHMARKS.md.

use std::time::Instant;

use stylus_diffusion::device_named;
use stylus_diffusion::nn::uploaded_bytes;
use stylus_lora::{LoraFile, ModuleKey, ModuleTable};
use stylus_sd::{sd_params, Component, SdConfig};

mod common;
use common::{random_unet, set_dtype, Rng};

/// The 128 attention linears of SD1.5's UNet: (diffusers path, [out, in]).
fn attention_linears(cfg: &SdConfig) -> Vec<(String, Vec<usize>)> {
    let ends = [".to_q.weight", ".to_k.weight", ".to_v.weight", ".to_out.0.weight"];
    sd_params(cfg)
        .into_iter()
        .filter(|p| p.component == Component::Unet && p.path.contains(".transformer_blocks.") && ends.iter().any(|e| p.path.ends_with(e)))
        .map(|p| (p.path.trim_end_matches(".weight").to_string(), p.shape))
        .collect()
}

/// A kohya LoRA file (F16 factors, F32 alpha = rank / 2), as trainers write them.
fn kohya_file(modules: &[(String, Vec<usize>)], rank: usize, seed: u64) -> Vec<u8> {
    let mut rng = Rng(seed | 1);
    let mut data: Vec<(String, Vec<usize>, safetensors::Dtype, Vec<u8>)> = Vec::new();
    let f16 = |v: Vec<f32>| v.into_iter().flat_map(|x| half::f16::from_f32(x).to_le_bytes()).collect::<Vec<u8>>();
    for (path, shape) in modules {
        let name = format!("lora_unet_{}", path.replace('.', "_"));
        let (out, inp) = (shape[0], shape[1]);
        data.push((format!("{name}.lora_down.weight"), vec![rank, inp], safetensors::Dtype::F16, f16(rng.fill(rank * inp, 0.05))));
        data.push((format!("{name}.lora_up.weight"), vec![out, rank], safetensors::Dtype::F16, f16(rng.fill(out * rank, 0.05))));
        data.push((format!("{name}.alpha"), vec![], safetensors::Dtype::F32, (rank as f32 / 2.0).to_le_bytes().to_vec()));
    }
    let views: Vec<(String, safetensors::tensor::TensorView<'_>)> =
        data.iter().map(|(k, s, d, b)| (k.clone(), safetensors::tensor::TensorView::new(*d, s.clone(), b).expect("view"))).collect();
    safetensors::serialize(views, None).expect("serialize")
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// Milliseconds since `t`, after the device finished its queued work (GPU backends run async).
fn ms_synced(t: Instant, device: &stylus_diffusion::Device) -> f64 {
    device.sync().expect("device sync");
    t.elapsed().as_secs_f64() * 1e3
}

fn ms(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1e3
}

fn factor_bytes(files: &[&LoraFile]) -> u64 {
    files.iter().flat_map(|f| f.modules()).map(|(_, m)| m.low_rank().map_or(0, |lr| 4 * (lr.up.data.len() + lr.down.data.len()) as u64)).sum()
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg = |name: &str| args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned();
    let ranks: Vec<usize> = arg("--ranks").unwrap_or_else(|| "32,128".into()).split(',').filter_map(|r| r.parse().ok()).collect();
    let reps: usize = arg("--reps").and_then(|r| r.parse().ok()).unwrap_or(3).max(1);
    let device_name = arg("--device").unwrap_or_else(|| "cpu".into());
    let dtype = arg("--dtype").unwrap_or_else(|| "f32".into());
    let fail = |msg: String| -> ! {
        eprintln!("lora_apply: {msg}");
        std::process::exit(2);
    };
    let mut device = device_named(&device_name).unwrap_or_else(|e| fail(e.to_string()));
    set_dtype(&mut device, &device_name, &dtype).unwrap_or_else(|e| fail(e));
    let cfg = SdConfig::v1_5();

    // Full-size UNet with random weights (text encoder / VAE slots zero-filled, then dropped).
    let t = Instant::now();
    let (unet, host, unet_params) = random_unet(&cfg, &mut Rng(0x5eed), &device);
    let load_ms = ms(t);
    eprintln!("full-size UNet: {unet_params} parameters ({:.2} GB f32), built in {load_ms:.0} ms", unet_params as f64 * 4e-9);

    let modules = attention_linears(&cfg);
    assert_eq!(modules.len(), 128, "SD1.5 has 128 attention linears");
    let base_bytes_touched: u64 = modules.iter().map(|(_, s)| 4 * (s[0] * s[1]) as u64).sum();
    let table = ModuleTable::new(&cfg).expect("table");
    let probe = ModuleKey::new(Component::Unet, modules[0].0.clone());
    let base_probe = host.effective_weight(&probe).expect("probe");

    let mut results = Vec::new();
    for &rank in &ranks {
        let bytes: Vec<Vec<u8>> = (0..10).map(|i| kohya_file(&modules, rank, 1000 * rank as u64 + i)).collect();
        let t = Instant::now();
        let files: Vec<LoraFile> = bytes.iter().map(|b| LoraFile::parse(b, &table).expect("parse")).collect();
        let parse_ms = ms(t) / files.len() as f64;
        let set_a: Vec<(&LoraFile, f32)> = files[..5].iter().map(|f| (f, 0.16)).collect();
        let set_b: Vec<(&LoraFile, f32)> = files[5..].iter().map(|f| (f, 0.16)).collect();
        let refs_a: Vec<&LoraFile> = files[..5].iter().collect();
        let refs_b: Vec<&LoraFile> = files[5..].iter().collect();

        let (mut apply, mut switch, mut per_image, mut clear) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let (mut switch_uploaded, mut per_image_uploaded) = (0, 0);
        for _ in 0..reps {
            host.clear();
            let t = Instant::now();
            let r = host.set(&set_a, &device).expect("apply");
            apply.push(ms_synced(t, &device));
            assert_eq!(r.modules, 128);
            let before = uploaded_bytes();
            let t = Instant::now();
            host.set(&set_b, &device).expect("switch");
            switch.push(ms_synced(t, &device));
            switch_uploaded = uploaded_bytes() - before;
            // Stylus masks: 4 images, each with its own subset of the 5 adapters, one UNet batch.
            let masks: Vec<Vec<f32>> = (0..4).map(|i| (0..5).map(|j| if (i + j) % 2 == 0 { 0.2 } else { 0.0 }).collect()).collect();
            let before = uploaded_bytes();
            let t = Instant::now();
            host.set_per_image(&refs_a, &masks, &device).expect("per image");
            per_image.push(ms_synced(t, &device));
            per_image_uploaded = uploaded_bytes() - before;
            let t = Instant::now();
            host.clear();
            clear.push(ms_synced(t, &device));
        }
        assert_eq!(host.effective_weight(&probe).expect("probe"), base_probe, "the base is intact after every switch");
        let switch_factors = factor_bytes(&refs_b);
        let row = serde_json::json!({
            "rank": rank,
            "adapters": 5,
            "modules": modules.len(),
            "lora_file_mb": bytes[0].len() as f64 / 1e6,
            "parse_ms_per_file": parse_ms,
            "apply5_ms": median(apply),
            "switch_ms": median(switch),
            "per_image_4_masks_ms": median(per_image),
            "restore_ms": median(clear),
            "switch_uploaded_bytes": switch_uploaded,
            "switch_factor_bytes": switch_factors,
            "switch_base_bytes_reuploaded": switch_uploaded.saturating_sub(switch_factors),
            "per_image_uploaded_bytes": per_image_uploaded,
            "base_bytes_of_touched_modules": base_bytes_touched,
        });
        eprintln!("rank {rank}: {row}");
        results.push(row);
    }
    drop(unet);
    let out = serde_json::json!({ "device": device_name, "dtype": dtype, "unet_params": unet_params, "build_ms": load_ms, "reps": reps, "threads": 1, "results": results });
    println!("BENCH_JSON {out}");
}
