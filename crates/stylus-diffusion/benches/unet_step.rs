//! One full-size SD1.5 UNet step (random weights; speed does not depend on them) on a chosen burn
//! device: `cargo bench --profile dev -p stylus-diffusion --bench unet_step [--features wgpu] --
//! --device cpu|wgpu --latent 64 --batch 2 --reps 2 [--conv backend|gemm] [--attn host|backend|explicit]
//! [--dtype f32|f16] [--ops]`. One warm-up step first (wgpu compiles its kernels there, timed
//! separately), then `reps` timed steps, each synchronised by reading ε back. `--ops` times the
//! single ops of ../shared/reference/GPU_NOTES.md first (matmul 1024², conv 3×3 320→320 at 64²,
//! attention [1, 8, 4096, 40]) with each kernel choice. Prints `BENCH_JSON {…}` lines;
//! `benches/unet_step.py` runs it beside PyTorch and writes BENCHMARKS.md.

use std::time::Instant;

use burn::tensor::ops::ConvOptions;
use burn::tensor::{Device, FloatDType, Tensor};
use stylus_diffusion::attention::{multi_head_attention, AttentionConfig, AttentionKernel};
use stylus_diffusion::device_named;
use stylus_diffusion::kernels::{conv2d_with, set_conv_kernel, ConvKernel};
use stylus_diffusion::nn::{from_vec, to_vec};
use stylus_sd::SdConfig;

mod common;
use common::{random_unet, Rng};

fn fail(msg: String) -> ! {
    eprintln!("unet_step: {msg}");
    std::process::exit(2);
}

/// Median milliseconds of `f` over `reps` runs after one warm-up (reported apart), device-synced.
fn time_op(device: &Device, reps: usize, mut f: impl FnMut() -> Tensor<4>) -> (f64, f64) {
    let mut run = || {
        let t = Instant::now();
        let y = f();
        device.sync().expect("sync");
        drop(y);
        t.elapsed().as_secs_f64() * 1e3
    };
    let first = run();
    let mut v: Vec<f64> = (0..reps).map(|_| run()).collect();
    v.sort_by(|a, b| a.total_cmp(b));
    (first, v[v.len() / 2])
}

/// The per-op table: each op with each kernel choice, as `BENCH_JSON {"op": …}` lines.
fn ops(device: &Device, rng: &mut Rng, reps: usize) {
    let t = |v: Vec<f32>, s: [usize; 4]| from_vec(v, s, device).expect("upload");
    let a = t(rng.fill(1024 * 1024, 1.0), [1, 1, 1024, 1024]);
    let b = t(rng.fill(1024 * 1024, 1.0), [1, 1, 1024, 1024]);
    let mut rows = vec![("matmul 1024²", "backend", time_op(device, reps, || a.clone().matmul(b.clone())))];
    let x = t(rng.fill(320 * 64 * 64, 1.0), [1, 320, 64, 64]);
    let w = t(rng.fill(320 * 320 * 9, 0.02), [320, 320, 3, 3]);
    let bias = from_vec(rng.fill(320, 0.02), [320], device).expect("bias");
    for kernel in [ConvKernel::Backend, ConvKernel::Gemm] {
        set_conv_kernel(kernel);
        let opts = ConvOptions::new([1, 1], [1, 1], [1, 1], 1);
        let name = if kernel == ConvKernel::Gemm { "gemm" } else { "backend" };
        rows.push(("conv2d 320ch 64² 3×3", name, time_op(device, reps, || conv2d_with(x.clone(), w.clone(), Some(bias.clone()), opts.clone()))));
    }
    let q = from_vec(rng.fill(4096 * 320, 1.0), [1, 4096, 320], device).expect("q");
    for (kernel, name) in [(AttentionKernel::Host, "host"), (AttentionKernel::Backend, "backend"), (AttentionKernel::Explicit, "explicit")] {
        let cfg = AttentionConfig { kernel, ..Default::default() };
        rows.push((
            "attention [1,8,4096,40]",
            name,
            time_op(device, reps, || multi_head_attention(q.clone(), q.clone(), q.clone(), 8, false, &cfg).unsqueeze::<4>()),
        ));
    }
    for (op, kernel, (first, median)) in rows {
        let out = serde_json::json!({"op": op, "kernel": kernel, "first_ms": first, "median_ms": median, "reps": reps});
        eprintln!("unet_step: {out}");
        println!("BENCH_JSON {out}");
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg = |name: &str, def: &str| args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned().unwrap_or_else(|| def.to_string());
    let device_name = arg("--device", "cpu");
    let latent: usize = arg("--latent", "64").parse().unwrap_or_else(|_| fail("--latent: a number".into()));
    let batch: usize = arg("--batch", "2").parse().unwrap_or_else(|_| fail("--batch: a number".into()));
    let reps: usize = arg("--reps", "2").parse::<usize>().unwrap_or_else(|_| fail("--reps: a number".into())).max(1);
    let conv_name = arg("--conv", "gemm");
    let conv = ConvKernel::parse(&conv_name).unwrap_or_else(|| fail(format!("--conv {conv_name}: backend or gemm")));
    let attn_name = arg("--attn", "host");
    let kernel = match attn_name.as_str() {
        "host" => AttentionKernel::Host,
        "backend" => AttentionKernel::Backend,
        "explicit" => AttentionKernel::Explicit,
        other => fail(format!("--attn {other}: host, backend or explicit")),
    };
    let dtype = arg("--dtype", "f32");
    let mut device = device_named(&device_name).unwrap_or_else(|e| fail(e.to_string()));
    match dtype.as_str() {
        "f32" => {}
        "f16" => device.configure(FloatDType::F16).unwrap_or_else(|e| fail(format!("f16 on {device_name}: {e:?}"))),
        other => fail(format!("--dtype {other}: f32 or f16")),
    }
    let mut rng = Rng(0x5eed);
    if args.iter().any(|a| a == "--ops") {
        ops(&device, &mut rng, reps);
    }
    set_conv_kernel(conv);
    let cfg = SdConfig::v1_5();
    let t = Instant::now();
    let (unet, _, _) = random_unet(&cfg, &mut rng, &device);
    let load_ms = t.elapsed().as_secs_f64() * 1e3;
    let attn = AttentionConfig { kernel, ..Default::default() };
    let (c, s) = (cfg.unet.in_channels, cfg.unet.cross_attention_dim);
    let mut step = || {
        let x = from_vec(rng.fill(batch * c * latent * latent, 1.0), [batch, c, latent, latent], &device).expect("x");
        let ctx = from_vec(rng.fill(batch * 77 * s, 1.0), [batch, 77, s], &device).expect("ctx");
        let t = Instant::now();
        let eps = to_vec(unet.forward(x, &[500.0], &ctx, &attn).expect("forward")).expect("read");
        assert!(eps.iter().all(|v| v.is_finite()), "non-finite ε");
        t.elapsed().as_secs_f64() * 1e3
    };
    eprintln!("unet_step: {device_name} {dtype}, conv {conv_name}, attention {attn_name}, latent {latent}², batch {batch}: weights ready in {load_ms:.0} ms; warm-up…");
    let first_ms = step();
    let mut times: Vec<f64> = (0..reps).map(|_| step()).collect();
    times.sort_by(|a, b| a.total_cmp(b));
    let out = serde_json::json!({
        "device": device_name, "dtype": dtype, "conv": conv_name, "attention": attn_name, "latent": latent, "batch": batch, "reps": reps,
        "load_ms": load_ms, "first_step_ms": first_ms, "step_ms_median": times[times.len() / 2], "step_ms_min": times[0],
    });
    eprintln!("unet_step: {out}");
    println!("BENCH_JSON {out}");
}
