//! One full-size SD1.5 UNet step (random weights; speed does not depend on them) on a chosen burn
//! device: `cargo bench --profile dev -p stylus-diffusion --bench unet_step [--features wgpu] --
//! --device cpu|wgpu --latent 64 --batch 2 --reps 2`. One warm-up step first (wgpu compiles its
//! kernels there, timed separately), then `reps` timed steps, each synchronised by reading ε back.
//! Prints `BENCH_JSON {…}`; `benches/unet_step.py` runs it beside PyTorch and writes BENCHMARKS.md.

use std::collections::HashMap;
use std::time::Instant;

use stylus_diffusion::attention::AttentionConfig;
use stylus_diffusion::nn::{from_vec, to_vec};
use stylus_diffusion::{device_named, Loader, UNet2DConditionModel};
use stylus_sd::{sd_params, Component, SdConfig};

/// xorshift64* → uniform in [-a, a].
fn fill(state: &mut u64, n: usize, a: f32) -> Vec<f32> {
    (0..n)
        .map(|_| {
            *state ^= *state >> 12;
            *state ^= *state << 25;
            *state ^= *state >> 27;
            let u = (state.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 40) as f32 / (1u64 << 24) as f32;
            (2.0 * u - 1.0) * a
        })
        .collect()
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg = |name: &str, def: &str| args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned().unwrap_or_else(|| def.to_string());
    let device_name = arg("--device", "cpu");
    let latent: usize = arg("--latent", "64").parse().expect("--latent");
    let batch: usize = arg("--batch", "2").parse().expect("--batch");
    let reps: usize = arg("--reps", "2").parse::<usize>().expect("--reps").max(1);
    let device = match device_named(&device_name) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("unet_step: {e}");
            std::process::exit(2);
        }
    };
    let cfg = SdConfig::v1_5();
    let t = Instant::now();
    let mut rng = 0x5eed_u64;
    let values: HashMap<String, Vec<f32>> = sd_params(&cfg)
        .into_iter()
        .map(|p| {
            let v = if p.component == Component::Unet { fill(&mut rng, p.numel(), 0.02) } else { vec![0.0; p.numel()] };
            (p.path, v)
        })
        .collect();
    let mut ld = Loader::from_values(&cfg, values, &device).expect("values");
    ld.retain(Component::Unet);
    let unet = UNet2DConditionModel::load(&cfg.unet, &mut ld).expect("unet");
    let load_ms = t.elapsed().as_secs_f64() * 1e3;
    let attn = AttentionConfig::default();
    let (c, s) = (cfg.unet.in_channels, cfg.unet.cross_attention_dim);
    let mut step = || {
        let x = from_vec(fill(&mut rng, batch * c * latent * latent, 1.0), [batch, c, latent, latent], &device).expect("x");
        let ctx = from_vec(fill(&mut rng, batch * 77 * s, 1.0), [batch, 77, s], &device).expect("ctx");
        let t = Instant::now();
        let eps = to_vec(unet.forward(x, &[500.0], &ctx, &attn).expect("forward")).expect("read");
        assert!(eps.iter().all(|v| v.is_finite()), "non-finite ε");
        t.elapsed().as_secs_f64() * 1e3
    };
    eprintln!("unet_step: {device_name}, latent {latent}², batch {batch}: weights ready in {load_ms:.0} ms; warm-up…");
    let first_ms = step();
    let mut times: Vec<f64> = (0..reps).map(|_| step()).collect();
    times.sort_by(|a, b| a.total_cmp(b));
    let out = serde_json::json!({
        "device": device_name, "latent": latent, "batch": batch, "reps": reps,
        "load_ms": load_ms, "first_step_ms": first_ms, "step_ms_median": times[times.len() / 2], "step_ms_min": times[0],
    });
    eprintln!("unet_step: {out}");
    println!("BENCH_JSON {out}");
}
