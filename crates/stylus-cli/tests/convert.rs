//! `stylus convert` end to end on the tiny SD1.5 fixture: the converted folder (manifest + shards
//! within the limit) generates the same PNG as the original file with `stylus generate --model DIR`,
//! a diffusers folder converts too, and bad inputs (pickles, non-SD1.5, foreign output folders,
//! wrong --config, corrupt shards) are refused with a message.

use std::path::{Path, PathBuf};
use std::process::Command;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures")
}

fn stylus(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_stylus")).args(args).output().expect("run stylus")
}

fn ok(args: &[&str]) -> String {
    let o = stylus(args);
    assert!(o.status.success(), "stylus {args:?} failed: {}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn fails(args: &[&str], want: &str) {
    let o = stylus(args);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains(want), "stylus {args:?}: expected `{want}` in: {err}");
}

/// A fresh scratch folder for one test.
fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("stylus-convert-{name}-{}", std::process::id()));
    std::fs::remove_dir_all(&d).ok();
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// `generate` on the tiny config into `out`, returning the PNG bytes.
fn generate(model: &Path, out: &Path, extra: &[&str]) -> Vec<u8> {
    let args = [
        "generate",
        "--model",
        model.to_str().unwrap(),
        "--config",
        "tiny",
        "--prompt",
        "a watercolor fox",
        "--steps",
        "2",
        "--width",
        "64",
        "--height",
        "64",
        "--seed",
        "11",
        "--quiet",
        "--out",
        out.to_str().unwrap(),
    ];
    ok(&[&args[..], extra].concat());
    std::fs::read(out).unwrap()
}

fn shard_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).filter(|p| p.extension().is_some_and(|e| e == "bin")).collect();
    v.sort();
    v
}

/// `stylus convert` of `model` for the tiny config into `out`, quietly, with `extra` flags; its output.
fn convert_tiny(model: &Path, out: &Path, extra: &[&str]) -> String {
    let mut args = vec!["convert", "--model", model.to_str().unwrap(), "--config", "tiny", "--out", out.to_str().unwrap(), "--quiet"];
    args.extend(extra);
    ok(&args)
}

#[test]
fn convert_then_generate_equals_the_original() {
    let tmp = scratch("roundtrip");
    let model = fixtures().join("tiny_sd/ldm/tiny_sd15_fp16.safetensors");
    let dir = tmp.join("tiny-f16");
    let limit = 256 * 1024;
    let out = convert_tiny(&model, &dir, &["--dtype", "f16", "--shard-bytes", &limit.to_string()]);
    let manifest: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.join("manifest.json")).unwrap()).unwrap();
    let shards = shard_files(&dir);
    let summary = format!("converted {} tensors (f16) into {} shards", manifest["tensors"].as_array().unwrap().len(), shards.len());
    assert!(out.contains(&summary), "{out}");
    assert_eq!(shards.len(), manifest["shards"].as_array().unwrap().len());
    assert!(shards.len() >= 8, "the tiny model spans several 256 KiB shards");
    assert!(shards.iter().all(|p| std::fs::metadata(p).unwrap().len() <= limit));
    assert_eq!(manifest["dtype"], "f16");
    assert_eq!(manifest["config"], "tiny");

    let original = generate(&model, &tmp.join("a.png"), &[]);
    let converted = generate(&dir, &tmp.join("b.png"), &[]);
    assert_eq!(converted, original, "generate --model DIR equals generate on the original (same seed)");

    // Converting again into the same folder replaces the earlier conversion (one 64 MiB shard now).
    convert_tiny(&model, &dir, &[]);
    assert_eq!(shard_files(&dir).len(), 1, "old shards removed");
    assert_eq!(generate(&dir, &tmp.join("c.png"), &[]), original);

    // For the browser: no VAE encoder, and a gzip copy of every shard (checked: listed with its size
    // and sha256, decompresses to the shard); it generates the same images.
    let web = tmp.join("tiny-web");
    let out = convert_tiny(&model, &web, &["--shard-bytes", "262144", "--gzip", "--no-vae-encoder"]);
    assert!(out.contains("no VAE encoder") && out.contains("; gzip "), "{out}");
    let m: serde_json::Value = serde_json::from_slice(&std::fs::read(web.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(m["vae_encoder"], false);
    for s in m["shards"].as_array().unwrap() {
        let gz = &s["gzip"];
        let z = std::fs::read(web.join(gz["file"].as_str().unwrap())).unwrap();
        assert_eq!(z.len() as u64, gz["bytes"].as_u64().unwrap());
        assert_eq!(stylus_sd::convert::hex(&<sha2::Sha256 as sha2::Digest>::digest(&z)), gz["sha256"].as_str().unwrap());
        let mut raw = Vec::new();
        std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&z[..]), &mut raw).unwrap();
        assert_eq!(raw, std::fs::read(web.join(s["file"].as_str().unwrap())).unwrap(), "{} decompresses to its shard", gz["file"]);
    }
    assert_eq!(generate(&web, &tmp.join("w.png"), &[]), original);
    convert_tiny(&model, &web, &[]);
    assert!(std::fs::read_dir(&web).unwrap().all(|e| !e.unwrap().path().to_string_lossy().ends_with(".gz")), "old gzip copies removed");

    // A diffusers folder converts too; q8 runs (its drift is measured in stylus-diffusion's tests).
    let q8 = tmp.join("tiny-q8");
    let folder = fixtures().join("tiny_sd/diffusers");
    let out = convert_tiny(&folder, &q8, &["--dtype", "q8"]);
    assert!(out.contains("int8"), "{out}");
    let q8_png = generate(&q8, &tmp.join("d.png"), &[]);
    assert!(q8_png.starts_with(b"\x89PNG"), "a PNG");
    std::fs::remove_dir_all(&tmp).ok();
}

#[test]
fn convert_and_converted_folders_refuse_bad_input() {
    let tmp = scratch("refuse");
    let tiny = fixtures().join("tiny_sd/ldm/tiny_sd15_fp16.safetensors");
    let pickle = fixtures().join("tiny_sd/ldm/tiny_pickle.ckpt");
    let dir = tmp.join("out");
    let dir_s = dir.to_str().unwrap();
    fails(&["convert", "--model", pickle.to_str().unwrap(), "--config", "tiny", "--out", dir_s, "--quiet"], "pickled");
    fails(&["convert", "--model", tiny.to_str().unwrap(), "--out", dir_s, "--quiet"], "SD1.5");
    fails(&["convert", "--model", tiny.to_str().unwrap(), "--config", "tiny", "--dtype", "int4", "--out", dir_s, "--quiet"], "f16, q8 or f32");
    fails(&["convert", "--model", tiny.to_str().unwrap(), "--config", "tiny", "--shard-bytes", "1000", "--out", dir_s, "--quiet"], "multiple of 16");
    let foreign = tmp.join("foreign");
    std::fs::create_dir_all(&foreign).unwrap();
    std::fs::write(foreign.join("notes.txt"), "mine").unwrap();
    fails(&["convert", "--model", tiny.to_str().unwrap(), "--config", "tiny", "--out", foreign.to_str().unwrap(), "--quiet"], "holds other files");
    assert!(foreign.join("notes.txt").exists(), "nothing of the user's is removed");

    ok(&["convert", "--model", tiny.to_str().unwrap(), "--config", "tiny", "--out", dir_s, "--shard-bytes", "262144", "--quiet"]);
    fails(&["convert", "--model", dir_s, "--config", "tiny", "--out", tmp.join("again").to_str().unwrap(), "--quiet"], "already a converted model");
    fails(&["generate", "--model", dir_s, "--prompt", "x", "--quiet", "--out", tmp.join("x.png").to_str().unwrap()], "converted for --config tiny");
    let shard = shard_files(&dir)[2].clone();
    let mut bytes = std::fs::read(&shard).unwrap();
    bytes[64] ^= 1;
    std::fs::write(&shard, bytes).unwrap();
    fails(
        &[
            "generate",
            "--model",
            dir_s,
            "--config",
            "tiny",
            "--prompt",
            "x",
            "--steps",
            "1",
            "--width",
            "64",
            "--height",
            "64",
            "--quiet",
            "--out",
            tmp.join("x.png").to_str().unwrap(),
        ],
        "sha256",
    );
    std::fs::remove_dir_all(&tmp).ok();
}
