//! Shared by the full-size benchmarks: a seeded uniform generator and the SD1.5 UNet built from
//! random weights (speed does not depend on the values) on a chosen device.

use std::collections::HashMap;

use burn::tensor::{Device, FloatDType};
use stylus_diffusion::{Loader, LoraHost, UNet2DConditionModel};
use stylus_sd::{sd_params, Component, SdConfig};

/// The benches' `--dtype`: `f32` (the device default) or `f16` (float tensors stored in f16) on
/// `device` (named `name` in errors).
pub fn set_dtype(device: &mut Device, name: &str, dtype: &str) -> Result<(), String> {
    match dtype {
        "f32" => Ok(()),
        "f16" => device.configure(FloatDType::F16).map_err(|e| format!("f16 on {name}: {e:?}")),
        other => Err(format!("--dtype {other}: f32 or f16")),
    }
}

/// xorshift64* → uniform in [-a, a].
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self, a: f32) -> f32 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        let u = (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 40) as f32 / (1u64 << 24) as f32;
        (2.0 * u - 1.0) * a
    }

    pub fn fill(&mut self, n: usize, a: f32) -> Vec<f32> {
        (0..n).map(|_| self.next(a)).collect()
    }
}

/// The full-size UNet with uniform ±0.02 weights (text encoder / VAE slots zero-filled, then
/// dropped), its LoRA registry, and its parameter count.
pub fn random_unet(cfg: &SdConfig, rng: &mut Rng, device: &Device) -> (UNet2DConditionModel, LoraHost, usize) {
    let values: HashMap<String, Vec<f32>> = sd_params(cfg)
        .into_iter()
        .map(|p| {
            let v = if p.component == Component::Unet { rng.fill(p.numel(), 0.02) } else { vec![0.0; p.numel()] };
            (p.path, v)
        })
        .collect();
    let mut ld = Loader::from_values(cfg, values, device).expect("values");
    ld.retain(Component::Unet);
    let unet = UNet2DConditionModel::load(&cfg.unet, &mut ld).expect("unet");
    let params = sd_params(cfg).iter().filter(|p| p.component == Component::Unet).map(|p| p.numel()).sum();
    (unet, ld.take_lora_host(), params)
}
