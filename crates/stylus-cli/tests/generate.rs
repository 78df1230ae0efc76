//! `stylus generate` end to end on the tiny SD1.5 fixture: the binary writes a PNG equal to the
//! library's output for the same request, and refuses checkpoints that are not SD1.5.

use std::path::{Path, PathBuf};
use std::process::Command;

use stylus_diffusion::{cpu_device, Checkpoint, GenerateRequest, ModelFiles, Pipeline};
use stylus_sd::{SchedulerKind, SdConfig};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures")
}

fn stylus(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_stylus")).args(args).output().expect("run stylus")
}

fn read_png(path: &Path) -> (u32, u32, Vec<u8>) {
    let dec = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(path).unwrap()));
    let mut reader = dec.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    assert_eq!((info.color_type, info.bit_depth), (png::ColorType::Rgb, png::BitDepth::Eight));
    buf.truncate(info.buffer_size());
    (info.width, info.height, buf)
}

#[test]
fn generate_writes_the_library_image() {
    let model = fixtures().join("tiny_sd/ldm/tiny_sd15_fp16.safetensors");
    let out = std::env::temp_dir().join(format!("stylus-generate-{}.png", std::process::id()));
    let prompt = "a watercolor fox";
    let o = stylus(&[
        "generate", "--model", model.to_str().unwrap(), "--config", "tiny", "--prompt", prompt, "--steps", "2",
        "--width", "64", "--height", "64", "--seed", "7", "--quiet", "--out", out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "stylus failed: {}", String::from_utf8_lossy(&o.stderr));
    let (w, h, rgb) = read_png(&out);
    std::fs::remove_file(&out).ok();

    let bytes = std::fs::read(&model).unwrap();
    let tok = std::fs::read(fixtures().join("tokenizer/tokenizer.json")).unwrap();
    let files = ModelFiles { checkpoint: Checkpoint::SingleFile(&bytes), tokenizer_json: &tok };
    let pipe = Pipeline::load(&SdConfig::tiny(), &files, &cpu_device()).unwrap();
    let req = GenerateRequest { prompt: prompt.into(), steps: 2, width: 64, height: 64, seed: 7, scheduler: SchedulerKind::DpmPp2mKarras, ..Default::default() };
    let lib = pipe.generate(&req, &mut |_| {}).unwrap();
    assert_eq!((w, h), (64, 64));
    assert_eq!(rgb, lib[0].rgb, "CLI PNG equals the library image");

    // The diffusers folder holds the same (fp16-exact) weights: the same image, also after a
    // kernel warm-up.
    let folder = fixtures().join("tiny_sd/diffusers");
    let o = stylus(&[
        "generate", "--model", folder.to_str().unwrap(), "--config", "tiny", "--prompt", prompt, "--steps", "2",
        "--width", "64", "--height", "64", "--seed", "7", "--quiet", "--warm-up", "--out", out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "stylus failed: {}", String::from_utf8_lossy(&o.stderr));
    let (_, _, rgb2) = read_png(&out);
    std::fs::remove_file(&out).ok();
    assert_eq!(rgb2, rgb, "diffusers folder (warmed up) and single file give the same PNG");
}

#[test]
fn generate_refuses_what_is_not_sd15() {
    let tiny = fixtures().join("tiny_sd/ldm/tiny_sd15_fp16.safetensors");
    // The tiny file against the full SD1.5 table: wrong widths everywhere.
    let o = stylus(&["generate", "--model", tiny.to_str().unwrap(), "--prompt", "x", "--quiet", "--out", "/nonexistent/x.png"]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("SD1.5"), "{err}");
    let pickle = fixtures().join("tiny_sd/ldm/tiny_pickle.ckpt");
    let o = stylus(&["generate", "--model", pickle.to_str().unwrap(), "--config", "tiny", "--prompt", "x", "--quiet"]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("pickled"), "{}", String::from_utf8_lossy(&o.stderr));
}

/// `--dtype`: f16 is for the GPU backend, refused on the CPU with a message; an unknown name too.
/// (The f16 generation itself: `stylus-diffusion/tests/precision.rs`, on wgpu.)
#[test]
fn generate_refuses_f16_on_the_cpu_and_unknown_dtypes() {
    let tiny = fixtures().join("tiny_sd/ldm/tiny_sd15_fp16.safetensors");
    let args = |dtype: &'static str| ["generate", "--model", tiny.to_str().unwrap(), "--config", "tiny", "--prompt", "x", "--quiet", "--dtype", dtype].map(String::from);
    for (dtype, says) in [("f16", "f16 is for the GPU (wgpu) backend"), ("bf16", "--dtype bf16: f32 or f16")] {
        let o = stylus(&args(dtype).iter().map(String::as_str).collect::<Vec<_>>());
        assert!(!o.status.success(), "--dtype {dtype} on the CPU");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains(says), "--dtype {dtype}: {err}");
    }
}

fn tiny_pipeline() -> Pipeline {
    let bytes = std::fs::read(fixtures().join("tiny_sd/ldm/tiny_sd15_fp16.safetensors")).unwrap();
    let tok = std::fs::read(fixtures().join("tokenizer/tokenizer.json")).unwrap();
    Pipeline::load(&SdConfig::tiny(), &ModelFiles { checkpoint: Checkpoint::SingleFile(&bytes), tokenizer_json: &tok }, &cpu_device()).unwrap()
}

fn tiny_lora(name: &str) -> stylus_lora::LoraFile {
    let bytes = std::fs::read(fixtures().join("lora").join(name)).unwrap();
    stylus_lora::LoraFile::parse(&bytes, &stylus_lora::ModuleTable::new(&SdConfig::tiny()).unwrap()).unwrap()
}

/// `--lora FILE:W` (repeatable) and `--mask` per image give the library's images for the same adapters.
#[test]
fn generate_with_loras_and_masks_equals_the_library() {
    let model = fixtures().join("tiny_sd/ldm/tiny_sd15_fp16.safetensors");
    let kohya = fixtures().join("lora/kohya_lora.safetensors");
    let locon = fixtures().join("lora/kohya_locon.safetensors");
    let dir = std::env::temp_dir().join(format!("stylus-generate-lora-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let out = dir.join("img.png");
    let (k_arg, l_arg) = (format!("{}:0.7", kohya.display()), format!("{}:0.5", locon.display()));
    let base = [
        "generate", "--model", model.to_str().unwrap(), "--config", "tiny", "--prompt", "a fox", "--steps", "2",
        "--width", "64", "--height", "64", "--seed", "3", "--quiet", "--out", out.to_str().unwrap(),
    ];
    let run = |extra: &[&str]| {
        let o = stylus(&[&base[..], extra].concat());
        assert!(o.status.success(), "stylus failed: {}", String::from_utf8_lossy(&o.stderr));
    };
    let req = |seed, batch| GenerateRequest { prompt: "a fox".into(), steps: 2, width: 64, height: 64, seed, batch, ..Default::default() };
    let (fk, fl) = (tiny_lora("kohya_lora.safetensors"), tiny_lora("kohya_locon.safetensors"));
    let mut pipe = tiny_pipeline();
    let plain = pipe.generate(&req(3, 1), &mut |_| {}).unwrap();

    run(&["--lora", &k_arg, "--lora", &l_arg]);
    let (_, _, rgb) = read_png(&out);
    pipe.set_adapters(&[(&fk, 0.7), (&fl, 0.5)]).unwrap();
    let lib = pipe.generate(&req(3, 1), &mut |_| {}).unwrap();
    assert_eq!(rgb, lib[0].rgb, "CLI with two LoRAs equals the library");
    assert_ne!(rgb, plain[0].rgb, "the adapters change the image");

    run(&["--lora", &k_arg, "--lora", &l_arg, "--mask", "1,0", "--mask", "0,1"]);
    pipe.set_adapters_per_image(&[&fk, &fl], &[vec![0.7, 0.0], vec![0.0, 0.5]]).unwrap();
    let lib = pipe.generate(&req(3, 2), &mut |_| {}).unwrap();
    for (i, img) in lib.iter().enumerate() {
        let (_, _, rgb) = read_png(&dir.join(format!("img-{i}.png")));
        assert_eq!(rgb, img.rgb, "masked image {i}");
    }
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn generate_refuses_bad_lora_arguments_with_a_message() {
    let model = fixtures().join("tiny_sd/ldm/tiny_sd15_fp16.safetensors");
    let kohya = fixtures().join("lora/kohya_lora.safetensors");
    let base = [
        "generate", "--model", model.to_str().unwrap(), "--config", "tiny", "--prompt", "x", "--steps", "1", "--width",
        "64", "--height", "64", "--quiet", "--out", "/nonexistent/x.png",
    ];
    let fails = |extra: &[&str], want: &str| {
        let o = stylus(&[&base[..], extra].concat());
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success() && err.contains(want), "expected `{want}` in: {err}");
    };
    // A checkpoint is not a LoRA: no tensor matches a module.
    fails(&["--lora", model.to_str().unwrap()], "no tensor of this file matches");
    fails(&["--lora", "/nonexistent/a.safetensors:0.5"], "/nonexistent/a.safetensors");
    fails(&["--lora", &format!("{}:0.5", kohya.display()), "--mask", "1,1"], "2 entries for 1");
    fails(&["--mask", "1"], "--mask needs --lora");
}

/// `--device wgpu` (lavapipe here, a GPU elsewhere) gives the CPU image within rounding.
#[test]
fn generate_on_wgpu_matches_the_cpu_image() {
    let model = fixtures().join("tiny_sd/ldm/tiny_sd15_fp16.safetensors");
    let dir = std::env::temp_dir().join(format!("stylus-generate-wgpu-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut images = Vec::new();
    for device in ["cpu", "wgpu"] {
        let out = dir.join(format!("{device}.png"));
        let o = stylus(&[
            "generate", "--model", model.to_str().unwrap(), "--config", "tiny", "--prompt", "a fox", "--steps", "3",
            "--width", "64", "--height", "64", "--seed", "9", "--device", device, "--quiet", "--out", out.to_str().unwrap(),
        ]);
        assert!(o.status.success(), "{device}: {}", String::from_utf8_lossy(&o.stderr));
        images.push(read_png(&out).2);
    }
    std::fs::remove_dir_all(&dir).ok();
    let diff = images[0].iter().zip(&images[1]).map(|(&a, &b)| (a as i16 - b as i16).abs()).max().unwrap();
    assert!(diff <= 2, "cpu and wgpu images differ by {diff}");
    let o = stylus(&["generate", "--model", model.to_str().unwrap(), "--config", "tiny", "--prompt", "x", "--device", "tpu", "--quiet"]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("unknown or not built-in device `tpu`"));
}
