//! Which kernels the UNet's blocks launch on the wgpu backend (`STYLUS_DEVICE=wgpu`, lavapipe
//! here): a resnet runs only its norms, im2cols, GEMMs and fused epilogues, a transformer only its
//! norms, GEMMs, fused attentions, epilogues and GEGLU — none of burn's element-wise kernels
//! (additions, GELU's five passes, the permute copies), which `gpu/epilogue.rs` and the token-layout
//! 1×1 convolutions replace. Counted in cubecl's profiling log (`CUBECL_DEBUG_LOG=<file>` logs every
//! launch as `| time | kernel name …`), which is why this is a test binary of its own: cubecl reads
//! its configuration once per process. On the CPU backend there is nothing to count.

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use burn::tensor::Tensor;
use common::{fixture, settled_log};
use stylus_diffusion::attention::AttentionConfig;
use stylus_diffusion::gpu::{set_auto_routines, GpuMatmul};
use stylus_diffusion::{device_named, Checkpoint, Loader, UNet2DConditionModel};
use stylus_sd::SdConfig;

/// Launches logged so far, by kernel name, once the log has stopped growing.
fn launches(log: &Path) -> BTreeMap<String, usize> {
    let mut by_name = BTreeMap::new();
    for line in settled_log(log).lines().filter(|l| l.starts_with("| ")) {
        // `| 91.5µs | KernelBinop | AddOp_51cbc80d`, `| 85.3µs | Epilogue_c432aa78`
        let Some(name) = line.split('|').nth(2).map(str::trim) else { continue };
        let name = name.rsplit_once('_').filter(|(_, h)| h.len() == 8 && h.chars().all(|c| c.is_ascii_hexdigit())).map_or(name, |(n, _)| n);
        *by_name.entry(name.to_string()).or_insert(0) += 1;
    }
    by_name
}

/// The launches between two counts.
fn between(before: &BTreeMap<String, usize>, after: &BTreeMap<String, usize>) -> BTreeMap<String, usize> {
    after.iter().map(|(k, &n)| (k.clone(), n - before.get(k).copied().unwrap_or(0))).filter(|(_, n)| *n > 0).collect()
}

#[test]
fn the_unet_blocks_launch_only_fused_kernels() {
    if std::env::var("STYLUS_DEVICE").as_deref() != Ok("wgpu") {
        eprintln!("skipped: launches are counted on the wgpu backend (STYLUS_DEVICE=wgpu)");
        return;
    }
    let log = std::env::temp_dir().join(format!("stylus-launches-{}.log", std::process::id()));
    std::fs::remove_file(&log).ok();
    // Before the first device call: cubecl reads it when its runtime starts.
    std::env::set_var("CUBECL_DEBUG_LOG", &log);
    // The browser's routine (SwiftShader has no subgroups): cubek's `Gemm`, which lavapipe would
    // get, packs an operand with a copy kernel of its own.
    set_auto_routines(GpuMatmul::Backend, GpuMatmul::Backend);
    let dev = device_named("wgpu").unwrap();
    let bytes = fixture("tiny_sd/ldm/tiny_sd15_fp16.safetensors");
    let mut ld = Loader::from_checkpoint(&SdConfig::tiny(), Checkpoint::SingleFile(&bytes), &dev).unwrap();
    let unet = UNet2DConditionModel::load(&SdConfig::tiny().unet, &mut ld).unwrap();
    let cfg = unet.config().clone();
    let attn = AttentionConfig::default();
    let (b, c) = (2, cfg.block_out_channels[0]);
    let x = Tensor::<4>::ones([b, c, 8, 8], &dev);
    let temb = Tensor::<2>::ones([b, 4 * c], &dev);
    let ctx = Tensor::<3>::ones([b, 77, cfg.cross_attention_dim], &dev);
    let (resnet, transformer) = (&unet.down_blocks[0].resnets[0], &unet.down_blocks[0].attentions[0]);

    let start = launches(&log);
    let _ = resnet.forward(x.clone(), Some(&temb)).into_data();
    let after_resnet = launches(&log);
    let _ = transformer.forward(x.clone(), &ctx, &attn).into_data();
    let after_transformer = launches(&log);
    let _ = unet.forward(Tensor::<4>::ones([b, cfg.in_channels, 8, 8], &dev), &[500.0], &ctx, &attn).unwrap().into_data();
    let after_unet = launches(&log);
    let (r, t, u) = (between(&start, &after_resnet), between(&after_resnet, &after_transformer), between(&after_transformer, &after_unet));
    println!("resnet: {r:?}\ntransformer: {t:?}\nUNet forward: {} launches, {u:?}", u.values().sum::<usize>());

    let only = |got: &BTreeMap<String, usize>, allowed: &[&str], what: &str| {
        let others: Vec<_> = got.keys().filter(|k| !allowed.contains(&k.as_str())).collect();
        assert!(others.is_empty(), "{what} launched unfused kernels {others:?} (all: {got:?}; log {})", log.display());
    };
    assert!(!r.is_empty() && !t.is_empty(), "nothing logged (log {})", log.display());
    only(&r, &["SegmentNorm", "Im2col", "MatmulEntry", "Epilogue"], "a resnet");
    // two convolutions (their biases, the time embedding and the shortcut in two epilogues)
    assert_eq!((r.get("Epilogue"), r.get("Im2col")), (Some(&2), Some(&2)), "resnet: {r:?}");
    only(&t, &["SegmentNorm", "MatmulEntry", "AttentionRows", "Epilogue", "Geglu"], "a transformer");
    // proj_in, the two attentions' to_out (with their residuals), the feed-forward's output, proj_out
    assert_eq!((t.get("Epilogue"), t.get("Geglu"), t.get("AttentionRows")), (Some(&5), Some(&1), Some(&2)), "transformer: {t:?}");
    // What the blocks leave to burn's ops over a whole forward (the tiny config has SD1.5's four
    // down and up blocks): the time embedding's two SiLUs and its linears' biases, conv_in's,
    // conv_out's and the three down- and upsamplers' biases (28 launches).
    let elementwise: usize = u.iter().filter(|(k, _)| k.starts_with("Kernel") || k.starts_with("UnaryFloat") || k.starts_with("Copy")).map(|(_, n)| n).sum();
    assert!(elementwise <= 40, "a UNet forward ran {elementwise} of burn's element-wise kernels: {u:?}");
    std::fs::remove_file(&log).ok();
}
