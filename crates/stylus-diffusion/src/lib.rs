//! SD1.5's networks in burn 0.22 — CLIP text encoder (`clip`), UNet2DConditionModel (`unet`),
//! AutoencoderKL (`vae`) — loaded from `stylus_sd::checkpoint` resolutions (`load`), and the
//! text-to-image pipeline (`pipeline`) with a platform-independent seeded noise source (`rng`).
//!
//! Ports of diffusers 0.42 (`unet_2d_condition.py`, `unet_2d_blocks.py`, `resnet.py`,
//! `attention.py`, `attention_processor.py`, `transformer_2d.py`, `autoencoder_kl.py`, `vae.py`)
//! and transformers 5 `modeling_clip.py`; candle's `stable_diffusion` module was a style reference.
//!
//! Backend: burn 0.22 tensors carry no backend type parameter — a [`Device`] picks the backend
//! at run time, so every network here is backend-agnostic by construction. The `flex` feature
//! (default) enables burn's pure-Rust CPU backend (`Device::flex()`); a GPU/WebGPU backend is one
//! more cargo feature, with no change to this code.
//!
//! Struct fields are named after the checkpoint's (diffusers) key segments, and each network is
//! built by walking those paths through a [`load::Loader`]; see `load.rs` for the one mapping.

pub mod attention;
pub mod clip;
pub mod gpu;
pub mod kernels;
pub mod load;
pub mod lora;
pub mod nn;
pub mod pipeline;
pub mod preview;
pub mod resnet;
pub mod rng;
pub mod unet;
pub mod vae;
pub mod vae_tiled;
pub mod warm_up;

pub use burn::tensor::Device;
pub use clip::ClipTextModel;
pub use load::{Checkpoint, Loader};
pub use lora::{ApplyReport, LoraHost};
pub use pipeline::{GenerateRequest, Generation, Image, ModelFiles, Pipeline, Progress, Stage};
pub use preview::Preview;
pub use rng::{NoiseSource, RecordedNoise, SeededNoise};
pub use unet::UNet2DConditionModel;
pub use vae::AutoencoderKL;
pub use vae_tiled::VaeTiling;
pub use warm_up::WARM_UP_PARTS;

/// Helpers shared by the unit tests.
#[cfg(test)]
pub(crate) mod testing {
    /// `n` deterministic values in [-1, 1) (a multiplicative hash of the index, offset by `seed`).
    pub fn pseudo(n: usize, seed: u32) -> Vec<f32> {
        (0..n).map(|i| ((i as u32).wrapping_mul(2654435761).wrapping_add(seed) % 1000) as f32 / 500.0 - 1.0).collect()
    }

    /// Largest elementwise |a − b| (over the shorter length).
    pub fn max_diff(a: &[f32], b: &[f32]) -> f32 {
        a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
    }
}

/// The CPU device of the default build (burn's `flex` backend).
#[cfg(feature = "flex")]
pub fn cpu_device() -> Device {
    Device::flex()
}

/// The default wgpu adapter (Vulkan/Metal/DX12 natively; lavapipe on a machine without a GPU),
/// initialized once per process. In the browser use `Device::wgpu_options().init_async()`.
#[cfg(all(feature = "wgpu", not(target_arch = "wasm32")))]
pub fn wgpu_device() -> Result<Device> {
    static DEVICE: std::sync::OnceLock<std::result::Result<Device, String>> = std::sync::OnceLock::new();
    DEVICE.get_or_init(|| Device::wgpu_options().init().map_err(|e| format!("{e:?}"))).clone().map_err(|e| Error::Backend(format!("no wgpu adapter: {e}")))
}

/// A device by name: `cpu` (burn `flex`) or `wgpu` (when built with the `wgpu` feature).
pub fn device_named(name: &str) -> Result<Device> {
    match name {
        #[cfg(feature = "flex")]
        "cpu" | "flex" => Ok(cpu_device()),
        #[cfg(all(feature = "wgpu", not(target_arch = "wasm32")))]
        "wgpu" | "gpu" => wgpu_device(),
        other => Err(Error::Request(format!("unknown or not built-in device `{other}` (this build has: {})", built_devices().join(", ")))),
    }
}

/// Device names this build can open.
pub fn built_devices() -> Vec<&'static str> {
    let mut v = Vec::new();
    if cfg!(feature = "flex") {
        v.push("cpu");
    }
    if cfg!(all(feature = "wgpu", not(target_arch = "wasm32"))) {
        v.push("wgpu");
    }
    v
}

/// The float dtype a device stores and computes the networks in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Precision {
    #[default]
    F32,
    /// Half the weights' memory (SD1.5: ~2.1 instead of ~4.3 GB; CLIP's token table 76 MB, under
    /// WebGPU's default 128 MiB binding) and activations; f16 arithmetic in burn's element-wise
    /// kernels (the GEMMs, norms and fused attention sum in f32). The schedulers' latents stay f32
    /// on the host (the UNet's input and ε pass through f16). A full-size UNet step ran 27% faster
    /// on an H200 (BENCHMARKS.md); its ε drifts by ~5e-4 relative.
    F16,
}

impl Precision {
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "f32" | "fp32" => Some(Precision::F32),
            "f16" | "fp16" | "half" => Some(Precision::F16),
            _ => None,
        }
    }
}

/// Makes every float tensor later created on `device` (weights, activations, the UNet's input)
/// `precision`: call it before anything is loaded there. An error on the CPU backend, where the device lacks
/// the dtype (a GPU without `shader-f16`) or already holds tensors.
pub fn set_precision(device: &mut Device, precision: Precision) -> Result<()> {
    let dtype = match precision {
        Precision::F32 => return Ok(()),
        Precision::F16 => burn::tensor::FloatDType::F16,
    };
    #[cfg(feature = "flex")]
    if *device == Device::flex() {
        // burn-flex computes f16 far slower than f32, and the engine's CPU path gave wrong images in
        // it (not investigated: the GPU is what f16 is for)
        return Err(Error::Request("f16 is for the GPU (wgpu) backend; on the CPU use f32".into()));
    }
    if !device.supports_dtype(dtype) {
        return Err(Error::Request(format!("this device ({device:?}) has no f16 support; use f32")));
    }
    device.configure(dtype).map_err(|e| Error::Backend(format!("setting f16 on {device:?}: {e:?}")))
}

/// The device `STYLUS_DEVICE` names (`cpu` when unset): how the parity tests run on each backend.
pub fn device_from_env() -> Result<Device> {
    device_named(std::env::var("STYLUS_DEVICE").as_deref().unwrap_or("cpu"))
}

/// Every failure of this crate. Bad input gives one of these, never a panic.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Checkpoint parsing/resolution, tokenizer and scheduler errors.
    #[error(transparent)]
    Sd(#[from] stylus_sd::Error),
    #[error("the model needs parameter `{0}`, which the checkpoint does not provide")]
    MissingParam(String),
    #[error("{count} checkpoint tensors are not used by the model (first: {first:?})")]
    UnusedParams { count: usize, first: Vec<String> },
    #[error("parameter `{path}` has shape {found:?}, the model expects {expected:?}")]
    ParamShape { path: String, expected: Vec<usize>, found: Vec<usize> },
    /// LoRA refusals (bad weight, shape mismatch with this model, …).
    #[error(transparent)]
    Lora(#[from] stylus_lora::Error),
    #[error("invalid request: {0}")]
    Request(String),
    /// The caller cancelled a generation (`Pipeline::generate_async`).
    #[error("cancelled")]
    Cancelled,
    #[error("backend: {0}")]
    Backend(String),
}

pub type Result<T> = std::result::Result<T, Error>;
