//! The SD1.5 engine (`stylus-diffusion`, burn wgpu) on the browser's WebGPU: device start-up with
//! the adapter's own limits, networks loaded from checkpoint bytes, async-only tensor reads, and
//! `engineProof` — the tiny fixture's text encoder, one UNet step and a VAE decode (with the
//! default, fused attention kernel) checked against the PyTorch oracle inside the page (the design's
//! riskiest assumption, issue #5 item 7).

use burn::tensor::Device;
use stylus_diffusion::attention::AttentionConfig;
use stylus_diffusion::nn::{from_vec, to_vec_async};
use stylus_diffusion::{AutoencoderKL, Checkpoint, ClipTextModel, Loader, UNet2DConditionModel};
use stylus_sd::checkpoint::{parse, to_f32};
use stylus_sd::SdConfig;
use wasm_bindgen::prelude::*;

fn js(e: impl std::fmt::Display) -> JsError {
    JsError::new(&e.to_string())
}

thread_local! {
    /// The runtime starts once per worker (a second start fails): later callers share the device.
    static DEVICE: std::cell::RefCell<Option<Device>> = const { std::cell::RefCell::new(None) };
}

/// Starts burn's wgpu runtime on the browser's WebGPU (asynchronously; a page must not block), or
/// returns the device started before. Fails with a readable message when WebGPU is missing.
pub async fn webgpu_device() -> Result<Device, JsError> {
    if let Some(device) = DEVICE.with(|d| d.borrow().clone()) {
        return Ok(device);
    }
    let has_gpu = js_sys::Reflect::get(&js_sys::global(), &"navigator".into())
        .ok()
        .and_then(|n| js_sys::Reflect::get(&n, &"gpu".into()).ok())
        .is_some_and(|g| !g.is_undefined() && !g.is_null());
    if !has_gpu {
        return Err(JsError::new("webgpu_missing: this browser has no WebGPU (navigator.gpu is undefined); use a recent Chrome/Edge, or enable WebGPU"));
    }
    let device = Device::wgpu_options().init_async().await.map_err(|e| JsError::new(&format!("webgpu_init: {e:?}")))?;
    DEVICE.with(|d| *d.borrow_mut() = Some(device.clone()));
    Ok(device)
}

/// Oracle tensors by name (f32 / f16 / i64 safetensors).
struct Tensors<'a>(safetensors::SafeTensors<'a>);

impl Tensors<'_> {
    fn f32(&self, key: &str) -> Result<Vec<f32>, JsError> {
        let t = self.0.tensor(key).map_err(|_| js(format!("oracle has no tensor `{key}`")))?;
        if t.dtype() == safetensors::Dtype::I64 {
            return Ok(t.data().chunks_exact(8).map(|c| i64::from_le_bytes(c.try_into().unwrap_or([0; 8])) as f32).collect());
        }
        to_f32(&t).map_err(js)
    }
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    if a.len() != b.len() {
        return f32::INFINITY;
    }
    a.iter().zip(b).fold(0.0, |m, (x, y)| m.max((x - y).abs()))
}

fn max_abs(v: &[f32]) -> f32 {
    v.iter().fold(0.0, |m, x| m.max(x.abs()))
}

fn now_ms() -> f64 {
    js_sys::Date::now()
}

/// Runs the tiny SD1.5 fixture on WebGPU: text encoder on the oracle's ids, one UNet forward
/// (t = oracle), VAE decode of the oracle latent; returns JSON with the max |diff| of each
/// against the PyTorch oracle (`tests/fixtures/tiny_sd/oracle/oracle.safetensors`) and timings.
#[wasm_bindgen(js_name = engineProof)]
pub async fn engine_proof(checkpoint: Vec<u8>, oracle: Vec<u8>) -> Result<String, JsError> {
    let t0 = now_ms();
    let device = webgpu_device().await?;
    let t_init = now_ms() - t0;
    let cfg = SdConfig::tiny();
    let attn = AttentionConfig::default();
    let mut ld = Loader::from_checkpoint(&cfg, Checkpoint::SingleFile(&checkpoint), &device).map_err(js)?;
    let text = ClipTextModel::load(&cfg.text, &mut ld).map_err(js)?;
    let unet = UNet2DConditionModel::load(&cfg.unet, &mut ld).map_err(js)?;
    let vae = AutoencoderKL::load(&cfg.vae, &mut ld).map_err(js)?;
    ld.finish().map_err(js)?;
    let t_load = now_ms() - t0 - t_init;
    let o = Tensors(parse(&oracle).map_err(js)?);

    let ids: Vec<u32> = o.f32("input_ids")?.iter().map(|&v| v as u32).collect();
    let emb = to_vec_async(text.forward(&ids, 2, 0, &attn).map_err(js)?).await.map_err(js)?;
    let want_emb = o.f32("text_embeddings")?;

    let sample = from_vec(o.f32("unet_forward.sample")?, [1, 4, 8, 8], &device).map_err(js)?;
    let ctx = from_vec(o.f32("unet_forward.encoder_hidden_states")?, [1, 77, 8], &device).map_err(js)?;
    let eps = to_vec_async(unet.forward(sample, &o.f32("unet_forward.timestep")?, &ctx, &attn).map_err(js)?).await.map_err(js)?;
    let want_eps = o.f32("unet_forward.out")?;

    let z = from_vec(o.f32("vae_decode.latent")?, [1, 4, 8, 8], &device).map_err(js)?;
    let img = to_vec_async(vae.decode(z, &attn).map_err(js)?).await.map_err(js)?;
    let want_img = o.f32("vae_decode.out")?;
    let t_run = now_ms() - t0 - t_init - t_load;
    // the default attention on WebGPU is the fused kernel: say whether it runs here and computes
    // (every value 0.5, so every output is 0.5), not whether it was merely launched
    let probe = from_vec(vec![0.5; 2 * 8], [1, 2, 1, 8], &device).map_err(js)?;
    let fused = match stylus_diffusion::gpu::fused_attention(&probe, &probe, &probe, false) {
        Some(out) => to_vec_async(out).await.map_err(js)?.iter().all(|v| (v - 0.5).abs() <= 1e-6),
        None => false,
    };

    let report = serde_json::json!({
        "device": format!("{device:?}"),
        "text_embeddings": { "max_diff": max_diff(&emb, &want_emb), "max_ref": max_abs(&want_emb), "n": emb.len() },
        "unet_forward": { "max_diff": max_diff(&eps, &want_eps), "max_ref": max_abs(&want_eps), "n": eps.len() },
        "vae_decode": { "max_diff": max_diff(&img, &want_img), "max_ref": max_abs(&want_img), "n": img.len() },
        "fused_attention": fused,
        "ms": { "init": t_init, "load": t_load, "run": t_run },
    });
    Ok(report.to_string())
}
