//! Text-to-image generation with the three networks, as diffusers' `StableDiffusionPipeline`
//! (`pipeline_stable_diffusion.py`) does it: tokenize → CLIP → `[negative…, prompt…]` batch →
//! for each step `scale_model_input` → UNet → `ε_u + s (ε_c − ε_u)` → `scheduler.step` → VAE
//! decode of `latents / scaling_factor` → `(x/2 + 0.5).clamp(0, 1) · 255`, rounded half-to-even as
//! numpy does. Bytes in, tensors/pixels out: no file I/O. Schedulers are `stylus_sd`'s (host f32).

use burn::tensor::{Device, Tensor};
use stylus_sd::{ClipTokenizer, Scheduler, SchedulerKind, SdConfig};

use crate::attention::AttentionConfig;
use crate::load::{Checkpoint, Loader};
use crate::lora::{ApplyReport, LoraHost};
use crate::nn::{from_vec, to_vec, to_vec_async};
use crate::preview::{batch_previews, Preview};
use crate::rng::{NoiseSource, SeededNoise};
use crate::{AutoencoderKL, ClipTextModel, Error, Result, UNet2DConditionModel, VaeTiling};

/// What a pipeline is loaded from.
#[derive(Debug, Clone, Copy)]
pub struct ModelFiles<'a> {
    pub checkpoint: Checkpoint<'a>,
    /// SD1.5's CLIP `tokenizer.json`.
    pub tokenizer_json: &'a [u8],
}

/// One generation request. `Default` is the Stylus reference setting (DPM++ 2M Karras, 35 steps,
/// CFG 5, 512×512, one image).
#[derive(Debug, Clone, PartialEq)]
pub struct GenerateRequest {
    pub prompt: String,
    pub negative: String,
    pub steps: usize,
    /// Classifier-free guidance scale; ≤ 1 disables guidance (no negative pass), as diffusers.
    pub cfg_scale: f32,
    /// Image `b` of the batch uses seed `seed + b` (see `rng`).
    pub seed: u64,
    /// Pixels; multiples of 8.
    pub width: usize,
    pub height: usize,
    pub scheduler: SchedulerKind,
    pub batch: usize,
    /// Text-encoder layers to skip (diffusers `clip_skip`; 0 = none).
    pub clip_skip: usize,
    /// Explicit N(0, 1) initial latents `[batch, 4, height/8, width/8]` instead of the seed's.
    pub latents: Option<Vec<f32>>,
    /// A live preview ([`crate::preview`]) every this many steps and after the last (0: none).
    pub preview_every: usize,
}

impl Default for GenerateRequest {
    fn default() -> Self {
        GenerateRequest {
            prompt: String::new(),
            negative: String::new(),
            steps: 35,
            cfg_scale: 5.0,
            seed: 0,
            width: 512,
            height: 512,
            scheduler: SchedulerKind::DpmPp2mKarras,
            batch: 1,
            clip_skip: 0,
            latents: None,
            preview_every: 0,
        }
    }
}

/// Generation stage reported to the progress callback.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// `done` of `total` networks run once at the request's shapes ([`Pipeline::warm_up`]).
    WarmingUp,
    EncodingPrompt,
    /// `done` of `total` denoising steps finished.
    Denoising,
    /// `done` of `total` images decoded.
    Decoding,
}

impl Stage {
    /// The stage's name in progress reports (CLI bar, the browser's `{stage}`).
    pub fn name(self) -> &'static str {
        match self {
            Stage::WarmingUp => "warming",
            Stage::EncodingPrompt => "prompt",
            Stage::Denoising => "denoising",
            Stage::Decoding => "decoding",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    pub stage: Stage,
    pub done: usize,
    pub total: usize,
}

/// An 8-bit RGB image, row-major, 3 bytes per pixel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image {
    pub width: usize,
    pub height: usize,
    pub rgb: Vec<u8>,
}

/// Everything a generation produced.
#[derive(Debug, Clone)]
pub struct Generation {
    pub images: Vec<Image>,
    /// Final latents `[batch, 4, h, w]` (before the 1/scaling division).
    pub latents: Vec<f32>,
    /// VAE output `[batch, 3, H, W]`, about [-1, 1].
    pub decoded: Vec<f32>,
}

/// The loaded SD1.5 pipeline.
pub struct Pipeline {
    pub text_encoder: ClipTextModel,
    pub unet: UNet2DConditionModel,
    pub vae: AutoencoderKL,
    pub tokenizer: ClipTokenizer,
    /// Attention memory policy for every network.
    pub attention: AttentionConfig,
    /// Decode tile by tile (diffusers' `enable_tiling`) — what a 512² decode needs within WebGPU's
    /// 128 MiB bindings (`VaeTiling::for_budget`). `None` (default): whole images, as diffusers.
    pub vae_tiling: Option<VaeTiling>,
    cfg: SdConfig,
    device: Device,
    ignored_keys: Vec<String>,
    lora: LoraHost,
    /// Images of the installed per-image adapter set (a batch must have exactly this many).
    adapter_images: Option<usize>,
}

/// `(x/2 + 0.5).clamp(0, 1) · 255` rounded half-to-even, `[3, H, W]` planes → interleaved RGB.
pub fn to_rgb8(decoded: &[f32], width: usize, height: usize) -> Image {
    let plane = width * height;
    let mut rgb = vec![0u8; 3 * plane];
    for c in 0..3 {
        for (p, &v) in decoded[c * plane..(c + 1) * plane].iter().enumerate() {
            rgb[3 * p + c] = ((v / 2.0 + 0.5).clamp(0.0, 1.0) * 255.0).round_ties_even() as u8;
        }
    }
    Image { width, height, rgb }
}

impl Pipeline {
    /// Loads the three networks and the tokenizer; every checkpoint tensor must be used.
    pub fn load(cfg: &SdConfig, files: &ModelFiles<'_>, device: &Device) -> Result<Self> {
        Self::from_loader(cfg, Loader::from_checkpoint(cfg, files.checkpoint, device)?, files.tokenizer_json)
    }

    /// Loads the three networks from any [`Loader`] (e.g. [`Loader::from_manifest`] for a converted
    /// model) on the loader's device; every tensor must be used.
    pub fn from_loader(cfg: &SdConfig, mut ld: Loader<'_>, tokenizer_json: &[u8]) -> Result<Self> {
        let tokenizer = ClipTokenizer::from_json_bytes(tokenizer_json)?;
        let device = ld.device().clone();
        let text_encoder = ClipTextModel::load(&cfg.text, &mut ld)?;
        let unet = UNet2DConditionModel::load(&cfg.unet, &mut ld)?;
        let vae = AutoencoderKL::load(&cfg.vae, &mut ld)?;
        ld.finish()?;
        let ignored_keys = ld.ignored().to_vec();
        let lora = ld.take_lora_host();
        Ok(Pipeline {
            text_encoder,
            unet,
            vae,
            tokenizer,
            attention: AttentionConfig::default(),
            vae_tiling: None,
            cfg: cfg.clone(),
            device,
            ignored_keys,
            lora,
            adapter_images: None,
        })
    }

    /// Applies LoRA adapters with one final weight each to every image (merged on the device from
    /// the pristine base weights; replaces the previous set; `&[]` restores the base exactly).
    pub fn set_adapters(&mut self, adapters: &[(&stylus_lora::LoraFile, f32)]) -> Result<ApplyReport> {
        let report = self.lora.set(adapters, &self.device)?;
        self.adapter_images = None;
        Ok(report)
    }

    /// Applies adapters with per-image weights (`weights[image][adapter]`, Stylus' masks): the next
    /// generations must have `batch == weights.len()`, and image `b` gets its own adapter mix in
    /// one batched pass through the text encoder and the UNet.
    pub fn set_adapters_per_image(&mut self, files: &[&stylus_lora::LoraFile], weights: &[Vec<f32>]) -> Result<ApplyReport> {
        let report = self.lora.set_per_image(files, weights, &self.device)?;
        self.adapter_images = report.per_image.then_some(weights.len());
        Ok(report)
    }

    /// Back to the base weights (bit-exact: they are never modified).
    pub fn clear_adapters(&mut self) {
        self.lora.clear();
        self.adapter_images = None;
    }

    /// The adapter registry (which modules exist, the weights in use).
    pub fn lora(&self) -> &LoraHost {
        &self.lora
    }

    pub fn config(&self) -> &SdConfig {
        &self.cfg
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Keys of the file outside the three networks that loading skipped (e.g. bundled extras).
    pub fn ignored_keys(&self) -> &[String] {
        &self.ignored_keys
    }

    /// CLIP hidden states `[prompts, 77, hidden]` for 77-token windows of each prompt.
    pub fn encode_prompts(&self, prompts: &[&str], clip_skip: usize) -> Result<Tensor<3>> {
        let mut ids = Vec::with_capacity(prompts.len() * ClipTokenizer::MAX_LEN);
        for p in prompts {
            ids.extend(self.tokenizer.encode(p)?.ids);
        }
        self.text_encoder.forward(&ids, prompts.len(), clip_skip, &self.attention)
    }

    /// Generates `req.batch` images from the request's seed (or its explicit latents).
    pub fn generate(&self, req: &GenerateRequest, progress: &mut dyn FnMut(Progress)) -> Result<Vec<Image>> {
        let mut noise = SeededNoise { seed: req.seed };
        Ok(self.generate_with(req, &mut noise, progress)?.images)
    }

    fn validate(&self, req: &GenerateRequest) -> Result<(usize, usize)> {
        let bad = |m: String| Err(Error::Request(m));
        if req.width == 0 || req.height == 0 || !req.width.is_multiple_of(8) || !req.height.is_multiple_of(8) {
            return bad(format!("width and height must be positive multiples of 8, got {}×{}", req.width, req.height));
        }
        if req.width > 4096 || req.height > 4096 {
            return bad(format!("{}×{} is larger than 4096×4096", req.width, req.height));
        }
        if req.batch == 0 || req.batch > 64 {
            return bad(format!("batch must be between 1 and 64, got {}", req.batch));
        }
        if let Some(n) = self.adapter_images.filter(|&n| n != req.batch) {
            return bad(format!("the per-image adapter set is for {n} images; the request asks for a batch of {}", req.batch));
        }
        stylus_sd::schedulers::check_steps(req.steps).map_err(Error::Request)?;
        if !req.cfg_scale.is_finite() {
            return bad(format!("cfg_scale must be finite, got {}", req.cfg_scale));
        }
        let (h, w) = (req.height / 8, req.width / 8);
        if let Some(l) = &req.latents {
            let n = req.batch * self.cfg.unet.in_channels * h * w;
            if l.len() != n {
                return bad(format!("{} initial latent values given, [{}, {}, {h}, {w}] needs {n}", l.len(), req.batch, self.cfg.unet.in_channels));
            }
        }
        Ok((h, w))
    }

    /// The full loop with an explicit noise source (explicit `req.latents` still win for the
    /// initial latents); returns latents and decoded tensors too.
    pub fn generate_with(&self, req: &GenerateRequest, noise: &mut dyn NoiseSource, progress: &mut dyn FnMut(Progress)) -> Result<Generation> {
        let mut run = self.begin(req, noise, progress)?;
        for i in 0..req.steps {
            let eps = to_vec(self.step_eps(&run, i)?)?;
            self.finish_step(&mut run, req, i, eps, noise, progress, None)?;
        }
        let mut out = Generation { images: Vec::with_capacity(run.b), latents: Vec::new(), decoded: Vec::new() };
        for k in 0..run.b {
            let img = to_vec(self.decode_image(&run, k)?)?;
            Self::push_image(&mut out, img, req, k, run.b, progress);
        }
        out.latents = run.x;
        Ok(out)
    }

    /// [`Pipeline::generate_with`] with asynchronous tensor reads, for WebGPU in the browser (the
    /// page never blocks on the GPU). `cancelled` is polled before every step and every decode;
    /// when it returns true the generation stops with [`Error::Cancelled`]. `preview` receives the
    /// live previews `req.preview_every` asks for.
    pub async fn generate_async(
        &self,
        req: &GenerateRequest,
        noise: &mut dyn NoiseSource,
        progress: &mut dyn FnMut(Progress),
        preview: &mut dyn FnMut(Preview),
        cancelled: &dyn Fn() -> bool,
    ) -> Result<Generation> {
        let mut run = self.begin(req, noise, progress)?;
        for i in 0..req.steps {
            if cancelled() {
                return Err(Error::Cancelled);
            }
            let eps = to_vec_async(self.step_eps(&run, i)?).await?;
            self.finish_step(&mut run, req, i, eps, noise, progress, Some(&mut *preview))?;
        }
        let mut out = Generation { images: Vec::with_capacity(run.b), latents: Vec::new(), decoded: Vec::new() };
        for k in 0..run.b {
            if cancelled() {
                return Err(Error::Cancelled);
            }
            let img = to_vec_async(self.decode_image(&run, k)?).await?;
            Self::push_image(&mut out, img, req, k, run.b, progress);
        }
        out.latents = run.x;
        Ok(out)
    }

    /// Validates, encodes the prompts and draws the initial latents.
    pub(crate) fn begin(&self, req: &GenerateRequest, noise: &mut dyn NoiseSource, progress: &mut dyn FnMut(Progress)) -> Result<Run> {
        let (h, w) = self.validate(req)?;
        let sched = Scheduler::new(req.scheduler, req.steps)?;
        let (b, c) = (req.batch, self.cfg.unet.in_channels);
        let per_image = c * h * w;
        let guided = req.cfg_scale > 1.0;

        progress(Progress { stage: Stage::EncodingPrompt, done: 0, total: 1 });
        let ctx = if self.adapter_images.is_some() {
            // Per-image adapters change the text encoder per row: encode every row of the batch.
            let mut rows: Vec<&str> = if guided { vec![req.negative.as_str(); b] } else { Vec::new() };
            rows.extend(std::iter::repeat_n(req.prompt.as_str(), b));
            self.encode_prompts(&rows, req.clip_skip)?
        } else if guided {
            let e = self.encode_prompts(&[&req.negative, &req.prompt], req.clip_skip)?;
            let neg = e.clone().narrow(0, 0, 1).repeat_dim(0, b);
            Tensor::cat(vec![neg, e.narrow(0, 1, 1).repeat_dim(0, b)], 0)
        } else {
            self.encode_prompts(&[&req.prompt], req.clip_skip)?.repeat_dim(0, b)
        };

        let mut x = match &req.latents {
            Some(l) => l.clone(),
            None => (0..b).map(|i| noise.initial(i, per_image)).collect::<Result<Vec<_>>>()?.concat(),
        };
        x.iter_mut().for_each(|v| *v *= sched.init_noise_sigma);
        Ok(Run { h, w, b, c, per_image, guided, sched, ctx, x })
    }

    /// The UNet's ε for step `i` (`[2b, …]` with guidance), still on the device.
    pub(crate) fn step_eps(&self, run: &Run, i: usize) -> Result<Tensor<4>> {
        let d = run.sched.model_input_divisor(i);
        let input = from_vec(run.x.iter().map(|v| v / d).collect(), [run.b, run.c, run.h, run.w], &self.device)?;
        let input = if run.guided { Tensor::cat(vec![input.clone(), input], 0) } else { input };
        self.unet.forward(input, &[run.sched.timesteps[i]], &run.ctx, &self.attention)
    }

    /// Guidance and the scheduler step on the host, from the read-back ε; the step's x₀ as a
    /// preview first when one is due.
    #[allow(clippy::too_many_arguments)]
    fn finish_step(
        &self,
        run: &mut Run,
        req: &GenerateRequest,
        i: usize,
        eps: Vec<f32>,
        noise: &mut dyn NoiseSource,
        progress: &mut dyn FnMut(Progress),
        preview: Option<&mut dyn FnMut(Preview)>,
    ) -> Result<()> {
        let (b, per_image) = (run.b, run.per_image);
        let eps: Vec<f32> = if run.guided {
            let (u, t) = eps.split_at(b * per_image);
            u.iter().zip(t).map(|(&u, &t)| u + req.cfg_scale * (t - u)).collect()
        } else {
            eps
        };
        if let Some(send) = preview.filter(|_| req.preview_every > 0 && ((i + 1).is_multiple_of(req.preview_every) || i + 1 == req.steps)) {
            let x0 = run.sched.denoised(i, &run.x, &eps)?;
            send(Preview { step: i + 1, total: req.steps, images: batch_previews(&x0, b, run.c, run.h, run.w) });
        }
        let step_noise = if run.sched.needs_noise() { Some((0..b).map(|k| noise.step(k, i, per_image)).collect::<Result<Vec<_>>>()?.concat()) } else { None };
        run.sched.step(i, &mut run.x, &eps, step_noise.as_deref())?;
        progress(Progress { stage: Stage::Denoising, done: i + 1, total: req.steps });
        Ok(())
    }

    /// VAE decode of image `k` (one image at a time bounds the decoder's memory).
    pub(crate) fn decode_image(&self, run: &Run, k: usize) -> Result<Tensor<4>> {
        let scale = self.cfg.vae.scaling_factor as f32;
        let z: Vec<f32> = run.x[k * run.per_image..(k + 1) * run.per_image].iter().map(|v| v / scale).collect();
        let z = from_vec(z, [1, run.c, run.h, run.w], &self.device)?;
        match &self.vae_tiling {
            Some(t) => self.vae.decode_tiled(z, t, &self.attention),
            None => self.vae.decode(z, &self.attention),
        }
    }

    fn push_image(out: &mut Generation, decoded: Vec<f32>, req: &GenerateRequest, k: usize, b: usize, progress: &mut dyn FnMut(Progress)) {
        out.images.push(to_rgb8(&decoded, req.width, req.height));
        out.decoded.extend(decoded);
        progress(Progress { stage: Stage::Decoding, done: k + 1, total: b });
    }
}

/// The state of one generation between steps.
pub(crate) struct Run {
    h: usize,
    w: usize,
    b: usize,
    c: usize,
    per_image: usize,
    guided: bool,
    sched: Scheduler,
    pub(crate) ctx: Tensor<3>,
    x: Vec<f32>,
}
