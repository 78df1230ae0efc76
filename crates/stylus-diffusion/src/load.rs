//! Weight loading: the one mapping from checkpoint tensors to model fields.
//!
//! `stylus_sd::checkpoint` resolves a single file (ldm keys) or a diffusers folder against
//! `stylus_sd::layout::sd_params`, so every tensor arrives under its **diffusers path**
//! (`down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q.weight`, `text_model.encoder…`).
//! The model structs have fields named after those path segments (`down_blocks`, `attentions`,
//! `transformer_blocks`, `attn1`, `to_q`, …), and each `load` function asks the [`Loader`] for
//! `"{its path}.{field}"` with the shape it computes from the config. So loading is a walk of the
//! same paths `sd_params` lists; the Loader checks both directions:
//!
//! * a path the model asks for that the checkpoint lacks → [`Error::MissingParam`] naming it;
//! * a resolved tensor the model never asked for → [`Error::UnusedParams`] naming them
//!   ([`Loader::finish`]); unknown keys inside a network's namespace of the file are errors too;
//! * a shape the model and the table disagree on → [`Error::ParamShape`].
//!
//! Conversions on the way (all lossless): F16/BF16/F32 → f32; `nn.Linear` weights are transposed
//! from torch's `[out, in]` to burn's `[in, out]`; the VAE attention's ldm `[C, C, 1, 1]` convs are
//! read as the `[C, C]` linears diffusers has (same bytes). A unit test walks SD1.5 and the tiny
//! config in dry-run mode and checks the requested `(path, shape)` set equals `sd_params`.
//!
//! Converted models (`stylus_sd::convert`: manifest + f32/f16/q8 shards) load through
//! [`Loader::from_manifest`]: the tensor list is checked against `sd_params` before any shard is
//! read, shards are verified by sha256 as they arrive, and each tensor is kept in its stored
//! encoding until the model takes it (decoded to f32 then).

use std::collections::HashMap;
use std::fmt::Display;

use burn::tensor::{Device, Tensor};
use safetensors::tensor::TensorView;
use stylus_sd::checkpoint::{self, Resolution};
use stylus_sd::convert::{self, is_vae_encoder, Manifest, ShardInfo, ShardReader, TensorInfo};
use stylus_sd::{sd_params, Component, SdConfig};

use crate::lora::{ConvPatch, LinearPatch, LoraHost, PatchSlot};
use crate::nn::from_vec;
use crate::{Error, Result};

/// Checkpoint bytes, as files hold them (no I/O here).
#[derive(Debug, Clone, Copy)]
pub enum Checkpoint<'a> {
    /// An original single-file `.safetensors` (ldm key names).
    SingleFile(&'a [u8]),
    /// A diffusers folder's three weight files.
    Diffusers { unet: &'a [u8], vae: &'a [u8], text_encoder: &'a [u8] },
}

enum Slot<'a> {
    View(TensorView<'a>),
    Values(Vec<f32>),
    /// A converted model's tensor in its stored encoding (f32/f16/q8), decoded at `take`.
    Encoded(TensorInfo, Vec<u8>),
}

struct Entry<'a> {
    shape: Vec<usize>,
    /// Key in the file (for messages).
    key: String,
    slot: Slot<'a>,
}

/// What a loader without a checkpoint hands out.
#[derive(Debug, Clone, Copy)]
enum DryRun {
    /// One-element tensors (only the requests matter).
    Scalars,
    /// Zeros of the requested shape.
    Zeros,
}

/// Hands out checkpoint tensors by (component, diffusers path) and tracks what was taken.
pub struct Loader<'a> {
    device: Device,
    component: Component,
    entries: HashMap<(Component, String), Entry<'a>>,
    /// Keys of the files outside the three networks' namespaces, not used (reported, not errors).
    ignored: Vec<String>,
    /// Record requests and hand out zeros instead of checkpoint tensors.
    dry_run: Option<DryRun>,
    requested: Vec<(Component, String, Vec<usize>)>,
    /// Every UNet / text-encoder Linear and Conv2d loaded so far, for LoRA patches.
    lora: LoraHost,
    /// The model has no VAE encoder (a text-to-image conversion, `Manifest::vae_encoder`).
    no_vae_encoder: bool,
}

impl<'a> Loader<'a> {
    fn empty(device: &Device) -> Self {
        Loader {
            device: device.clone(),
            component: Component::Unet,
            entries: HashMap::new(),
            ignored: Vec::new(),
            dry_run: None,
            requested: Vec::new(),
            lora: LoraHost::default(),
            no_vae_encoder: false,
        }
    }

    /// Whether the model was converted without its VAE encoder (`AutoencoderKL::load` then skips it).
    pub fn lacks_vae_encoder(&self) -> bool {
        self.no_vae_encoder
    }

    /// A loader that hands out placeholder tensors and records every request (mapping tests).
    pub fn dry_run(device: &Device) -> Self {
        Loader { dry_run: Some(DryRun::Scalars), ..Self::empty(device) }
    }

    /// A loader that hands out zeros of every requested shape (on the device, nothing read or
    /// uploaded) and no VAE encoder: networks with the model's shapes and dtypes but not its
    /// values, for compiling kernels before the checkpoint has arrived ([`crate::Pipeline::stand_in`]).
    pub fn zeros(device: &Device) -> Self {
        Loader { dry_run: Some(DryRun::Zeros), no_vae_encoder: true, ..Self::empty(device) }
    }

    /// Resolves checkpoint bytes against the SD1.5 table for `cfg` (shape checks and SD1.5
    /// refusals are `stylus_sd`'s) and prepares every tensor for the models.
    pub fn from_checkpoint(cfg: &SdConfig, ckpt: Checkpoint<'a>, device: &Device) -> Result<Self> {
        let mut ld = Self::empty(device);
        match ckpt {
            Checkpoint::SingleFile(bytes) => {
                let st = checkpoint::parse(bytes)?;
                let res = checkpoint::resolve_single_file(&st, cfg)?;
                let prefixes = [Component::Unet, Component::Vae, Component::TextEncoder].map(Component::ldm_prefix);
                ld.add(res, |k| prefixes.iter().any(|p| k.starts_with(p)))?;
            }
            Checkpoint::Diffusers { unet, vae, text_encoder } => {
                for (comp, bytes) in [(Component::Unet, unet), (Component::Vae, vae), (Component::TextEncoder, text_encoder)] {
                    let st = checkpoint::parse(bytes)?;
                    let res = checkpoint::resolve_diffusers(comp, &st, cfg)?;
                    ld.add(res, |_| true)?;
                }
            }
        }
        Ok(ld)
    }

    /// A loader over host values keyed by diffusers path (e.g. weights with LoRAs merged in);
    /// every path of `sd_params(cfg)` must be present with its shape.
    pub fn from_values(cfg: &SdConfig, mut values: HashMap<String, Vec<f32>>, device: &Device) -> Result<Self> {
        let mut ld = Self::empty(device);
        for spec in sd_params(cfg) {
            let v = values.remove(&spec.path).ok_or_else(|| Error::MissingParam(spec.path.clone()))?;
            if v.len() != spec.numel() {
                return Err(Error::ParamShape { path: spec.path.clone(), expected: spec.shape.clone(), found: vec![v.len()] });
            }
            let entry = Entry { shape: spec.shape.clone(), key: spec.path.clone(), slot: Slot::Values(v) };
            ld.entries.insert((spec.component, spec.path), entry);
        }
        if !values.is_empty() {
            let mut extra: Vec<String> = values.into_keys().collect();
            extra.sort();
            return Err(Error::UnusedParams { count: extra.len(), first: extra.into_iter().take(5).collect() });
        }
        Ok(ld)
    }

    /// A loader over a converted model: `manifest_json` is its `manifest.json`, `fetch(index, info)`
    /// returns the bytes of shard `index` (called once per shard, in order; each is checked against
    /// its sha256). The tensor set must equal `sd_params(cfg)` — checked from the manifest alone,
    /// before any shard is fetched: missing → [`Error::MissingParam`], extra → [`Error::UnusedParams`],
    /// shapes → [`Error::ParamShape`]. Host memory: the stored encodings (f16: half of f32, q8: about a
    /// quarter) plus one shard, until the models take their tensors.
    pub fn from_manifest<B, E>(
        cfg: &SdConfig,
        manifest_json: &[u8],
        fetch: impl FnMut(usize, &ShardInfo) -> std::result::Result<B, E>,
        device: &Device,
    ) -> Result<Self>
    where
        B: AsRef<[u8]>,
        E: Display,
    {
        let manifest = Manifest::from_json(manifest_json)?;
        manifest.check_config(cfg)?;
        let mut specs: HashMap<(Component, &str), &[usize]> = HashMap::new();
        let params: Vec<_> = sd_params(cfg).into_iter().filter(|p| manifest.vae_encoder || !is_vae_encoder(p.component, &p.path)).collect();
        for p in &params {
            specs.insert((p.component, p.path.as_str()), &p.shape);
        }
        let mut extra = Vec::new();
        for t in &manifest.tensors {
            match specs.remove(&(t.component, t.path.as_str())) {
                None => extra.push(t.path.clone()),
                Some(shape) if shape != t.shape.as_slice() => {
                    return Err(Error::ParamShape { path: t.path.clone(), expected: shape.to_vec(), found: t.shape.clone() });
                }
                Some(_) => {}
            }
        }
        if let Some(missing) = params.iter().find(|p| specs.contains_key(&(p.component, p.path.as_str()))) {
            return Err(Error::MissingParam(missing.path.clone()));
        }
        if !extra.is_empty() {
            extra.sort();
            return Err(Error::UnusedParams { count: extra.len(), first: extra.into_iter().take(5).collect() });
        }
        let mut ld = Self::empty(device);
        ld.no_vae_encoder = !manifest.vae_encoder;
        for item in ShardReader::new(&manifest, fetch) {
            let (t, bytes) = item?;
            let entry = Entry { shape: t.shape.clone(), key: t.path.clone(), slot: Slot::Encoded(t.clone(), bytes) };
            ld.entries.insert((t.component, t.path.clone()), entry);
        }
        Ok(ld)
    }

    /// Adds a resolution; unexpected keys for which `in_networks` holds are errors.
    fn add(&mut self, res: Resolution<'a>, in_networks: impl Fn(&str) -> bool) -> Result<()> {
        let (bad, other): (Vec<String>, Vec<String>) = res.unexpected.into_iter().partition(|k| in_networks(k));
        if !bad.is_empty() {
            return Err(Error::UnusedParams { count: bad.len(), first: bad.into_iter().take(5).collect() });
        }
        self.ignored.extend(other);
        for r in res.params {
            let entry = Entry { shape: r.spec.shape.clone(), key: r.key, slot: Slot::View(r.view) };
            self.entries.insert((r.spec.component, r.spec.path), entry);
        }
        Ok(())
    }

    /// Keeps only one network's tensors (to load that network alone).
    pub fn retain(&mut self, component: Component) {
        self.entries.retain(|(c, _), _| *c == component);
    }

    /// Which network the following `take` calls address.
    pub fn set_component(&mut self, component: Component) {
        self.component = component;
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Keys of the file(s) outside the networks' namespaces that were not used.
    pub fn ignored(&self) -> &[String] {
        &self.ignored
    }

    /// Every (component, path, shape) requested so far, in request order.
    pub fn requested(&self) -> &[(Component, String, Vec<usize>)] {
        &self.requested
    }

    /// Takes the tensor at `path` of the current component, checking its shape.
    pub fn take<const D: usize>(&mut self, path: &str, shape: [usize; D]) -> Result<Tensor<D>> {
        self.requested.push((self.component, path.to_string(), shape.to_vec()));
        match self.dry_run {
            Some(DryRun::Scalars) => return Ok(Tensor::zeros([1; D], &self.device)),
            Some(DryRun::Zeros) => return Ok(Tensor::zeros(shape, &self.device)),
            None => {}
        }
        let entry = self.entries.remove(&(self.component, path.to_string())).ok_or_else(|| Error::MissingParam(path.to_string()))?;
        if entry.shape != shape {
            return Err(Error::ParamShape { path: path.to_string(), expected: shape.to_vec(), found: entry.shape });
        }
        let values = match entry.slot {
            Slot::View(view) => checkpoint::to_f32(&view).map_err(|e| match e {
                stylus_sd::Error::UnsupportedDtype { dtype, .. } => stylus_sd::Error::UnsupportedDtype { key: entry.key.clone(), dtype },
                other => other,
            })?,
            Slot::Values(v) => v,
            Slot::Encoded(info, bytes) => convert::decode(&info, &bytes)?,
        };
        from_vec(values, shape, &self.device)
    }

    /// Registers a loaded Linear layer (module path without `.weight`) for LoRA patches.
    pub(crate) fn register_linear(&mut self, path: &str, weight: &Tensor<2>) -> PatchSlot<LinearPatch> {
        self.lora.register_linear(self.component, path, weight)
    }

    /// Registers a loaded Conv2d layer for LoRA patches.
    pub(crate) fn register_conv(&mut self, path: &str, weight: &Tensor<4>) -> PatchSlot<ConvPatch> {
        self.lora.register_conv(self.component, path, weight)
    }

    /// The LoRA registry of the networks loaded so far (moved out; later loads start a new one).
    pub fn take_lora_host(&mut self) -> LoraHost {
        std::mem::take(&mut self.lora)
    }

    /// Errors when tensors remain that no model asked for.
    pub fn finish(&self) -> Result<()> {
        if self.entries.is_empty() {
            return Ok(());
        }
        let mut left: Vec<String> = self.entries.values().map(|e| e.key.clone()).collect();
        left.sort();
        Err(Error::UnusedParams { count: left.len(), first: left.into_iter().take(5).collect() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{AutoencoderKL, ClipTextModel, UNet2DConditionModel};

    /// The (component, path, shape) set the model structs request equals the remap table, for the
    /// real SD1.5 config and the tiny one: the model code and `sd_params` are one mapping.
    #[test]
    fn model_walk_equals_sd_params() {
        let device = crate::cpu_device();
        for cfg in [SdConfig::v1_5(), SdConfig::tiny()] {
            let mut ld = Loader::dry_run(&device);
            UNet2DConditionModel::load(&cfg.unet, &mut ld).unwrap();
            AutoencoderKL::load(&cfg.vae, &mut ld).unwrap();
            ClipTextModel::load(&cfg.text, &mut ld).unwrap();
            let mut got: Vec<_> = ld.requested().to_vec();
            let mut want: Vec<_> = sd_params(&cfg).into_iter().map(|p| (p.component, p.path, p.shape)).collect();
            assert_eq!(got.len(), want.len(), "same number of parameters");
            got.sort();
            want.sort();
            for (g, w) in got.iter().zip(&want) {
                assert_eq!(g, w);
            }
        }
    }

    #[test]
    fn missing_and_extra_parameters_are_named() {
        let device = crate::cpu_device();
        let cfg = SdConfig::tiny();
        let mut values: HashMap<String, Vec<f32>> = sd_params(&cfg).into_iter().map(|p| (p.path.clone(), vec![0.0; p.numel()])).collect();
        values.remove("mid_block.attentions.0.proj_in.weight");
        match Loader::from_values(&cfg, values.clone(), &device) {
            Err(Error::MissingParam(p)) => assert_eq!(p, "mid_block.attentions.0.proj_in.weight"),
            Err(e) => panic!("wrong error {e}"),
            Ok(_) => panic!("a missing parameter must be an error"),
        }
        values.insert("mid_block.attentions.0.proj_in.weight".into(), vec![0.0; 24 * 24]);
        values.insert("mid_block.attentions.0.extra.weight".into(), vec![0.0; 4]);
        let err = Loader::from_values(&cfg, values, &device).err().expect("an extra parameter must be an error");
        assert!(err.to_string().contains("mid_block.attentions.0.extra.weight"), "{err}");
    }

    #[test]
    fn unused_tensors_are_an_error_at_finish() {
        let device = crate::cpu_device();
        let cfg = SdConfig::tiny();
        let values = sd_params(&cfg).into_iter().map(|p| (p.path.clone(), vec![0.0; p.numel()])).collect();
        let mut ld = Loader::from_values(&cfg, values, &device).unwrap();
        ld.set_component(Component::Vae);
        let vae = AutoencoderKL::load(&cfg.vae, &mut ld);
        assert!(vae.is_ok());
        let err = ld.finish().unwrap_err().to_string();
        assert!(err.contains("not used"), "{err}");
    }

    /// The stand-in loader gives every network parameter its full shape, as zeros, except the
    /// VAE encoder's (a text-to-image stand-in does not need it).
    #[test]
    fn zeros_loader_gives_full_shapes_without_the_vae_encoder() {
        let device = crate::cpu_device();
        let cfg = SdConfig::tiny();
        let mut ld = Loader::zeros(&device);
        let w: Tensor<4> = ld.take("conv_in.weight", [32, 4, 3, 3]).unwrap();
        assert_eq!(w.dims(), [32, 4, 3, 3]);
        assert_eq!(crate::nn::to_vec(w).unwrap(), vec![0.0; 32 * 4 * 9]);
        let mut ld = Loader::zeros(&device);
        UNet2DConditionModel::load(&cfg.unet, &mut ld).unwrap();
        AutoencoderKL::load(&cfg.vae, &mut ld).unwrap();
        ClipTextModel::load(&cfg.text, &mut ld).unwrap();
        let want: Vec<_> = sd_params(&cfg)
            .into_iter()
            .filter(|p| !(p.component == Component::Vae && (p.path.starts_with("encoder.") || p.path.starts_with("quant_conv."))))
            .collect();
        assert_eq!(ld.requested().len(), want.len(), "every parameter but the VAE encoder's");
        assert!(ld.requested().iter().all(|(c, path, shape)| want.iter().any(|p| p.component == *c && &p.path == path && &p.shape == shape)));
        ld.finish().unwrap();
    }
}
