//! `stylus lora inspect` end to end on the committed LoRA fixtures (tests/fixtures/lora): text and
//! JSON reports, sha256 verification, and refusals (SDXL file, garbage) with exit status 1.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn lora(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/lora").join(name)
}

fn stylus(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_stylus")).args(args).output().expect("run stylus")
}

fn text(o: &Output) -> (String, String) {
    (String::from_utf8_lossy(&o.stdout).into_owned(), String::from_utf8_lossy(&o.stderr).into_owned())
}

/// A minimal safetensors file of F32 tensors filled with 0.01.
fn safetensors(tensors: &[(&str, &[usize])]) -> Vec<u8> {
    let mut header = String::from("{");
    let mut offset = 0;
    for (i, (name, shape)) in tensors.iter().enumerate() {
        let n: usize = shape.iter().product::<usize>() * 4;
        let dims: Vec<String> = shape.iter().map(ToString::to_string).collect();
        let sep = if i == 0 { "" } else { "," };
        header.push_str(&format!(r#"{sep}"{name}":{{"dtype":"F32","shape":[{}],"data_offsets":[{offset},{}]}}"#, dims.join(","), offset + n));
        offset += n;
    }
    header.push('}');
    let mut out = (header.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(header.as_bytes());
    for _ in 0..offset / 4 {
        out.extend_from_slice(&0.01f32.to_le_bytes());
    }
    out
}

#[test]
fn inspects_a_kohya_lora() {
    let f = lora("kohya_lora.safetensors");
    let o = stylus(&["lora", "inspect", f.to_str().unwrap(), "--config", "tiny"]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{out}\n{err}");
    for want in [
        "format: kohya LoRA",
        "base model: SD1.x",
        "modules: 192 UNet + 18 text encoder (32 conv, 0 of them k×k; 0 Tucker)",
        "rank: 4",
        "alpha: 2",
        "dtype F16",
        "unmatched keys: 0",
        "ss_output_name: tiny_kohya",
        "ss_sd_model_name: tiny_sd15.safetensors",
        "top tags (3 distinct): astronaut (10), horse (7), mars (3)",
    ] {
        assert!(out.contains(want), "missing `{want}` in:\n{out}");
    }
}

#[test]
fn json_report_for_locon_lokr_and_peft() {
    for (file, format, unet, te, conv3) in [
        ("kohya_locon.safetensors", "LoCon", 278, 18, 50),
        ("lokr.safetensors", "LoKr", 10, 2, 2),
        ("peft_lora.safetensors", "Peft", 128, 12, 0),
    ] {
        let f = lora(file);
        let o = stylus(&["lora", "inspect", f.to_str().unwrap(), "--config", "tiny", "--json"]);
        let (out, err) = text(&o);
        assert!(o.status.success(), "{file}: {err}");
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["format"], format, "{file}");
        assert_eq!(v["base"]["family"], "Sd1", "{file}");
        let s = &v["summary"];
        assert_eq!((s["unet_modules"].as_u64(), s["text_encoder_modules"].as_u64()), (Some(unet), Some(te)), "{file}");
        assert_eq!(s["conv3x3_modules"].as_u64(), Some(conv3), "{file}");
        assert!(v["error"].is_null());
    }
}

#[test]
fn sha256_is_verified() {
    let f = lora("kohya_lora.safetensors");
    let sums = std::fs::read_to_string(lora("../SHA256SUMS")).unwrap();
    let hex = sums.lines().find(|l| l.ends_with("lora/kohya_lora.safetensors")).unwrap().split_whitespace().next().unwrap();
    let o = stylus(&["lora", "inspect", f.to_str().unwrap(), "--config", "tiny", "--sha256", &hex.to_uppercase()]);
    assert!(o.status.success());
    assert!(text(&o).0.contains("sha256: OK"));
    let o = stylus(&["lora", "inspect", f.to_str().unwrap(), "--config", "tiny", "--sha256", &"0".repeat(64)]);
    assert!(!o.status.success());
    assert!(text(&o).1.contains("sha256 mismatch"));
}

#[test]
fn sdxl_and_garbage_are_refused_with_a_reason() {
    let dir = std::env::temp_dir().join(format!("stylus-lora-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let sdxl = dir.join("sdxl.safetensors");
    let k = "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_k";
    std::fs::write(&sdxl, safetensors(&[(&format!("{k}.lora_down.weight"), &[4, 2048]), (&format!("{k}.lora_up.weight"), &[320, 4])])).unwrap();
    let o = stylus(&["lora", "inspect", sdxl.to_str().unwrap()]);
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(1), "{out}\n{err}");
    assert!(out.contains("base model: SDXL"), "{out}");
    assert!(err.contains("SDXL") && err.contains("2048"), "{err}");
    let o = stylus(&["lora", "inspect", sdxl.to_str().unwrap(), "--json"]);
    let v: serde_json::Value = serde_json::from_str(&text(&o).0).unwrap();
    assert_eq!(v["base"]["family"], "Sdxl");
    assert!(v["summary"].is_null());
    let junk = dir.join("junk.safetensors");
    std::fs::write(&junk, b"definitely not safetensors").unwrap();
    let o = stylus(&["lora", "inspect", junk.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).1.contains("not a valid safetensors file"));
    let _ = std::fs::remove_dir_all(&dir);
}
