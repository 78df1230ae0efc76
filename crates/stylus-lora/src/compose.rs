//! Composition and merge: `W' = W + Σᵢ mᵢ · scaleᵢ · ΔWᵢ` per module, in f32 (NOTES §5.3; mᵢ is
//! the A1111 `<lora:name:m>` weight = diffusers adapter weight × lora_scale, for Stylus the
//! composer's weight). The base is never modified in a way that needs undoing: see the crate docs
//! ("Restoring the base") for the pristine-base design.

use std::collections::{BTreeMap, BTreeSet};

use crate::file::LoraFile;
use crate::table::ModuleKey;
use crate::tensor::{checked_numel, Tensor};
use crate::Error;

fn check_weights(adapters: &[(&LoraFile, f32)]) -> Result<(), Error> {
    match adapters.iter().find(|(_, w)| !w.is_finite()) {
        Some((_, w)) => Err(Error::BadWeight(*w)),
        None => Ok(()),
    }
}

/// Every module that at least one adapter with a non-zero weight changes.
pub fn touched_modules(adapters: &[(&LoraFile, f32)]) -> BTreeSet<ModuleKey> {
    adapters.iter().filter(|(_, w)| *w != 0.0).flat_map(|(f, _)| f.modules().map(|(k, _)| k.clone())).collect()
}

/// `Σᵢ wᵢ · scaleᵢ · ΔWᵢ` for one module (`None` when no adapter touches it): the streaming path,
/// one module's delta in memory at a time.
pub fn delta_for(adapters: &[(&LoraFile, f32)], module: &ModuleKey) -> Result<Option<Tensor>, Error> {
    check_weights(adapters)?;
    let mut sum: Option<Tensor> = None;
    for (file, w) in adapters {
        if *w == 0.0 {
            continue;
        }
        let Some(a) = file.module(module) else { continue };
        let d = a.delta(*w);
        match &mut sum {
            None => sum = Some(d),
            Some(s) => {
                if s.shape != d.shape {
                    return Err(Error::ShapeMismatch {
                        module: module.to_string(),
                        detail: format!("adapters disagree on the shape ({:?} vs {:?}); were they parsed against different models?", s.shape, d.shape),
                    });
                }
                for (x, y) in s.data.iter_mut().zip(&d.data) {
                    *x += y;
                }
            }
        }
    }
    Ok(sum)
}

/// Sums the weighted deltas of several adapters per module. Materialises every touched module;
/// for a full-size model prefer [`touched_modules`] + [`delta_for`] module by module.
pub fn compose(adapters: &[(&LoraFile, f32)]) -> Result<BTreeMap<ModuleKey, Tensor>, Error> {
    let mut out = BTreeMap::new();
    for module in touched_modules(adapters) {
        if let Some(d) = delta_for(adapters, &module)? {
            out.insert(module, d);
        }
    }
    Ok(out)
}

fn check_base(len: usize, shape: &[usize], delta: &Tensor) -> Result<(), Error> {
    if shape != delta.shape.as_slice() || checked_numel(shape) != Some(len) || len != delta.data.len() {
        return Err(Error::ShapeMismatch {
            module: "base weight".into(),
            detail: format!("base {shape:?} with {len} values vs delta {:?}", delta.shape),
        });
    }
    Ok(())
}

/// `base + delta` as a new buffer; the (pristine) base is left untouched.
pub fn merged(base: &[f32], shape: &[usize], delta: &Tensor) -> Result<Vec<f32>, Error> {
    check_base(base.len(), shape, delta)?;
    Ok(base.iter().zip(&delta.data).map(|(b, d)| b + d).collect())
}

/// `weights += delta` on a scratch copy of the base (re-merge from the pristine base to undo).
pub fn add_in_place(weights: &mut [f32], shape: &[usize], delta: &Tensor) -> Result<(), Error> {
    check_base(weights.len(), shape, delta)?;
    for (w, d) in weights.iter_mut().zip(&delta.data) {
        *w += d;
    }
    Ok(())
}
