//! `Generator`: the browser's text-to-image object (wasm-bindgen, WebGPU through burn wgpu). Async
//! methods return Promises; state lives behind `Rc<RefCell>` so a generation can be cancelled from
//! another message while it awaits the GPU. Meant to run inside a Web Worker (`www/engine-worker.js`)
//! so the page never freezes; errors are `Error`s whose message starts with a stable code.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use burn::tensor::Device;
use serde_json::Value;
use stylus_diffusion::{set_precision, Checkpoint, GenerateRequest, Image, ModelFiles, Pipeline, Precision, Preview, Progress, SeededNoise, VaeTiling};
use stylus_lora::{verify_sha256, LoraFile, ModuleTable};
use stylus_sd::{SchedulerKind, SdConfig};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::future_to_promise;

use crate::engine::webgpu_device;

/// Largest decoder activation allowed before VAE decoding is tiled (WebGPU's default binding limit).
const VAE_BUDGET_BYTES: u64 = 128 << 20;

fn coded(code: &str, e: impl std::fmt::Display) -> JsValue {
    JsError::new(&format!("{code}: {e}")).into()
}

struct State {
    device: Device,
    precision: Precision,
    pipe: Option<Pipeline>,
    loras: Vec<LoraFile>,
}

/// `f32` (also when absent or empty), `f16`, or `auto` (`None`: f16 where the adapter has
/// `shader-f16`, decided once the device is up).
fn parse_precision(name: Option<&str>) -> Result<Option<Precision>, JsValue> {
    match name.unwrap_or("") {
        "" => Ok(Some(Precision::F32)),
        "auto" => Ok(None),
        other => Precision::parse(other).map(Some).ok_or_else(|| coded("bad_request", format!("precision `{other}`: f32, f16 or auto"))),
    }
}

/// SD1.5 on the visitor's GPU: `Generator.create()`, `loadModel`, `setAdapters`, `generate`, `cancel`.
#[wasm_bindgen]
pub struct Generator {
    state: Rc<RefCell<State>>,
    cancelled: Rc<Cell<bool>>,
    busy: Rc<Cell<bool>>,
}

fn config(name: &str) -> Result<SdConfig, JsValue> {
    match name {
        "sd15" | "v1_5" | "" => Ok(SdConfig::v1_5()),
        "tiny" => Ok(SdConfig::tiny()),
        other => Err(coded("bad_config", format!("unknown model config `{other}` (sd15 or tiny)"))),
    }
}

/// Reads the generation request (the CLI's options, JSON) with the Stylus reference defaults.
fn request(json: &str) -> Result<GenerateRequest, JsValue> {
    let v: Value = serde_json::from_str(json).map_err(|e| coded("bad_request", e))?;
    let d = GenerateRequest::default();
    let num = |k: &str, def: f64| -> Result<f64, JsValue> {
        match v.get(k) {
            None | Some(Value::Null) => Ok(def),
            Some(x) => x.as_f64().filter(|f| f.is_finite()).ok_or_else(|| coded("bad_request", format!("`{k}` must be a number"))),
        }
    };
    let text = |k: &str| v.get(k).and_then(Value::as_str).unwrap_or("").to_string();
    let int = |k: &str, def: usize| -> Result<usize, JsValue> {
        let f = num(k, def as f64)?;
        if f < 0.0 || f.fract() != 0.0 || f > 1e9 {
            return Err(coded("bad_request", format!("`{k}` must be a non-negative integer")));
        }
        Ok(f as usize)
    };
    let scheduler = match v.get("scheduler").and_then(Value::as_str) {
        Some(s) => s.parse::<SchedulerKind>().map_err(|e| coded("bad_request", e))?,
        None => d.scheduler,
    };
    let seed = num("seed", 0.0)?;
    if seed < 0.0 || seed.fract() != 0.0 || seed > 9.007e15 {
        return Err(coded("bad_request", "`seed` must be a non-negative integer"));
    }
    Ok(GenerateRequest {
        prompt: text("prompt"),
        negative: text("negative"),
        steps: int("steps", d.steps)?,
        cfg_scale: num("cfg", f64::from(d.cfg_scale))? as f32,
        seed: seed as u64,
        width: int("width", d.width)?,
        height: int("height", d.height)?,
        scheduler,
        batch: int("batch", d.batch)?,
        clip_skip: int("clipSkip", 0)?,
        latents: None,
        preview_every: int("previewEvery", 0)?,
    })
}

#[wasm_bindgen]
impl Generator {
    /// Starts WebGPU (`webgpu_missing` / `webgpu_init` errors say why it cannot). `precision`: `f32`
    /// (the default), `f16` (half the GPU memory; `webgpu_f16` where the adapter lacks
    /// `shader-f16`) or `auto` (f16 where the adapter has it). The models loaded later are stored
    /// and computed in it. f16 is checked against f32 natively (`tests/precision.rs`: image PSNR
    /// 54 dB on lavapipe); no browser here has `shader-f16`, so it is not the default.
    pub fn create(precision: Option<String>) -> js_sys::Promise {
        future_to_promise(async move {
            // a bad name fails before the device starts; a refused f16 leaves it unconfigured, so a
            // later `create` in this worker can still take f32
            let asked = parse_precision(precision.as_deref())?;
            let mut device = webgpu_device().await.map_err(JsValue::from)?;
            let precision = asked.unwrap_or_else(|| if device.supports_dtype(burn::tensor::FloatDType::F16) { Precision::F16 } else { Precision::F32 });
            set_precision(&mut device, precision).map_err(|e| coded("webgpu_f16", e))?;
            let state = State { device, precision, pipe: None, loras: Vec::new() };
            Ok(Generator { state: Rc::new(RefCell::new(state)), cancelled: Rc::new(Cell::new(false)), busy: Rc::new(Cell::new(false)) }.into())
        })
    }

    /// `f32` or `f16`: what [`Generator::create`] settled on.
    #[wasm_bindgen(getter)]
    pub fn precision(&self) -> String {
        match self.state.borrow().precision {
            Precision::F32 => "f32",
            Precision::F16 => "f16",
        }
        .into()
    }

    /// Loads an SD1.5 checkpoint (original single-file `.safetensors` bytes) and the CLIP
    /// `tokenizer.json`; `config` is `sd15` or `tiny`. Verifies `sha256` first when given.
    #[wasm_bindgen(js_name = loadModel)]
    pub fn load_model(&self, checkpoint: Vec<u8>, tokenizer_json: Vec<u8>, config_name: String, sha256: Option<String>) -> Result<(), JsValue> {
        if self.busy.get() {
            return Err(coded("busy", "a generation is running"));
        }
        if let Some(h) = sha256.as_deref().filter(|h| !h.is_empty()) {
            verify_sha256(&checkpoint, h).map_err(|e| coded("hash_mismatch", e))?;
        }
        let cfg = config(&config_name)?;
        let mut st = self.state.try_borrow_mut().map_err(|_| coded("busy", "the model is in use"))?;
        let files = ModelFiles { checkpoint: Checkpoint::SingleFile(&checkpoint), tokenizer_json: &tokenizer_json };
        let pipe = Pipeline::load(&cfg, &files, &st.device).map_err(|e| coded("bad_model", e))?;
        st.pipe = Some(pipe);
        st.loras.clear();
        Ok(())
    }

    /// Loads a converted model (`stylus convert`): `manifest_json` is its `manifest.json`, `shards`
    /// the bytes of its shards in manifest order (each checked against the manifest's sha256), and
    /// the CLIP `tokenizer.json`. The architecture is the manifest's `config` (`sd15` or `tiny`).
    #[wasm_bindgen(js_name = loadConvertedModel)]
    pub fn load_converted_model(&self, manifest_json: String, shards: js_sys::Array, tokenizer_json: Vec<u8>) -> Result<(), JsValue> {
        if self.busy.get() {
            return Err(coded("busy", "a generation is running"));
        }
        let v: Value = serde_json::from_str(&manifest_json).map_err(|e| coded("bad_model", format!("not a converted-model manifest: {e}")))?;
        let cfg = config(v.get("config").and_then(Value::as_str).unwrap_or(""))?;
        let mut st = self.state.try_borrow_mut().map_err(|_| coded("busy", "the model is in use"))?;
        let fetch = |i: usize, info: &stylus_sd::convert::ShardInfo| -> Result<Vec<u8>, String> {
            let part = shards.get(i as u32);
            if part.is_undefined() {
                return Err(format!("shard {i} ({}) was not given", info.file));
            }
            Ok(js_sys::Uint8Array::new(&part).to_vec())
        };
        let ld = stylus_diffusion::Loader::from_manifest(&cfg, manifest_json.as_bytes(), fetch, &st.device).map_err(|e| coded("bad_model", e))?;
        let pipe = Pipeline::from_loader(&cfg, ld, &tokenizer_json).map_err(|e| coded("bad_model", e))?;
        st.pipe = Some(pipe);
        st.loras.clear();
        Ok(())
    }

    /// Adds a LoRA file (verified against `sha256` when given, as the catalog publishes it);
    /// returns its index for `setAdapters`. Refusals (SDXL LoRA, corrupt file, …) are `bad_lora`.
    #[wasm_bindgen(js_name = addLora)]
    pub fn add_lora(&self, bytes: Vec<u8>, sha256: Option<String>) -> Result<usize, JsValue> {
        if let Some(h) = sha256.as_deref().filter(|h| !h.is_empty()) {
            verify_sha256(&bytes, h).map_err(|e| coded("hash_mismatch", e))?;
        }
        let mut st = self.state.try_borrow_mut().map_err(|_| coded("busy", "the model is in use"))?;
        let cfg = st.pipe.as_ref().ok_or_else(|| coded("no_model", "load a model first"))?.config().clone();
        let table = ModuleTable::new(&cfg).map_err(|e| coded("bad_lora", e))?;
        let lora = LoraFile::parse(&bytes, &table).map_err(|e| coded("bad_lora", e))?;
        st.loras.push(lora);
        Ok(st.loras.len() - 1)
    }

    /// Per-image adapter weights, `weights[image][lora]` as a JSON array of arrays (Stylus' masks ×
    /// final weights); `[]` removes every adapter. The next `generate` must have that many images.
    #[wasm_bindgen(js_name = setAdapters)]
    pub fn set_adapters(&self, weights_json: String) -> Result<(), JsValue> {
        if self.busy.get() {
            return Err(coded("busy", "a generation is running"));
        }
        let weights: Vec<Vec<f32>> = serde_json::from_str(&weights_json).map_err(|e| coded("bad_request", e))?;
        let mut st = self.state.try_borrow_mut().map_err(|_| coded("busy", "the model is in use"))?;
        let State { pipe, loras, .. } = &mut *st;
        let pipe = pipe.as_mut().ok_or_else(|| coded("no_model", "load a model first"))?;
        if weights.is_empty() {
            pipe.clear_adapters();
            return Ok(());
        }
        let files: Vec<&LoraFile> = loras.iter().collect();
        pipe.set_adapters_per_image(&files, &weights).map_err(|e| coded("bad_adapters", e))?;
        Ok(())
    }

    /// Generates images for a JSON request (`prompt`, `negative`, `steps`, `cfg`, `seed`, `width`,
    /// `height`, `scheduler`, `batch`, `previewEvery`); `onProgress({stage, done, total})` is called
    /// as it goes, and with `previewEvery: n` also `onProgress({stage: "preview", done, total,
    /// images: [{width, height, rgb}]})` every n steps (latent-resolution x₀ previews, 1/8 size).
    /// Resolves to `[{width, height, rgb: Uint8Array}]`; rejects with `cancelled: …` after `cancel()`.
    pub fn generate(&self, request_json: String, on_progress: Option<js_sys::Function>) -> js_sys::Promise {
        self.start(request_json, on_progress, Mode::Generate)
    }

    /// Compiles the GPU kernels a `generate` of this request will launch (one text-encoder pass,
    /// one UNet step and one image decode at its shapes, results discarded), so its first step
    /// costs what the others do. Call it after `loadModel` and `setAdapters` (per-image adapters
    /// add kernels of their own); the worker runs it while adapters download. `onProgress` gets
    /// `{stage: "warming", done, total: 3}`. Resolves to nothing; `cancel()` stops it too.
    #[wasm_bindgen(js_name = warmUp)]
    pub fn warm_up(&self, request_json: String, on_progress: Option<js_sys::Function>) -> js_sys::Promise {
        self.start(request_json, on_progress, Mode::WarmUp)
    }

    /// `warmUp` before the model has arrived: the same passes on a stand-in of `config` (`sd15` or
    /// `tiny`) with zero weights, made on the GPU and dropped at the end, so shader compilation
    /// overlaps the checkpoint's download. Needs the CLIP `tokenizer.json` and the model's size in
    /// GPU memory while it runs; the worker starts it when a model download really goes to the
    /// network.
    #[wasm_bindgen(js_name = warmUpStandIn)]
    pub fn warm_up_stand_in(
        &self,
        config_name: String,
        tokenizer_json: Vec<u8>,
        request_json: String,
        on_progress: Option<js_sys::Function>,
    ) -> js_sys::Promise {
        match config(&config_name) {
            Ok(cfg) => self.start(request_json, on_progress, Mode::StandIn(cfg, tokenizer_json)),
            Err(e) => js_sys::Promise::reject(&e),
        }
    }

    /// Stops the running generation at its next step.
    pub fn cancel(&self) {
        self.cancelled.set(true);
    }
}

/// What a `generate`-shaped call does with its request.
enum Mode {
    Generate,
    WarmUp,
    /// A warm-up on a zero-weight stand-in of this config (with this `tokenizer.json`).
    StandIn(SdConfig, Vec<u8>),
}

impl Generator {
    fn start(&self, request_json: String, on_progress: Option<js_sys::Function>, mode: Mode) -> js_sys::Promise {
        let (state, cancelled, busy) = (self.state.clone(), self.cancelled.clone(), self.busy.clone());
        future_to_promise(async move {
            if busy.get() {
                return Err(coded("busy", "a generation is running"));
            }
            let req = request(&request_json)?;
            busy.set(true);
            cancelled.set(false);
            let result = run(&state, &req, on_progress.as_ref(), &cancelled, mode).await;
            busy.set(false);
            result
        })
    }
}

// Holding the RefCell across awaits is safe here: every &mut method checks `busy` (or uses try_borrow_mut) first.
#[allow(clippy::await_holding_refcell_ref)]
async fn run(
    state: &Rc<RefCell<State>>,
    req: &GenerateRequest,
    on_progress: Option<&js_sys::Function>,
    cancelled: &Rc<Cell<bool>>,
    mode: Mode,
) -> Result<JsValue, JsValue> {
    if let Mode::StandIn(cfg, tokenizer_json) = mode {
        let device = state.try_borrow().map_err(|_| coded("busy", "the model is in use"))?.device.clone();
        let mut pipe = Pipeline::stand_in(&cfg, &tokenizer_json, &device).map_err(|e| coded("bad_model", e))?;
        fit_vae_tiling(&mut pipe, req);
        pipe.warm_up_async(req, &mut |p| report(on_progress, p), &|| cancelled.get()).await.map_err(failed)?;
        return Ok(JsValue::UNDEFINED);
    }
    if let Some(pipe) = state.try_borrow_mut().map_err(|_| coded("busy", "the model is in use"))?.pipe.as_mut() {
        fit_vae_tiling(pipe, req);
    }
    // Borrowed immutably across the awaits; loadModel / addLora / setAdapters refuse while busy.
    let st = state.try_borrow().map_err(|_| coded("busy", "the model is in use"))?;
    let pipe = st.pipe.as_ref().ok_or_else(|| coded("no_model", "load a model first"))?;
    let mut progress = |p: Progress| report(on_progress, p);
    let mut preview = |p: Preview| {
        if let Some(f) = on_progress {
            let o = js_sys::Object::new();
            let _ = js_sys::Reflect::set(&o, &"stage".into(), &"preview".into());
            let _ = js_sys::Reflect::set(&o, &"done".into(), &(p.step as u32).into());
            let _ = js_sys::Reflect::set(&o, &"total".into(), &(p.total as u32).into());
            let _ = js_sys::Reflect::set(&o, &"images".into(), &images_js(p.images));
            let _ = f.call1(&JsValue::NULL, &o);
        }
    };
    let mut noise = SeededNoise { seed: req.seed };
    let stop = || cancelled.get();
    if matches!(mode, Mode::WarmUp) {
        pipe.warm_up_async(req, &mut progress, &stop).await.map_err(failed)?;
        return Ok(JsValue::UNDEFINED);
    }
    let out = pipe.generate_async(req, &mut noise, &mut progress, &mut preview, &stop).await.map_err(failed)?;
    Ok(images_js(out.images))
}

/// Decode in tiles when a whole image of `req` would exceed WebGPU's default binding limit.
fn fit_vae_tiling(pipe: &mut Pipeline, req: &GenerateRequest) {
    pipe.vae_tiling = VaeTiling::for_budget(&pipe.vae, req.height / 8, req.width / 8, VAE_BUDGET_BYTES);
}

/// `{stage, done, total}` to the page's progress callback.
fn report(on_progress: Option<&js_sys::Function>, p: Progress) {
    if let Some(f) = on_progress {
        let o = js_sys::Object::new();
        let _ = js_sys::Reflect::set(&o, &"stage".into(), &p.stage.name().into());
        let _ = js_sys::Reflect::set(&o, &"done".into(), &(p.done as u32).into());
        let _ = js_sys::Reflect::set(&o, &"total".into(), &(p.total as u32).into());
        let _ = f.call1(&JsValue::NULL, &o);
    }
}

/// A pipeline error as the page sees it.
fn failed(e: stylus_diffusion::Error) -> JsValue {
    match e {
        stylus_diffusion::Error::Cancelled => coded("cancelled", "the generation was cancelled"),
        stylus_diffusion::Error::Request(m) => coded("bad_request", m),
        other => coded("generation_failed", other),
    }
}

/// `[{width, height, rgb: Uint8Array}]`.
fn images_js(images: Vec<Image>) -> JsValue {
    let list = js_sys::Array::new();
    for img in images {
        let o = js_sys::Object::new();
        let _ = js_sys::Reflect::set(&o, &"width".into(), &(img.width as u32).into());
        let _ = js_sys::Reflect::set(&o, &"height".into(), &(img.height as u32).into());
        let _ = js_sys::Reflect::set(&o, &"rgb".into(), &js_sys::Uint8Array::from(img.rgb.as_slice()).into());
        list.push(&o);
    }
    list.into()
}
