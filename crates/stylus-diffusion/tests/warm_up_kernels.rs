//! `Pipeline::warm_up` on the wgpu backend (`STYLUS_DEVICE=wgpu`, lavapipe here): after a warm-up
//! of the zero-weight stand-in (before the checkpoint is loaded), a generation of the same request
//! with the real model compiles no kernel at all; nor does one after a warm-up with per-image
//! adapters installed. Compilations are counted in cubecl's
//! own compilation log (`CUBECL_DEBUG_LOG=<file>`, one `[START_KERNEL_COMPILATION]` per kernel),
//! which is why this is a test binary of its own: cubecl reads its configuration once per process.
//! On the CPU backend there is nothing to compile and the test says so and returns.

mod common;

use std::path::Path;

use common::{fixture, settled_log};
use stylus_diffusion::{device_named, Checkpoint, GenerateRequest, ModelFiles, Pipeline};
use stylus_lora::{LoraFile, ModuleTable};
use stylus_sd::SdConfig;

/// Kernels compiled so far, once the log has stopped growing.
fn compiled(log: &Path) -> usize {
    settled_log(log).matches("[START_KERNEL_COMPILATION]").count()
}

#[test]
fn after_a_warm_up_the_generation_compiles_nothing() {
    if std::env::var("STYLUS_DEVICE").as_deref() != Ok("wgpu") {
        eprintln!("skipped: kernel compilation is counted on the wgpu backend (STYLUS_DEVICE=wgpu)");
        return;
    }
    let log = std::env::temp_dir().join(format!("stylus-warm-up-{}.log", std::process::id()));
    std::fs::remove_file(&log).ok();
    // Before the first device call: cubecl reads it when its runtime starts.
    std::env::set_var("CUBECL_DEBUG_LOG", &log);
    let device = device_named("wgpu").unwrap();
    let req =
        GenerateRequest { prompt: "a red fox".into(), negative: "blurry".into(), steps: 3, width: 64, height: 48, seed: 4, batch: 2, ..Default::default() };
    let (model, tok) = (fixture("tiny_sd/ldm/tiny_sd15_fp16.safetensors"), fixture("tokenizer/tokenizer.json"));

    // Before the checkpoint is there (the browser: while it downloads), on a zero-weight stand-in.
    let stand_in = Pipeline::stand_in(&SdConfig::tiny(), &tok, &device).unwrap();
    stand_in.warm_up(&req, &mut |_| {}).unwrap();
    drop(stand_in);
    let warmed = compiled(&log);
    assert!(warmed > 0, "the warm-up compiles the generation's kernels (log {})", log.display());
    let mut pipe = Pipeline::load(&SdConfig::tiny(), &ModelFiles { checkpoint: Checkpoint::SingleFile(&model), tokenizer_json: &tok }, &device).unwrap();
    let loaded = compiled(&log);
    pipe.generate(&req, &mut |_| {}).unwrap();
    let after = compiled(&log);
    println!("kernels compiled: stand-in warm-up {warmed}, loading the model {}, generation after them {}", loaded - warmed, after - loaded);
    assert_eq!(after, loaded, "a generation after the stand-in's warm-up compiled {} kernels (log {})", after - loaded, log.display());

    // Per-image adapters (Stylus' masks) add run-time low-rank terms: warm up again after setting them.
    let lora = LoraFile::parse(&fixture("lora/kohya_lora.safetensors"), &ModuleTable::new(&SdConfig::tiny()).unwrap()).unwrap();
    pipe.set_adapters_per_image(&[&lora], &[vec![0.7], vec![0.0]]).unwrap();
    let set = compiled(&log);
    pipe.warm_up(&req, &mut |_| {}).unwrap();
    let warmed = compiled(&log);
    pipe.generate(&req, &mut |_| {}).unwrap();
    let after = compiled(&log);
    println!("with per-image adapters: warm-up {}, generation after it {}", warmed - set, after - warmed);
    assert_eq!(after, warmed, "with per-image adapters, a generation after the warm-up compiled {} kernels", after - warmed);
    std::fs::remove_file(&log).ok();
}
