//! What a LoRA adds to one Linear/Conv2d at run time: a merged weight (`W + Σ wᵢ·ΔWᵢ`, computed on
//! the device from the pristine `W`), or per-sample low-rank terms
//! `y = W x + Σᵢ cᵢ[b] · up_i(down_i x)` so that images with different masks share one batch.
//! The layer keeps its base tensor untouched; a [`PatchSlot`] holds the patch, swapped as a whole.

use std::fmt;
use std::sync::{Arc, RwLock};

use burn::tensor::ops::ConvOptions;
use burn::tensor::Tensor;

use crate::gpu::linear;
use crate::kernels::conv2d_with as conv2d;

/// The patch currently applied to one layer (`None`: the base weights alone). Cloning shares it.
pub struct PatchSlot<P>(Arc<RwLock<Option<Arc<P>>>>);

impl<P> PatchSlot<P> {
    pub(crate) fn get(&self) -> Option<Arc<P>> {
        self.0.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub(crate) fn set(&self, patch: Option<Arc<P>>) {
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = patch;
    }
}

impl<P> Default for PatchSlot<P> {
    fn default() -> Self {
        PatchSlot(Arc::new(RwLock::new(None)))
    }
}

impl<P> Clone for PatchSlot<P> {
    fn clone(&self) -> Self {
        PatchSlot(Arc::clone(&self.0))
    }
}

impl<P> fmt::Debug for PatchSlot<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.get().is_some() { "Slot(patched)" } else { "Slot(base)" })
    }
}

/// One adapter's contribution to one layer for a batch of images.
pub(crate) struct Term<const W: usize> {
    /// Applied to the input: linear `[in, r]` (dense: `[in, out]`); conv `[r, in, kh, kw]`
    /// (dense: `[out, in, kh, kw]`) with the layer's stride and padding.
    pub first: Tensor<W>,
    /// Low rank only: linear `[r, out]`; conv `[out, r, 1, 1]`.
    pub second: Option<Tensor<W>>,
    /// Per image: adapter weight × the adapter's scale (alpha/r). Rows of a batch use
    /// `coeff[row % images]`: the CFG batch `[uncond…, cond…]` repeats the images.
    pub coeff: Tensor<1>,
    pub images: usize,
}

impl<const W: usize> Term<W> {
    /// `[batch, 1, …]` coefficients for a batch of `batch` rows.
    fn coeff<const D: usize>(&self, batch: usize) -> Tensor<D> {
        let c = if batch == self.images { self.coeff.clone() } else { self.coeff.clone().repeat_dim(0, batch.div_ceil(self.images)).narrow(0, 0, batch) };
        let mut shape = [1usize; D];
        shape[0] = batch;
        c.reshape(shape)
    }
}

/// A Linear layer's patch (weights in burn's `[in, out]` layout). One per patched layer, at most a few
/// hundred: the size difference between the variants costs nothing worth a box.
#[allow(clippy::large_enum_variant)]
pub(crate) enum LinearPatch {
    Merged(Tensor<2>),
    PerSample(Vec<Term<2>>),
}

/// A Conv2d layer's patch (`[out, in, kh, kw]`; boxing the large variant is not worth it, as above).
#[allow(clippy::large_enum_variant)]
pub(crate) enum ConvPatch {
    Merged(Tensor<4>),
    PerSample(Vec<Term<4>>),
}

/// The weight a Linear multiplies by where its patch has no per-sample terms (the base one, or
/// the merged one); `None` with per-sample terms, which come after the bias.
pub(crate) fn linear_weight(slot: &PatchSlot<LinearPatch>, base: &Tensor<2>) -> Option<Tensor<2>> {
    match slot.get().as_deref() {
        None => Some(base.clone()),
        Some(LinearPatch::Merged(w)) => Some(w.clone()),
        Some(LinearPatch::PerSample(_)) => None,
    }
}

/// [`linear_weight`] for a Conv2d.
pub(crate) fn conv_weight(slot: &PatchSlot<ConvPatch>, base: &Tensor<4>) -> Option<Tensor<4>> {
    match slot.get().as_deref() {
        None => Some(base.clone()),
        Some(ConvPatch::Merged(w)) => Some(w.clone()),
        Some(ConvPatch::PerSample(_)) => None,
    }
}

/// `x·W + b` with the slot's patch.
pub(crate) fn linear_forward<const D: usize>(slot: &PatchSlot<LinearPatch>, x: Tensor<D>, weight: &Tensor<2>, bias: &Option<Tensor<1>>) -> Tensor<D> {
    match slot.get().as_deref() {
        None => linear(x, weight.clone(), bias.clone()),
        Some(LinearPatch::Merged(w)) => linear(x, w.clone(), bias.clone()),
        Some(LinearPatch::PerSample(terms)) => {
            let batch = x.dims()[0];
            let mut y = linear(x.clone(), weight.clone(), bias.clone());
            for t in terms {
                let mut h = linear(x.clone(), t.first.clone(), None);
                if let Some(second) = &t.second {
                    h = linear(h, second.clone(), None);
                }
                y = y + h * t.coeff::<D>(batch);
            }
            y
        }
    }
}

/// `conv(x, W) + b` with the slot's patch; `opts` are the layer's stride and padding.
pub(crate) fn conv_forward(slot: &PatchSlot<ConvPatch>, x: Tensor<4>, weight: &Tensor<4>, bias: &Tensor<1>, opts: ConvOptions<2>) -> Tensor<4> {
    match slot.get().as_deref() {
        None => conv2d(x, weight.clone(), Some(bias.clone()), opts),
        Some(ConvPatch::Merged(w)) => conv2d(x, w.clone(), Some(bias.clone()), opts),
        Some(ConvPatch::PerSample(terms)) => {
            let batch = x.dims()[0];
            let mut y = conv2d(x.clone(), weight.clone(), Some(bias.clone()), opts.clone());
            let pointwise = ConvOptions::new_with_padding([1, 1], [(0, 0), (0, 0)], [1, 1], 1);
            for t in terms {
                let mut h = conv2d(x.clone(), t.first.clone(), None, opts.clone());
                if let Some(second) = &t.second {
                    h = conv2d(h, second.clone(), None, pointwise.clone());
                }
                y = y + h * t.coeff::<4>(batch);
            }
            y
        }
    }
}
