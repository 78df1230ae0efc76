//! Dense f32 tensors and the safetensors → f32 conversion: F32/F16/BF16 little endian, upcast
//! before any math (NOTES §5.3 "compute in fp32"), NaN/Inf refused.

use safetensors::tensor::TensorView;
use safetensors::Dtype;

use crate::Error;

/// A dense row-major f32 tensor.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Tensor {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

impl Tensor {
    /// Number of elements.
    pub fn numel(&self) -> usize {
        self.data.len()
    }
    /// Largest absolute value (0 for an empty tensor).
    pub fn max_abs(&self) -> f32 {
        self.data.iter().fold(0.0f32, |m, v| m.max(v.abs()))
    }
}

/// Product of dimensions, `None` on overflow.
pub(crate) fn checked_numel(shape: &[usize]) -> Option<usize> {
    shape.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d))
}

/// The dtype's name as safetensors writes it (`F16`, `BF16`, …).
pub(crate) fn dtype_name(dtype: Dtype) -> String {
    format!("{dtype:?}")
}

/// Converts a tensor to f32, refusing other dtypes and non-finite values.
pub(crate) fn to_f32(key: &str, view: &TensorView<'_>) -> Result<Tensor, Error> {
    // The dtype conversion is the checkpoint loader's (F32/F16/BF16, little endian).
    let data = stylus_sd::checkpoint::to_f32(view)
        .map_err(|_| Error::UnsupportedDtype { key: key.to_string(), dtype: dtype_name(view.dtype()) })?;
    // safetensors validated data length == numel × size; re-check rather than trust it.
    if checked_numel(view.shape()) != Some(data.len()) {
        return Err(Error::Safetensors(format!("tensor `{key}`: data length does not match its shape")));
    }
    if data.iter().any(|v| !v.is_finite()) {
        return Err(Error::NonFinite { key: key.to_string() });
    }
    Ok(Tensor { shape: view.shape().to_vec(), data })
}

/// A row-major matrix (factors of adapters are normalised to this).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Mat {
    pub rows: usize,
    pub cols: usize,
    pub data: Vec<f32>,
}

impl Mat {
    /// `self @ other`, f32 accumulation over k in order. Shapes are checked by the caller.
    pub fn matmul(&self, other: &Mat) -> Vec<f32> {
        let mut out = vec![0.0f32; self.rows * other.cols];
        if other.cols == 0 || self.cols == 0 {
            return out;
        }
        for (orow, arow) in out.chunks_exact_mut(other.cols).zip(self.data.chunks_exact(self.cols)) {
            for (&a, brow) in arow.iter().zip(other.data.chunks_exact(other.cols)) {
                for (o, &b) in orow.iter_mut().zip(brow) {
                    *o += a * b;
                }
            }
        }
        out
    }
    /// The transpose.
    pub fn transposed(&self) -> Mat {
        let mut data = vec![0.0f32; self.data.len()];
        if self.cols > 0 {
            for (i, row) in self.data.chunks_exact(self.cols).enumerate() {
                for (j, &v) in row.iter().enumerate() {
                    if let Some(slot) = data.get_mut(j * self.rows + i) {
                        *slot = v;
                    }
                }
            }
        }
        Mat { rows: self.cols, cols: self.rows, data }
    }
}

/// A Tucker core `[r1, r2, k]` (k = kh·kw).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Core {
    pub r1: usize,
    pub r2: usize,
    pub k: usize,
    pub data: Vec<f32>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matmul_small() {
        let a = Mat { rows: 2, cols: 3, data: vec![1., 2., 3., 4., 5., 6.] };
        let b = Mat { rows: 3, cols: 2, data: vec![7., 8., 9., 10., 11., 12.] };
        assert_eq!(a.matmul(&b), vec![58., 64., 139., 154.]);
        assert_eq!(a.transposed().data, vec![1., 4., 2., 5., 3., 6.]);
    }

    #[test]
    fn dtypes_and_non_finite() {
        let bytes: Vec<u8> = [1.5f32, -2.0].iter().flat_map(|v| v.to_le_bytes()).collect();
        let v = TensorView::new(Dtype::F32, vec![2], &bytes).unwrap();
        assert_eq!(to_f32("k", &v).unwrap().data, vec![1.5, -2.0]);
        let h: Vec<u8> = [half::f16::from_f32(0.5), half::f16::INFINITY].iter().flat_map(|v| v.to_le_bytes()).collect();
        let v = TensorView::new(Dtype::F16, vec![2], &h).unwrap();
        assert!(matches!(to_f32("k", &v), Err(Error::NonFinite { .. })));
        let i = [0u8; 8];
        let v = TensorView::new(Dtype::I64, vec![1], &i).unwrap();
        assert!(matches!(to_f32("k", &v), Err(Error::UnsupportedDtype { .. })));
    }
}
