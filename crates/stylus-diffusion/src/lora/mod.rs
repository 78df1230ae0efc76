//! LoRA adapters applied to the loaded UNet and text encoder without touching their base weights
//! (issue: switching adapter sets must not re-read or re-upload the base). Adapters come parsed
//! and key-resolved from `stylus-lora`; this module looks each resolved module up in the model's
//! own layer registry (filled by `Linear::load` / `Conv2d::load`, keyed by the same diffusers
//! paths), and installs per-layer patches:
//!
//! * [`LoraHost::set`] — one weight per adapter for the whole batch: each touched layer gets
//!   `W + Σᵢ wᵢ·scaleᵢ·ΔWᵢ` computed on the device from the pristine `W` (low-rank `up @ down` as a
//!   device matmul; LoHa/LoKr/Tucker deltas from `stylus-lora` uploaded dense). This is diffusers'
//!   `fuse_lora` (`W' = W + lora_scale · alpha/r · up @ down`, f32), with exact restore: the base
//!   tensor is never modified, so [`LoraHost::clear`] gives the base back bit for bit.
//! * [`LoraHost::set_per_image`] — Stylus' masks, one weight vector per image: layers run
//!   `y = W x + Σᵢ cᵢ[row] · up_i(down_i x)` so a batch whose images have different masks runs in
//!   one pass (dense per-sample terms `cᵢ[row] · ΔWᵢ x` for formats without low-rank factors).
//!
//! Composition weights (`recommended · scale / n_active_in_topic`) are the caller's: pass the final
//! per-adapter weights.

mod patch;

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use burn::tensor::{Device, Tensor};
use stylus_lora::{LoraFile, ModuleAdapter, ModuleKey};
use stylus_sd::Component;

use crate::nn::{from_vec, to_vec};
use crate::{Error, Result};
use patch::Term;
pub(crate) use patch::{conv_forward, conv_weight, linear_forward, linear_weight, ConvPatch, LinearPatch, PatchSlot};

/// A registered layer: its pristine base weight and its patch slot.
enum Target {
    /// `base` in burn's `[in, out]` layout.
    Linear { base: Tensor<2>, slot: PatchSlot<LinearPatch> },
    /// `base` `[out, in, kh, kw]`.
    Conv { base: Tensor<4>, slot: PatchSlot<ConvPatch> },
}

impl Target {
    /// The weight's shape in torch layout (`[out, in]` / `[out, in, kh, kw]`), as LoRA files see it.
    fn torch_shape(&self) -> Vec<usize> {
        match self {
            Target::Linear { base, .. } => {
                let [i, o] = base.dims();
                vec![o, i]
            }
            Target::Conv { base, .. } => base.dims().to_vec(),
        }
    }

    fn clear(&self) {
        match self {
            Target::Linear { slot, .. } => slot.set(None),
            Target::Conv { slot, .. } => slot.set(None),
        }
    }
}

/// What installing an adapter set did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ApplyReport {
    /// Layers patched.
    pub modules: usize,
    /// Bytes uploaded to the device for this set (factors and dense deltas; base weights: none).
    pub uploaded_bytes: u64,
    /// Whether the set runs per image (different masks in one batch) or merged.
    pub per_image: bool,
}

/// The adapter registry of loaded networks: every UNet / text-encoder Linear and Conv2d by
/// (component, diffusers module path).
#[derive(Default)]
pub struct LoraHost {
    targets: HashMap<(Component, String), Target>,
}

impl LoraHost {
    pub(crate) fn register_linear(&mut self, component: Component, path: &str, base: &Tensor<2>) -> PatchSlot<LinearPatch> {
        let slot = PatchSlot::default();
        if component != Component::Vae {
            self.targets.insert((component, path.to_string()), Target::Linear { base: base.clone(), slot: slot.clone() });
        }
        slot
    }

    pub(crate) fn register_conv(&mut self, component: Component, path: &str, base: &Tensor<4>) -> PatchSlot<ConvPatch> {
        let slot = PatchSlot::default();
        if component != Component::Vae {
            self.targets.insert((component, path.to_string()), Target::Conv { base: base.clone(), slot: slot.clone() });
        }
        slot
    }

    /// Moves the registrations of `other` (another loader's networks) into this host.
    pub fn absorb(&mut self, other: LoraHost) {
        self.targets.extend(other.targets);
    }

    /// Number of adaptable layers.
    pub fn len(&self) -> usize {
        self.targets.len()
    }

    pub fn is_empty(&self) -> bool {
        self.targets.is_empty()
    }

    /// Whether the model has a layer for this module.
    pub fn contains(&self, key: &ModuleKey) -> bool {
        self.targets.contains_key(&(key.component, key.path.clone()))
    }

    /// Back to the base weights (exact: they were never modified).
    pub fn clear(&self) {
        self.targets.values().for_each(Target::clear);
    }

    /// Looks up the layers of every touched module and checks shapes; names every module the model
    /// lacks (an adapter resolved against another model's table).
    fn targets_for<'s>(&'s self, files: &[&LoraFile]) -> Result<Vec<(ModuleKey, &'s Target)>> {
        let keys: BTreeSet<&ModuleKey> = files.iter().flat_map(|f| f.modules().map(|(k, _)| k)).collect();
        let mut found = Vec::with_capacity(keys.len());
        let mut missing = Vec::new();
        for key in keys {
            match self.targets.get(&(key.component, key.path.clone())) {
                Some(t) => {
                    for f in files {
                        if let Some(m) = f.module(key).filter(|m| m.target_shape != t.torch_shape()) {
                            return Err(Error::Lora(stylus_lora::Error::ShapeMismatch {
                                module: key.to_string(),
                                detail: format!("the adapter targets a weight of shape {:?}; this model's is {:?}", m.target_shape, t.torch_shape()),
                            }));
                        }
                    }
                    found.push((key.clone(), t));
                }
                None => missing.push(key.to_string()),
            }
        }
        if !missing.is_empty() {
            return Err(Error::Request(format!(
                "{} adapter modules are not layers of this model (first: {:?})",
                missing.len(),
                &missing[..missing.len().min(5)]
            )));
        }
        Ok(found)
    }

    /// Installs `adapters` with one weight each for every image: merged weights
    /// `W + Σ wᵢ·ΔWᵢ` on the device. Replaces the previous set atomically (on error nothing
    /// changes); an empty set restores the base.
    pub fn set(&self, adapters: &[(&LoraFile, f32)], device: &Device) -> Result<ApplyReport> {
        if let Some((_, w)) = adapters.iter().find(|(_, w)| !w.is_finite()) {
            return Err(Error::Lora(stylus_lora::Error::BadWeight(*w)));
        }
        let files: Vec<&LoraFile> = adapters.iter().map(|(f, _)| *f).collect();
        let mut report = ApplyReport::default();
        let mut staged = Vec::new();
        for (key, target) in self.targets_for(&files)? {
            // Low-rank adapters of a module in one matmul: [f₁up₁ | … | fₙupₙ] · [down₁; …; downₙ].
            let (mut ups, mut downs, mut dense) = (Vec::new(), Vec::new(), None::<Tensor<2>>);
            for (file, w) in adapters.iter().filter(|(_, w)| *w != 0.0) {
                let Some(m) = file.module(&key) else { continue };
                match factors(m, device, &mut report.uploaded_bytes)? {
                    // The same f32 factor as the host merge (`ModuleAdapter::delta`).
                    Some((up, down, _)) => {
                        ups.push(up * (m.scale * f64::from(*w)) as f32);
                        downs.push(down);
                    }
                    None => {
                        let d = upload(m.delta(*w).data, [m.target_shape[0], m.target_shape[1..].iter().product()], device, &mut report.uploaded_bytes)?;
                        dense = Some(match dense {
                            Some(s) => s + d,
                            None => d,
                        });
                    }
                }
            }
            // Linear layers store [in, out]: multiply the transposed factors (strided operands for
            // the GEMM) so the delta comes out in the layer's layout and the add is contiguous.
            let linear = matches!(target, Target::Linear { .. });
            let low = (!ups.is_empty()).then(|| {
                let (up, down) = (Tensor::cat(ups, 1), Tensor::cat(downs, 0));
                // through `gpu::matmul`: the engine's routine choice, and no panic from burn's
                // cubek `Auto` on tensor-core adapters
                if linear {
                    crate::gpu::matmul(down.transpose(), up.transpose())
                } else {
                    crate::gpu::matmul(up, down)
                }
            });
            let dense = if linear { dense.map(Tensor::transpose) } else { dense };
            let sum = match (low, dense) {
                (Some(l), Some(d)) => Some(l + d),
                (l, d) => l.or(d),
            };
            if let Some(sum) = sum {
                staged.push((target, sum));
            }
        }
        self.clear();
        report.modules = staged.len();
        for (target, sum) in staged {
            match target {
                Target::Linear { base, slot } => slot.set(Some(Arc::new(LinearPatch::Merged(base.clone() + sum)))),
                Target::Conv { base, slot } => {
                    let merged = base.clone() + sum.reshape(base.dims());
                    slot.set(Some(Arc::new(ConvPatch::Merged(merged))));
                }
            }
        }
        Ok(report)
    }

    /// Installs per-image weights: `weights[image][i]` is adapter `files[i]`'s final weight for
    /// that image (0 = off: Stylus' mask times `recommended · scale / n_active_in_topic`). Batch
    /// rows use image `row % images`, so the CFG batch `[uncond…, cond…]` works as is. When every
    /// image has the same weights this is [`LoraHost::set`].
    pub fn set_per_image(&self, files: &[&LoraFile], weights: &[Vec<f32>], device: &Device) -> Result<ApplyReport> {
        let images = weights.len();
        if images == 0 {
            return Err(Error::Request("per-image adapter weights need at least one image".into()));
        }
        if let Some((i, row)) = weights.iter().enumerate().find(|(_, r)| r.len() != files.len()) {
            return Err(Error::Request(format!("image {i} has {} adapter weights for {} adapters", row.len(), files.len())));
        }
        if let Some(w) = weights.iter().flatten().find(|w| !w.is_finite()) {
            return Err(Error::Lora(stylus_lora::Error::BadWeight(*w)));
        }
        if weights.iter().all(|r| r == &weights[0]) {
            let uniform: Vec<(&LoraFile, f32)> = files.iter().copied().zip(weights[0].iter().copied()).collect();
            return self.set(&uniform, device);
        }
        let active: Vec<usize> = (0..files.len()).filter(|&i| weights.iter().any(|r| r[i] != 0.0)).collect();
        let active_files: Vec<&LoraFile> = active.iter().map(|&i| files[i]).collect();
        let mut report = ApplyReport { per_image: true, ..ApplyReport::default() };
        let mut staged = Vec::new();
        for (key, target) in self.targets_for(&active_files)? {
            let mut lin = Vec::new();
            let mut conv = Vec::new();
            for &i in &active {
                let Some(m) = files[i].module(&key) else {
                    continue;
                };
                let col: Vec<f32> = weights.iter().map(|r| r[i]).collect();
                match target {
                    Target::Linear { .. } => lin.push(linear_term(m, &col, device, &mut report.uploaded_bytes)?),
                    Target::Conv { .. } => conv.push(conv_term(m, &col, device, &mut report.uploaded_bytes)?),
                }
            }
            staged.push((target, lin, conv));
        }
        self.clear();
        report.modules = staged.len();
        for (target, lin, conv) in staged {
            match target {
                Target::Linear { slot, .. } => slot.set(Some(Arc::new(LinearPatch::PerSample(lin)))),
                Target::Conv { slot, .. } => slot.set(Some(Arc::new(ConvPatch::PerSample(conv)))),
            }
        }
        Ok(report)
    }

    /// The weight a layer uses now, in torch layout (`[out, in]` / `[out, in, kh, kw]`), read back
    /// to the host. Errors in per-image mode (no single weight) and for unknown modules.
    pub fn effective_weight(&self, key: &ModuleKey) -> Result<Vec<f32>> {
        let target = self.targets.get(&(key.component, key.path.clone())).ok_or_else(|| Error::Request(format!("no layer `{key}` in this model")))?;
        let per_image = || Error::Request(format!("`{key}` runs per-image adapter terms; it has no single weight"));
        match target {
            Target::Linear { base, slot } => match slot.get().as_deref() {
                None => to_vec(base.clone().transpose()),
                Some(LinearPatch::Merged(w)) => to_vec(w.clone().transpose()),
                Some(LinearPatch::PerSample(_)) => Err(per_image()),
            },
            Target::Conv { base, slot } => match slot.get().as_deref() {
                None => to_vec(base.clone()),
                Some(ConvPatch::Merged(w)) => to_vec(w.clone()),
                Some(ConvPatch::PerSample(_)) => Err(per_image()),
            },
        }
    }
}

fn upload<const D: usize>(values: Vec<f32>, shape: [usize; D], device: &Device, uploaded: &mut u64) -> Result<Tensor<D>> {
    *uploaded += 4 * values.len() as u64;
    from_vec(values, shape, device)
}

/// `[out, r]` and `[r, rest]` factors of a low-rank module (rest = in·kh·kw).
fn factors(m: &ModuleAdapter, device: &Device, uploaded: &mut u64) -> Result<Option<(Tensor<2>, Tensor<2>, f32)>> {
    let Some(lr) = m.low_rank() else {
        return Ok(None);
    };
    let (out, r) = (m.target_shape[0], lr.down.shape[0]);
    let rest = lr.down.data.len() / r.max(1);
    let up = upload(lr.up.data, [out, r], device, uploaded)?;
    let down = upload(lr.down.data, [r, rest], device, uploaded)?;
    Ok(Some((up, down, lr.scale)))
}

fn coeffs(col: &[f32], scale: f32, device: &Device, uploaded: &mut u64) -> Result<Tensor<1>> {
    upload(col.iter().map(|w| w * scale).collect(), [col.len()], device, uploaded)
}

fn linear_term(m: &ModuleAdapter, col: &[f32], device: &Device, uploaded: &mut u64) -> Result<Term<2>> {
    let (out, inp) = (m.target_shape[0], m.target_shape[1]);
    Ok(match factors(m, device, uploaded)? {
        Some((up, down, scale)) => {
            Term { first: down.transpose(), second: Some(up.transpose()), coeff: coeffs(col, scale, device, uploaded)?, images: col.len() }
        }
        None => Term {
            first: upload(m.delta(1.0).data, [out, inp], device, uploaded)?.transpose(),
            second: None,
            coeff: coeffs(col, 1.0, device, uploaded)?,
            images: col.len(),
        },
    })
}

fn conv_term(m: &ModuleAdapter, col: &[f32], device: &Device, uploaded: &mut u64) -> Result<Term<4>> {
    let s = &m.target_shape;
    let shape4 = [s[0], s[1], s.get(2).copied().unwrap_or(1), s.get(3).copied().unwrap_or(1)];
    Ok(match factors(m, device, uploaded)? {
        Some((up, down, scale)) => {
            let r = down.dims()[0];
            Term {
                first: down.reshape([r, shape4[1], shape4[2], shape4[3]]),
                second: Some(up.reshape([shape4[0], r, 1, 1])),
                coeff: coeffs(col, scale, device, uploaded)?,
                images: col.len(),
            }
        }
        None => {
            Term { first: upload(m.delta(1.0).data, shape4, device, uploaded)?, second: None, coeff: coeffs(col, 1.0, device, uploaded)?, images: col.len() }
        }
    })
}
