//! Shared helpers for the stylus-lora integration tests: committed fixtures
//! (tests/fixtures/lora, tests/fixtures/tiny_sd), the tiny model's base weights loaded through
//! `stylus_sd::checkpoint`, and an in-memory safetensors writer for crafted files.
#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

use safetensors::tensor::TensorView;
use safetensors::{Dtype, SafeTensors};
use stylus_lora::{ModuleKey, ModuleTable};
use stylus_sd::checkpoint::{parse, resolve_diffusers, resolve_single_file, to_f32};
use stylus_sd::{Component, SdConfig};

pub fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures")
}

pub fn fixture(rel: &str) -> Vec<u8> {
    let p = fixtures().join(rel);
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

pub fn lora(name: &str) -> Vec<u8> {
    fixture(&format!("lora/{name}"))
}

pub fn tiny_table() -> ModuleTable {
    ModuleTable::new(&SdConfig::tiny()).unwrap()
}

pub fn sd15_table() -> ModuleTable {
    ModuleTable::new(&SdConfig::v1_5()).unwrap()
}

/// Base weights of the tiny model by module (`.weight` params of UNet and text encoder), f32.
pub fn base_weights_diffusers() -> HashMap<ModuleKey, (Vec<usize>, Vec<f32>)> {
    let cfg = SdConfig::tiny();
    let mut out = HashMap::new();
    for (comp, file) in [
        (Component::Unet, "tiny_sd/diffusers/unet/diffusion_pytorch_model.safetensors"),
        (Component::TextEncoder, "tiny_sd/diffusers/text_encoder/model.safetensors"),
    ] {
        let bytes = fixture(file);
        let st = parse(&bytes).unwrap();
        for r in resolve_diffusers(comp, &st, &cfg).unwrap().params {
            if let Some(m) = r.spec.path.strip_suffix(".weight") {
                out.insert(ModuleKey::new(comp, m), (r.spec.shape.clone(), to_f32(&r.view).unwrap()));
            }
        }
    }
    out
}

/// The same from the original single file (ldm keys, F16).
pub fn base_weights_ldm() -> HashMap<ModuleKey, (Vec<usize>, Vec<f32>)> {
    let bytes = fixture("tiny_sd/ldm/tiny_sd15_fp16.safetensors");
    let st = parse(&bytes).unwrap();
    let mut out = HashMap::new();
    for r in resolve_single_file(&st, &SdConfig::tiny()).unwrap().params {
        if r.spec.component == Component::Vae {
            continue;
        }
        if let Some(m) = r.spec.path.strip_suffix(".weight") {
            out.insert(ModuleKey::new(r.spec.component, m), (r.spec.shape.clone(), to_f32(&r.view).unwrap()));
        }
    }
    out
}

/// One tensor to write.
pub struct T {
    pub name: String,
    pub dtype: Dtype,
    pub shape: Vec<usize>,
    pub data: Vec<u8>,
}

pub fn f32_t(name: &str, shape: &[usize], values: &[f32]) -> T {
    T { name: name.into(), dtype: Dtype::F32, shape: shape.to_vec(), data: values.iter().flat_map(|v| v.to_le_bytes()).collect() }
}

/// A tensor of `shape` filled with a small deterministic pattern.
pub fn pattern_t(name: &str, shape: &[usize]) -> T {
    let n: usize = shape.iter().product();
    let v: Vec<f32> = (0..n).map(|i| ((i * 37 % 17) as f32 - 8.0) * 0.01).collect();
    f32_t(name, shape, &v)
}

pub fn write(tensors: &[T], meta: Option<BTreeMap<String, String>>) -> Vec<u8> {
    let views: Vec<(String, TensorView<'_>)> =
        tensors.iter().map(|t| (t.name.clone(), TensorView::new(t.dtype, t.shape.clone(), &t.data).unwrap())).collect();
    safetensors::serialize(views, meta.map(|m| m.into_iter().collect())).unwrap()
}

/// Reads every tensor and the metadata of a file.
pub fn read(bytes: &[u8]) -> (Vec<T>, Option<BTreeMap<String, String>>) {
    let (_, meta) = SafeTensors::read_metadata(bytes).unwrap();
    let st = SafeTensors::deserialize(bytes).unwrap();
    let mut ts: Vec<T> = st
        .tensors()
        .into_iter()
        .map(|(name, v)| T { name, dtype: v.dtype(), shape: v.shape().to_vec(), data: v.data().to_vec() })
        .collect();
    ts.sort_by(|a, b| a.name.cmp(&b.name));
    (ts, meta.metadata().clone().map(|m| m.into_iter().collect()))
}

/// Rewrites a file: `rename` maps each key to a new key (`None` drops it).
pub fn rewrite(bytes: &[u8], rename: impl Fn(&str) -> Option<String>, meta: Option<BTreeMap<String, String>>) -> Vec<u8> {
    let (ts, _) = read(bytes);
    let ts: Vec<T> = ts.into_iter().filter_map(|t| rename(&t.name).map(|name| T { name, ..t })).collect();
    write(&ts, meta)
}

/// Converts every F16 tensor to `to` (F32 or BF16).
pub fn convert_f16(bytes: &[u8], to: Dtype) -> Vec<u8> {
    let (ts, meta) = read(bytes);
    let ts: Vec<T> = ts
        .into_iter()
        .map(|t| {
            assert_eq!(t.dtype, Dtype::F16);
            let vals = t.data.chunks_exact(2).map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32());
            let data: Vec<u8> = match to {
                Dtype::F32 => vals.flat_map(f32::to_le_bytes).collect(),
                Dtype::BF16 => vals.flat_map(|v| half::bf16::from_f32(v).to_le_bytes()).collect(),
                other => panic!("{other:?}"),
            };
            T { dtype: to, data, ..t }
        })
        .collect();
    write(&ts, meta)
}

pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).fold(0.0f32, |m, (x, y)| m.max((x - y).abs()))
}
