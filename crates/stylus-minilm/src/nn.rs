//! The three layers BERT is made of — `nn.Linear`, `nn.LayerNorm`, `nn.Embedding` — as plain structs
//! whose fields are the checkpoint's `weight`/`bias` (semantics of `torch.nn`), and host read-back.

use burn::tensor::module::{embedding, layer_norm, linear};
use burn::tensor::{Int, Tensor};

use crate::load::Weights;
use crate::Error;

/// `nn.Linear`; `weight` is stored `[in, out]` (burn's convention), transposed at load from torch's `[out, in]`.
#[derive(Debug, Clone)]
pub struct Linear {
    pub weight: Tensor<2>,
    pub bias: Tensor<1>,
}

impl Linear {
    pub fn load(w: &mut Weights<'_>, path: &str, d_in: usize, d_out: usize) -> Result<Self, Error> {
        let weight = w.take_linear_weight(&format!("{path}.weight"), d_in, d_out)?;
        let bias = w.take::<1>(&format!("{path}.bias"), [d_out])?;
        Ok(Linear { weight, bias })
    }

    pub fn forward<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        linear(x, self.weight.clone(), Some(self.bias.clone()))
    }
}

/// `nn.LayerNorm(C, eps)` over the last dimension (biased variance).
#[derive(Debug, Clone)]
pub struct LayerNorm {
    pub weight: Tensor<1>,
    pub bias: Tensor<1>,
    eps: f64,
}

impl LayerNorm {
    pub fn load(w: &mut Weights<'_>, path: &str, c: usize, eps: f64) -> Result<Self, Error> {
        Ok(LayerNorm { weight: w.take::<1>(&format!("{path}.weight"), [c])?, bias: w.take::<1>(&format!("{path}.bias"), [c])?, eps })
    }

    pub fn forward<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        layer_norm(x, self.weight.clone(), Some(self.bias.clone()), self.eps)
    }
}

/// `nn.Embedding`: `weight` `[num, dim]`.
#[derive(Debug, Clone)]
pub struct Embedding {
    pub weight: Tensor<2>,
}

impl Embedding {
    pub fn load(w: &mut Weights<'_>, path: &str, num: usize, dim: usize) -> Result<Self, Error> {
        Ok(Embedding { weight: w.take::<2>(&format!("{path}.weight"), [num, dim])? })
    }

    /// `[B, S]` ids → `[B, S, dim]`.
    pub fn forward(&self, ids: Tensor<2, Int>) -> Tensor<3> {
        embedding(self.weight.clone(), ids)
    }
}

/// Reads a tensor back as host f32 values (row-major), whatever the device's float dtype.
pub fn to_vec<const D: usize>(x: Tensor<D>) -> Result<Vec<f32>, Error> {
    let data = x.try_into_data().map_err(|e| Error::Backend(format!("{e:?}")))?;
    data.convert::<f32>().try_into_vec::<f32>().map_err(|e| Error::Backend(format!("{e:?}")))
}
