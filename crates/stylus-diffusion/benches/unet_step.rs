//! One full-size SD1.5 UNet step (random weights; speed does not depend on them) on a chosen burn
//! device: `cargo bench --profile dev -p stylus-diffusion --bench unet_step [--features wgpu] --
//! --device cpu|wgpu --latent 64 --batch 2 --reps 2`. One warm-up step first (wgpu compiles its
//! kernels there, timed separately), then `reps` timed steps, each synchronised by reading ε back.
//! Prints `BENCH_JSON {…}`; `benches/unet_step.py` runs it beside PyTorch and writes BENCHMARKS.md.

use std::time::Instant;

use stylus_diffusion::attention::AttentionConfig;
use stylus_diffusion::nn::{from_vec, to_vec};
use stylus_diffusion::device_named;
use stylus_sd::SdConfig;

mod common;
use common::{random_unet, Rng};

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
    let mut rng = Rng(0x5eed);
    let (unet, _, _) = random_unet(&cfg, &mut rng, &device);
    let load_ms = t.elapsed().as_secs_f64() * 1e3;
    let attn = AttentionConfig::default();
    let (c, s) = (cfg.unet.in_channels, cfg.unet.cross_attention_dim);
    let mut step = || {
        let x = from_vec(rng.fill(batch * c * latent * latent, 1.0), [batch, c, latent, latent], &device).expect("x");
        let ctx = from_vec(rng.fill(batch * 77 * s, 1.0), [batch, 77, s], &device).expect("ctx");
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
