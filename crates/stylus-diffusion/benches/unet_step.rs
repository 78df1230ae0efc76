//! One full-size SD1.5 UNet step (random weights; speed does not depend on them) on a chosen burn
//! device: `cargo bench --profile dev -p stylus-diffusion --bench unet_step [--features wgpu] --
//! --device cpu|wgpu --latent 64 --batch 2 --reps 2 [--conv backend|gemm] [--attn host|backend|explicit|flash|fused]
//! [--matmul ROUTINE] [--auto-small ROUTINE] [--auto-large ROUTINE] [--small-output N] [--gemm-min-k-ratio R]
//! [--attn-budget MiB] [--flash-planes N] [--fused-rows N] [--split-k TILES] [--dtype f32|f16] [--check] [--ops|--ops-only [--ops-matmul a,b] [--ops-shapes low|attention] [--ops-attn a,b]]`
//! (ROUTINE: a `stylus_diffusion::gpu::GpuMatmul` name: backend, simple-min, simple-max, double-max, double-min, gemm,
//! tiled, auto, simple-cmma, double-cmma, specialized-cmma, ordered-cmma; `--split-k TILES`: `gpu::set_split_k_tiles`). One warm-up step first (wgpu compiles its kernels there, timed
//! separately), then `reps` timed steps, each synchronised by reading ε back. `--ops` times the
//! single ops of ../shared/reference/GPU_NOTES.md first (matmul 1024², conv 3×3 320→320 at 64²,
//! attention [1, 8, 4096, 40]) with each kernel choice, the explicit attention's three parts apart,
//! and on wgpu the UNet's GEMM shapes with each cubek matmul routine (`stylus_diffusion::gpu`). Prints `BENCH_JSON {…}` lines;
//! `benches/unet_step.py` runs it beside PyTorch and writes BENCHMARKS.md.

use std::time::Instant;

use burn::tensor::activation::softmax;
use burn::tensor::ops::ConvOptions;
use burn::tensor::{Device, Tensor};
use stylus_diffusion::attention::{multi_head_attention, AttentionConfig, AttentionKernel};
use stylus_diffusion::device_named;
use stylus_diffusion::gpu::{set_gpu_matmul, GpuMatmul};
use stylus_diffusion::kernels::{conv2d_with, set_conv_kernel, stacked_columns, ConvKernel};
use stylus_diffusion::nn::{from_vec, to_vec};
use stylus_sd::SdConfig;

mod common;
use common::{random_unet, set_dtype, Rng};

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
fn ops(device: &Device, rng: &mut Rng, reps: usize, flash_planes: u8, split_k: usize, opt: &dyn Fn(&str) -> Option<String>) {
    let t = |v: Vec<f32>, s: [usize; 4]| from_vec(v, s, device).expect("upload");
    let a = t(rng.fill(1024 * 1024, 1.0), [1, 1, 1024, 1024]);
    let b = t(rng.fill(1024 * 1024, 1.0), [1, 1, 1024, 1024]);
    let mut rows: Vec<(String, String, (f64, f64))> = vec![];
    // The UNet's GEMMs with each routine (wgpu only: elsewhere every routine is burn's matmul):
    // a 1024² square, the 320-channel linears at 64² latents (CFG batch 2: 8192 rows), the
    // feed-forward's 320→2560, and the 3×3 conv's im2col GEMM at 320 and 1280 channels.
    let routines: &[GpuMatmul] = if stylus_diffusion::gpu::on_cube(&a) { &GpuMatmul::ALL } else { &[GpuMatmul::Backend] };
    // `--ops-matmul` limits the routines and shapes (names: e.g. `backend,gemm`; `--ops-shapes low` the
    // low-resolution ones only).
    let routines: Vec<GpuMatmul> = match opt("--ops-matmul") {
        Some(list) => list.split(',').filter_map(GpuMatmul::parse).collect(),
        None => routines.to_vec(),
    };
    let all_shapes: [(&str, [usize; 4]); 10] = [
        ("matmul 1024²", [1, 1024, 1024, 1024]),
        ("linear 8192×320→320", [1, 8192, 320, 320]),
        ("linear 8192×320→2560", [1, 8192, 320, 2560]),
        ("conv-gemm 320×2880·2880×4096", [1, 320, 2880, 4096]),
        ("conv-gemm 1280×11520·11520×64", [1, 1280, 11520, 64]),
        // low resolutions at CFG batch 2 (one broadcast weight, as the UNet runs them)
        ("conv-gemm 2×1280×11520·11520×64 (8²)", [2, 1280, 11520, 64]),
        ("conv-gemm 2×1280×11520·11520×256 (16²)", [2, 1280, 11520, 256]),
        ("conv-gemm 2×640×5760·5760×1024 (32²)", [2, 640, 5760, 1024]),
        ("linear 128×1280→1280 (8²)", [1, 128, 1280, 1280]),
        ("linear 512×1280→1280 (16²)", [1, 512, 1280, 1280]),
    ];
    let low = opt("--ops-shapes").as_deref() == Some("low");
    // `--ops-shapes attention`: the attention rows alone
    let attention_only = opt("--ops-shapes").as_deref() == Some("attention");
    let shapes = if attention_only { &all_shapes[..0] } else { &all_shapes[if low { 5 } else { 0 }..] };
    for &(label, [bs, m, k, n]) in shapes {
        let (x, y) = (t(rng.fill(m * k, 1.0), [1, 1, m, k]), t(rng.fill(bs * k * n, 0.05), [1, bs, k, n]));
        // each routine's result against the unit routine's (no tensor cores, no plane ops, no split)
        stylus_diffusion::gpu::set_split_k_tiles(0);
        let want = to_vec(stylus_diffusion::gpu::matmul_with(x.clone(), y.clone(), GpuMatmul::SimpleUnitMin)).expect("read");
        // with `--split-k T`, each routine also with k split (`ROUTINE+split`) where the shape splits
        let splits = if split_k > 0 && stylus_diffusion::gpu::split_k_with(split_k, bs, m, k, n) > 1 { vec![0, split_k] } else { vec![0] };
        for &r in &routines {
            for &target in &splits {
                set_gpu_matmul(r);
                stylus_diffusion::gpu::set_split_k_tiles(target);
                // timed first, so that its first call includes the kernel's compilation
                let timing = time_op(device, reps, || stylus_diffusion::gpu::matmul(x.clone(), y.clone()));
                let err = rel_err(&to_vec(stylus_diffusion::gpu::matmul(x.clone(), y.clone())).expect("read"), &want);
                let name = if target > 0 { format!("{}+split", r.name()) } else { r.name().to_string() };
                report_err(label, &name, timing, reps, Some(err));
            }
        }
    }
    stylus_diffusion::gpu::set_split_k_tiles(split_k);
    set_gpu_matmul(GpuMatmul::Auto);
    if low {
        return;
    }
    if !attention_only {
        rows.push(("matmul 1024²".into(), "tensor.matmul".into(), time_op(device, reps, || a.clone().matmul(b.clone()))));
        conv_rows(device, rng, reps, &mut rows);
        norm_rows(device, rng, reps, &mut rows);
    }
    attention_rows(device, rng, reps, flash_planes, opt);
    for (op, kernel, timing) in rows {
        report(&op, &kernel, timing, reps);
    }
}

/// The 3×3 conv at 320 channels, 64², with each conv kernel.
fn conv_rows(device: &Device, rng: &mut Rng, reps: usize, rows: &mut Vec<(String, String, (f64, f64))>) {
    let t = |v: Vec<f32>, s: [usize; 4]| from_vec(v, s, device).expect("upload");
    let x = t(rng.fill(320 * 64 * 64, 1.0), [1, 320, 64, 64]);
    let w = t(rng.fill(320 * 320 * 9, 0.02), [320, 320, 3, 3]);
    let bias = from_vec(rng.fill(320, 0.02), [320], device).expect("bias");
    for kernel in [ConvKernel::Backend, ConvKernel::Gemm] {
        set_conv_kernel(kernel);
        let opts = ConvOptions::new([1, 1], [1, 1], [1, 1], 1);
        let name = if kernel == ConvKernel::Gemm { "gemm" } else { "backend" };
        rows.push(("conv2d 320ch 64² 3×3".into(), name.into(), time_op(device, reps, || conv2d_with(x.clone(), w.clone(), Some(bias.clone()), opts.clone()))));
    }
    // its im2col matrix alone: the views of the padded input stacked, and the one-launch kernel
    let cols = |m: Tensor<3>| m.unsqueeze::<4>();
    let pad = || x.clone().pad([(1, 1), (1, 1)], burn::tensor::ops::PadMode::Constant(0.0));
    rows.push(("im2col 320ch 64² 3×3".into(), "views".into(), time_op(device, reps, || cols(stacked_columns(&pad(), 3, 3, 0, 64, 64).expect("views")))));
    if let Some(m) = stylus_diffusion::gpu::im2col(&x, 1, 3, 3, 1, 1, 0, 64, 64) {
        assert_eq!(to_vec(m).expect("read"), to_vec(stacked_columns(&pad(), 3, 3, 0, 64, 64).expect("views")).expect("read"), "im2col kernel");
        let kernel = || cols(stylus_diffusion::gpu::im2col(&x, 1, 3, 3, 1, 1, 0, 64, 64).expect("im2col"));
        rows.push(("im2col 320ch 64² 3×3".into(), "kernel".into(), time_op(device, reps, kernel)));
    }
}

/// The UNet's norms at 64² latents, CFG batch 2: GroupNorm(32) + SiLU of `[2, 320, 64, 64]` (the
/// resnets') and LayerNorm of `[2, 4096, 320]` (the transformers'), as burn's ops and (on wgpu)
/// in one launch (`gpu/norm.rs`).
fn norm_rows(device: &Device, rng: &mut Rng, reps: usize, rows: &mut Vec<(String, String, (f64, f64))>) {
    use stylus_diffusion::nn::{silu, GroupNorm, LayerNorm};
    let x = from_vec(rng.fill(2 * 320 * 64 * 64, 1.0), [2, 320, 64, 64], device).expect("x");
    let param = |rng: &mut Rng| from_vec(rng.fill(320, 1.0), [320], device).expect("param");
    let gn = GroupNorm::new(param(rng), param(rng), 32, 1e-5).expect("group norm");
    let label = "group norm + silu [2,320,64,64]";
    rows.push((label.into(), "ops".into(), time_op(device, reps, || silu(gn.forward_ops(x.clone())))));
    if stylus_diffusion::gpu::on_cube(&x) {
        rows.push((label.into(), "kernel".into(), time_op(device, reps, || gn.forward_silu(x.clone()))));
    }
    let tokens: Tensor<3> = from_vec(rng.fill(2 * 4096 * 320, 1.0), [2, 4096, 320], device).expect("tokens");
    let ln = LayerNorm::new(param(rng), param(rng), 1e-5);
    let label = "layer norm [2,4096,320]";
    rows.push((label.into(), "ops".into(), time_op(device, reps, || ln.forward_ops(tokens.clone()).unsqueeze::<4>())));
    if stylus_diffusion::gpu::on_cube(&x) {
        rows.push((label.into(), "kernel".into(), time_op(device, reps, || ln.forward(tokens.clone()).unsqueeze::<4>())));
    }
}

/// Attention `[1, 8, 4096, 40]` (self and cross) with each kernel (`--ops-attn a,b` limits them),
/// then the explicit attention's three parts apart.
fn attention_rows(device: &Device, rng: &mut Rng, reps: usize, flash_planes: u8, opt: &dyn Fn(&str) -> Option<String>) {
    let all = ["host", "backend", "explicit", "flash", "flash-unit", "fused"];
    let forced_rows: usize = opt("--fused-rows").and_then(|v| v.parse().ok()).unwrap_or(0);
    let kernels: Vec<String> = opt("--ops-attn").map(|l| l.split(',').map(String::from).collect()).unwrap_or_else(|| all.map(String::from).to_vec());
    let q = from_vec(rng.fill(4096 * 320, 1.0), [1, 4096, 320], device).expect("q");
    let kv = from_vec(rng.fill(4096 * 320, 1.0), [1, 4096, 320], device).expect("kv");
    let ctx = from_vec(rng.fill(77 * 320, 1.0), [1, 77, 320], device).expect("ctx");
    for (op, keys) in [("attention [1,8,4096,40]", &kv), ("cross-attention [1,8,4096,40]·77", &ctx)] {
        let explicit = AttentionConfig { kernel: AttentionKernel::Explicit, ..Default::default() };
        let want = to_vec(multi_head_attention(q.clone(), keys.clone(), keys.clone(), 8, false, &explicit)).expect("read");
        // `flash` tries the tensor-core kernel first (where the adapter has f16 cooperative
        // matrices); `flash-unit` is cubek's unit kernel alone
        for name in &kernels {
            let kernel = AttentionKernel::parse(name.trim_end_matches("-unit")).expect("kernel name");
            stylus_diffusion::gpu::set_flash_planes(if name == "flash-unit" { 0 } else { flash_planes });
            let cfg = AttentionConfig { kernel, ..Default::default() };
            let run = || multi_head_attention(q.clone(), keys.clone(), keys.clone(), 8, false, &cfg);
            let timing = time_op(device, reps, || run().unsqueeze::<4>());
            let label = match forced_rows {
                n if n > 0 && name == "fused" => format!("fused, {n} rows/unit"),
                _ => name.clone(),
            };
            report_err(op, &label, timing, reps, Some(rel_err(&to_vec(run()).expect("read"), &want)));
        }
    }
    stylus_diffusion::gpu::set_flash_planes(flash_planes);
    if kernels.iter().any(|k| k == "explicit") {
        attention_parts(device, &q, &kv, reps);
    }
}

/// Where the explicit attention's time goes: its three parts, each over all the query chunks of
/// the default 64 MiB score budget as `multi_head_attention` runs them (`[1, 8, 4096, 40]`: 4096
/// query rows in chunks of 512), each timed on its own (`BENCH_JSON {"op": "attention part …"}`).
fn attention_parts(device: &Device, q: &Tensor<3>, kv: &Tensor<3>, reps: usize) {
    let heads = |x: &Tensor<3>| x.clone().reshape([1, 4096, 8, 40]).swap_dims(1, 2);
    let (q, k) = (heads(q), heads(kv));
    let kt = k.clone().swap_dims(2, 3);
    let rows = AttentionConfig::default().rows_per_chunk(1, 8, 4096).min(4096);
    let chunks: Vec<Tensor<4>> = (0..4096).step_by(rows).map(|s| q.clone().narrow(2, s, rows.min(4096 - s))).collect();
    let scores: Vec<Tensor<4>> = chunks.iter().map(|c| stylus_diffusion::gpu::matmul(c.clone(), kt.clone())).collect();
    let scale = 1.0 / 40f64.sqrt();
    let probs: Vec<Tensor<4>> = scores.iter().map(|s| softmax(s.clone() * scale, 3)).collect();
    let n = chunks.len();
    let parts: [(&str, &dyn Fn(usize) -> Tensor<4>); 3] = [
        ("q·kᵀ", &|i| stylus_diffusion::gpu::matmul(chunks[i].clone(), kt.clone())),
        ("scale + softmax", &|i| softmax(scores[i].clone() * scale, 3)),
        ("p·v", &|i| stylus_diffusion::gpu::matmul(probs[i].clone(), k.clone())),
    ];
    for (part, f) in parts {
        report(
            &format!("attention part {part} [1,8,4096,40], {n} chunks of {rows} rows"),
            "explicit",
            time_op(device, reps, || (0..n).map(f).last().expect("a chunk")),
            reps,
        );
    }
}

/// `max |got − want| / max |want|` (NaN where the lengths differ or a value is not finite).
fn rel_err(got: &[f32], want: &[f32]) -> f64 {
    if got.len() != want.len() || got.iter().chain(want).any(|v| !v.is_finite()) {
        return f64::NAN;
    }
    let scale = want.iter().fold(0f64, |m, v| m.max(v.abs() as f64)).max(1e-30);
    got.iter().zip(want).fold(0f64, |m, (a, b)| m.max((a - b).abs() as f64)) / scale
}

/// A [`rel_err`] for the JSON lines (JSON has no NaN).
fn err_json(e: f64) -> serde_json::Value {
    if e.is_finite() {
        e.into()
    } else {
        "non-finite".into()
    }
}

/// One `BENCH_JSON {"op": …}` line (printed as soon as measured: a later crash or timeout keeps it).
fn report(op: &str, kernel: &str, timing: (f64, f64), reps: usize) {
    report_err(op, kernel, timing, reps, None)
}

/// [`report`] with the result's relative error against a reference kernel.
fn report_err(op: &str, kernel: &str, (first, median): (f64, f64), reps: usize, rel_err: Option<f64>) {
    let mut out = serde_json::json!({"op": op, "kernel": kernel, "first_ms": first, "median_ms": median, "reps": reps});
    if let Some(e) = rel_err {
        out["rel_err"] = err_json(e);
    }
    eprintln!("unet_step: {out}");
    println!("BENCH_JSON {out}");
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let opt = |name: &str| args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned();
    let arg = |name: &str, def: &str| opt(name).unwrap_or_else(|| def.to_string());
    let device_name = arg("--device", "cpu");
    let latent: usize = arg("--latent", "64").parse().unwrap_or_else(|_| fail("--latent: a number".into()));
    let batch: usize = arg("--batch", "2").parse().unwrap_or_else(|_| fail("--batch: a number".into()));
    let reps: usize = arg("--reps", "2").parse::<usize>().unwrap_or_else(|_| fail("--reps: a number".into())).max(1);
    let conv_name = arg("--conv", "gemm");
    let conv = ConvKernel::parse(&conv_name).unwrap_or_else(|| fail(format!("--conv {conv_name}: backend or gemm")));
    let attn_name = arg("--attn", "host");
    let kernel = AttentionKernel::parse(&attn_name).unwrap_or_else(|| fail(format!("--attn {attn_name}: host, backend, explicit, flash or fused")));
    let matmul_name = arg("--matmul", "auto");
    let matmul = GpuMatmul::parse(&matmul_name).unwrap_or_else(|| fail(format!("--matmul {matmul_name}: a stylus_diffusion::gpu::GpuMatmul name")));
    let dtype = arg("--dtype", "f32");
    let mut device = device_named(&device_name).unwrap_or_else(|e| fail(e.to_string()));
    set_dtype(&mut device, &device_name, &dtype).unwrap_or_else(|e| fail(e));
    let mut rng = Rng(0x5eed);
    let routine = |name: &str| {
        let v = arg(name, "auto");
        GpuMatmul::parse(&v).unwrap_or_else(|| fail(format!("{name} {v}: a --matmul routine")))
    };
    stylus_diffusion::gpu::set_auto_routines(routine("--auto-small"), routine("--auto-large"));
    let fused_rows: usize = arg("--fused-rows", "0").parse().unwrap_or_else(|_| fail("--fused-rows: 0-4 (0: by head dim)".into()));
    stylus_diffusion::gpu::set_fused_rows_per_unit(fused_rows);
    let flash_planes: u8 = arg("--flash-planes", "4").parse().unwrap_or_else(|_| fail("--flash-planes: 0-255".into()));
    stylus_diffusion::gpu::set_flash_planes(flash_planes);
    let split_k: usize = arg("--split-k", "0").parse().unwrap_or_else(|_| fail("--split-k: output tiles, a number (0: off)".into()));
    stylus_diffusion::gpu::set_split_k_tiles(split_k);
    if args.iter().any(|a| a == "--ops" || a == "--ops-only") {
        ops(&device, &mut rng, reps, flash_planes, split_k, &opt);
        if args.iter().any(|a| a == "--ops-only") {
            return;
        }
    }
    set_conv_kernel(conv);
    set_gpu_matmul(matmul);
    let limit: usize =
        arg("--small-output", &stylus_diffusion::gpu::DEFAULT_SMALL_OUTPUT.to_string()).parse().unwrap_or_else(|_| fail("--small-output: a number".into()));
    stylus_diffusion::gpu::set_small_output_limit(limit);
    let k_ratio: usize = arg("--gemm-min-k-ratio", "0").parse().unwrap_or_else(|_| fail("--gemm-min-k-ratio: a number".into()));
    stylus_diffusion::gpu::set_gemm_min_k_ratio(k_ratio);
    let cfg = SdConfig::v1_5();
    let t = Instant::now();
    let (unet, _, _) = random_unet(&cfg, &mut rng, &device);
    let load_ms = t.elapsed().as_secs_f64() * 1e3;
    let budget_mib: usize = arg("--attn-budget", &(AttentionConfig::default().max_scores_bytes >> 20).to_string())
        .parse()
        .unwrap_or_else(|_| fail("--attn-budget: MiB, a number".into()));
    let attn = AttentionConfig { kernel, max_scores_bytes: budget_mib << 20 };
    let (c, s) = (cfg.unet.in_channels, cfg.unet.cross_attention_dim);
    // a step's random latents and text context
    let inputs = |rng: &mut Rng| {
        let x = from_vec(rng.fill(batch * c * latent * latent, 1.0), [batch, c, latent, latent], &device).expect("x");
        (x, from_vec(rng.fill(batch * 77 * s, 1.0), [batch, 77, s], &device).expect("ctx"))
    };
    let mut step = || {
        let (x, ctx) = inputs(&mut rng);
        let t = Instant::now();
        let eps = to_vec(unet.forward(x, &[500.0], &ctx, &attn).expect("forward")).expect("read");
        assert!(eps.iter().all(|v| v.is_finite()), "non-finite ε");
        t.elapsed().as_secs_f64() * 1e3
    };
    eprintln!("unet_step: {device_name} {dtype}, conv {conv_name}, attention {attn_name}, matmul {matmul_name}, latent {latent}², batch {batch}: weights ready in {load_ms:.0} ms; warm-up…");
    let first_ms = step();
    let mut times: Vec<f64> = (0..reps).map(|_| step()).collect();
    times.sort_by(|a, b| a.total_cmp(b));
    // the default (`host`) names what it resolves to: the fused kernel on wgpu (rows per unit when forced)
    let probe = from_vec(vec![0.0; 4], [2, 2], &device).expect("probe");
    let on_cube = stylus_diffusion::gpu::on_cube(&probe);
    let attn_label = match (kernel, on_cube) {
        (AttentionKernel::Host, true) if fused_rows > 0 => format!("default: fused, {fused_rows} rows/unit"),
        (AttentionKernel::Host, true) => "default: fused".to_string(),
        (AttentionKernel::Fused, _) if fused_rows > 0 => format!("fused, {fused_rows} rows/unit"),
        _ => attn_name.clone(),
    };
    let out = serde_json::json!({
        "device": device_name, "dtype": dtype, "conv": conv_name, "attention": attn_label, "matmul": matmul_name, "small_output": limit, "gemm_min_k_ratio": k_ratio, "attn_budget_mib": budget_mib, "latent": latent, "batch": batch, "reps": reps,
        "load_ms": load_ms, "first_step_ms": first_ms, "step_ms_median": times[times.len() / 2], "step_ms_min": times[0],
        "auto_small": arg("--auto-small", "auto"), "auto_large": arg("--auto-large", "auto"), "flash_planes": flash_planes, "fused_rows": fused_rows, "split_k": split_k,
        "tensor_cores": stylus_diffusion::gpu::tensor_cores(&probe),
    });
    // printed before the check, so that a check cut short by a timeout keeps the timing
    eprintln!("unet_step: {out}");
    println!("BENCH_JSON {out}");
    if !args.iter().any(|a| a == "--check") {
        return;
    }
    // `--check`: ε of one step against the same step with the unit matmul routine and the explicit
    // attention (no tensor cores, no plane ops), same inputs; its own line (`check_rel_err`)
    let (x, ctx) = inputs(&mut rng);
    let got = to_vec(unet.forward(x.clone(), &[500.0], &ctx, &attn).expect("forward")).expect("read");
    set_gpu_matmul(GpuMatmul::SimpleUnitMin);
    stylus_diffusion::gpu::set_split_k_tiles(0);
    let plain = AttentionConfig { kernel: AttentionKernel::Explicit, ..attn };
    let want = to_vec(unet.forward(x, &[500.0], &ctx, &plain).expect("forward")).expect("read");
    set_gpu_matmul(matmul);
    stylus_diffusion::gpu::set_split_k_tiles(split_k);
    let check = serde_json::json!({ "check_rel_err": err_json(rel_err(&got, &want)) });
    eprintln!("unet_step: {check}");
    println!("BENCH_JSON {check}");
}
