//! What `gpu/mod.rs` calls on the cube backend, for builds without it (no `wgpu` feature): every
//! kernel declines (`None`), so the callers run burn's ops.

pub mod cube {
    use super::super::GpuMatmul;
    use burn::tensor::Tensor;

    pub fn is_cube<const D: usize>(_: &Tensor<D>) -> bool {
        false
    }

    pub fn is_contiguous<const D: usize>(_: &Tensor<D>) -> bool {
        true
    }

    #[cfg(test)]
    pub fn matmul<const D: usize>(_: &Tensor<D>, _: &Tensor<D>, _: GpuMatmul) -> Option<Tensor<D>> {
        None
    }

    pub fn matmul_or_fallback<const D: usize>(_: &Tensor<D>, _: &Tensor<D>, _: GpuMatmul) -> Option<Tensor<D>> {
        None
    }

    pub fn flash_attention(_: &Tensor<4>, _: &Tensor<4>, _: &Tensor<4>, _: bool, _: u8) -> Option<Tensor<4>> {
        None
    }

    pub fn tensor_cores<const D: usize>(_: &Tensor<D>) -> bool {
        false
    }
}

pub mod epilogue {
    use burn::tensor::Tensor;

    pub fn epilogue(
        _: &Tensor<3>,
        _: Option<&Tensor<1>>,
        _: Option<(&Tensor<2>, Option<&Tensor<1>>)>,
        _: Option<(&Tensor<3>, Option<&Tensor<1>>)>,
    ) -> Option<Tensor<3>> {
        None
    }

    pub fn geglu(_: &Tensor<2>, _: Option<&Tensor<1>>) -> Option<Tensor<2>> {
        None
    }
}

pub mod im2col {
    use burn::tensor::Tensor;

    #[allow(clippy::too_many_arguments)]
    pub fn im2col(_: &Tensor<4>, _: usize, _: usize, _: usize, _: usize, _: usize, _: usize, _: usize, _: usize) -> Option<Tensor<3>> {
        None
    }
}

pub mod norm {
    use burn::tensor::Tensor;

    pub fn group_norm(_: &Tensor<4>, _: &Tensor<1>, _: &Tensor<1>, _: usize, _: f64, _: bool) -> Option<Tensor<4>> {
        None
    }

    pub fn layer_norm<const D: usize>(_: &Tensor<D>, _: &Tensor<1>, _: &Tensor<1>, _: f64) -> Option<Tensor<D>> {
        None
    }
}

pub mod tiled {
    use burn::tensor::Tensor;

    pub fn matmul_auto(_: &Tensor<3>, _: &Tensor<3>) -> Option<Tensor<3>> {
        None
    }
}

pub mod rows {
    use burn::tensor::Tensor;

    pub fn attention(_: &Tensor<4>, _: &Tensor<4>, _: &Tensor<4>, _: bool) -> Option<Tensor<4>> {
        None
    }
}
