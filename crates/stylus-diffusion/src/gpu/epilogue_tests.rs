//! Tests of `epilogue.rs` through the layers that use it (`nn::add_terms`, `nn::geglu`,
//! `Linear::forward_add`, `Conv2d::to_tokens` / `from_tokens_add`): against f64 definitions on the
//! device `STYLUS_DEVICE` names (lavapipe with `STYLUS_DEVICE=wgpu`), where on wgpu the kernels
//! must really run, and against the unfused layers.

use burn::tensor::{FloatDType, Tensor};

use super::*;
use crate::nn::{add_terms, add_terms_nchw, from_vec, geglu, to_vec, Conv2d, Linear};
use crate::testing::{max_diff, pseudo};

fn tensor<const D: usize>(shape: [usize; D], seed: u32, scale: f32, dev: &burn::tensor::Device) -> (Tensor<D>, Vec<f32>) {
    let v: Vec<f32> = pseudo(shape.iter().product(), seed).into_iter().map(|x| scale * x).collect();
    (from_vec(v.clone(), shape, dev).unwrap(), v)
}

fn assert_close<const D: usize>(got: Tensor<D>, want: &[f32], tol: f32, what: &str) {
    let got = to_vec(got.cast(FloatDType::F32)).unwrap();
    assert_eq!(got.len(), want.len(), "{what}: length");
    let err = max_diff(&got, want);
    assert!(err <= tol, "{what}: max |diff| {err} > {tol}");
}

/// erf by its Maclaurin series, in f64 (|x| ≤ 4 here).
fn erf(x: f64) -> f64 {
    let (mut term, mut sum) = (x, x);
    for n in 1..120 {
        term *= -x * x / n as f64;
        sum += term / (2 * n + 1) as f64;
    }
    sum * 2.0 / std::f64::consts::PI.sqrt()
}

/// Every combination of terms (with and without their biases), a strided `y` and residual, the
/// layouts the engine uses (`[B, C, H·W]` with a per-sample term, tokens `[rows, C, 1]`), f16;
/// mismatched shapes are declined by the kernel (and the ops still answer).
#[test]
fn add_terms_matches_the_definition() {
    let dev = crate::device_from_env().unwrap();
    let on_cube = |t: &Tensor<3>| cube::is_cube(t);
    for (case, &[o, c, i]) in [[2, 5, 7], [6, 16, 1], [3, 4, 300]].iter().enumerate() {
        let (y, yv) = tensor([o, c, i], 1 + case as u32, 2.0, &dev);
        let (bias, bv) = tensor([c], 2, 1.0, &dev);
        let (t, tv) = tensor([o, c], 3, 1.5, &dev);
        let (tb, tbv) = tensor([c], 4, 0.5, &dev);
        let (r, rv) = tensor([o, c, i], 5, 3.0, &dev);
        let (rb, rbv) = tensor([c], 6, 0.25, &dev);
        for mask in 0..32u32 {
            let on = |bit: u32| mask & (1 << bit) != 0;
            let (b_on, t_on, tb_on, r_on, rb_on) = (on(0), on(1), on(2) && on(1), on(3), on(4) && on(3));
            let want: Vec<f32> = (0..o * c * i)
                .map(|e| {
                    let (oi, ci) = (e / (c * i), (e / i) % c);
                    let mut v = yv[e] as f64 + if b_on { bv[ci] as f64 } else { 0.0 };
                    if t_on {
                        v += tv[oi * c + ci] as f64 + if tb_on { tbv[ci] as f64 } else { 0.0 };
                    }
                    if r_on {
                        v += rv[e] as f64 + if rb_on { rbv[ci] as f64 } else { 0.0 };
                    }
                    v as f32
                })
                .collect();
            let sample = t_on.then(|| (t.clone(), tb_on.then(|| tb.clone())));
            let residual = r_on.then(|| (r.clone(), rb_on.then(|| rb.clone())));
            if on_cube(&y) {
                let ran = epilogue(&y, b_on.then_some(&bias), sample.as_ref().map(|(t, b)| (t, b.as_ref())), residual.as_ref().map(|(r, b)| (r, b.as_ref())));
                assert!(ran.is_some(), "case {case} terms {mask:05b}: the kernel ran");
            }
            let got = add_terms(y.clone(), b_on.then(|| bias.clone()), sample, residual);
            assert_close(got, &want, 1e-5, &format!("case {case} terms {mask:05b}"));
        }
        // one time-embedding row for every row of `y`: the kernel declines, the ops broadcast it
        if o > 1 {
            let t1 = t.clone().narrow(0, 0, 1);
            if on_cube(&y) {
                assert!(epilogue(&y, None, Some((&t1, None)), None).is_none(), "case {case}: a broadcast sample is declined");
            }
            let want: Vec<f32> = (0..o * c * i).map(|e| yv[e] + tv[(e / i) % c]).collect();
            assert_close(add_terms(y.clone(), None, Some((t1, None)), None), &want, 1e-5, &format!("case {case} broadcast sample"));
        }
        // strided y and residual: the same values, read through permuted views
        let flip = |v: &[f32]| (0..o * c * i).map(|e| v[(e % o) * c * i + ((e / o) % c) * i + e / (o * c)]).collect::<Vec<_>>();
        let yt = from_vec(flip(&yv), [i, c, o], &dev).unwrap().permute([2, 1, 0]);
        let rt = from_vec(flip(&rv), [i, c, o], &dev).unwrap().permute([2, 1, 0]);
        let want: Vec<f32> = (0..o * c * i).map(|e| ((yv[e] + bv[(e / i) % c]) as f64 + rv[e] as f64) as f32).collect();
        if on_cube(&y) {
            assert!(epilogue(&yt, Some(&bias), None, Some((&rt, None))).is_some(), "case {case}: strided operands run");
        }
        assert_close(add_terms(yt, Some(bias.clone()), None, Some((rt, None))), &want, 1e-5, &format!("case {case} strided"));
        // shapes that do not match: declined, and the ops broadcast or fail as before
        if on_cube(&y) {
            let (wrong, _) = tensor([c + 1], 7, 1.0, &dev);
            assert!(epilogue(&y, Some(&wrong), None, None).is_none(), "a bias of the wrong length is declined");
            let (wrong, _) = tensor([o, c, i + 1], 8, 1.0, &dev);
            assert!(epilogue(&y, None, None, Some((&wrong, None))).is_none(), "a residual of the wrong shape is declined");
        }
        // f16: the kernel runs in the tensors' dtype
        let half = |t: &Tensor<3>| t.clone().cast(FloatDType::F16);
        let b16 = bias.clone().cast(FloatDType::F16);
        let want: Vec<f32> = (0..o * c * i).map(|e| yv[e] + bv[(e / i) % c] + rv[e]).collect();
        if on_cube(&y) {
            assert!(epilogue(&half(&y), Some(&b16), None, Some((&half(&r), None))).is_some(), "case {case}: f16 runs");
        }
        let got = add_terms(half(&y), Some(b16), None, Some((half(&r), None)));
        assert_eq!(got.dtype(), burn::tensor::DType::F16);
        assert_close(got, &want, 1e-2, &format!("case {case} f16"));
    }
}

/// GEGLU against its f64 definition (exact erf GELU), with and without the bias, widths a
/// workgroup does not divide, f16; on wgpu the kernel must run, and it equals the unfused ops.
#[test]
fn geglu_matches_the_definition() {
    let dev = crate::device_from_env().unwrap();
    for (case, &(rows, n)) in [(3, 5), (2 * 64, 160), (1, 1)].iter().enumerate() {
        let (h, hv) = tensor([rows, 2 * n], 10 + case as u32, 3.0, &dev);
        let (bias, bv) = tensor([2 * n], 11, 0.5, &dev);
        for with_bias in [false, true] {
            let b = |j: usize| if with_bias { bv[j] as f64 } else { 0.0 };
            let want: Vec<f32> = (0..rows * n)
                .map(|e| {
                    let (r, j) = (e / n, e % n);
                    let (a, g) = (hv[r * 2 * n + j] as f64 + b(j), hv[r * 2 * n + n + j] as f64 + b(n + j));
                    (a * g * 0.5 * (1.0 + erf(g / std::f64::consts::SQRT_2))) as f32
                })
                .collect();
            let bias_opt = with_bias.then(|| bias.clone());
            if cube::is_cube(&h) {
                assert!(super::geglu(&h, bias_opt.as_ref()).is_some(), "case {case}: the kernel ran");
            }
            let got = geglu(h.clone().unsqueeze::<3>(), bias_opt.clone());
            assert_eq!(got.dims(), [1, rows, n]);
            assert_close(got, &want, 2e-5, &format!("case {case} bias {with_bias}"));
            // the unfused ops on the same device
            let hb = match &bias_opt {
                Some(b) => h.clone() + b.clone().unsqueeze::<2>(),
                None => h.clone(),
            };
            let ops = hb.clone().narrow(1, 0, n) * crate::nn::gelu(hb.narrow(1, n, n));
            assert_close(geglu(h.clone(), bias_opt.clone()), &to_vec(ops).unwrap(), 1e-5, &format!("case {case} vs ops"));
            let got16 = geglu(h.clone().cast(FloatDType::F16), bias_opt.map(|b| b.cast(FloatDType::F16)));
            assert_eq!(got16.dtype(), burn::tensor::DType::F16);
            assert_close(got16, &want, 2e-2, &format!("case {case} f16"));
        }
    }
    if cube::is_cube(&tensor([1], 0, 1.0, &dev).0) {
        let (odd, _) = tensor([2, 5], 12, 1.0, &dev);
        assert!(super::geglu(&odd, None).is_none(), "an odd width is declined");
    }
}

/// The layers around the kernels: `Linear::forward_add` is `residual + forward`, `to_tokens` is the
/// 1×1 convolution permuted to tokens, `from_tokens_add` its inverse plus a residual, and
/// `add_terms_nchw` the resnet's `conv + temb` and `shortcut + conv`.
#[test]
fn fused_layers_equal_the_unfused_ones() {
    let dev = crate::device_from_env().unwrap();
    let (b, c, co, h, w) = (2, 24, 16, 5, 3);
    let (wl, _) = tensor([c, co], 20, 0.3, &dev);
    let (bl, _) = tensor([co], 21, 1.0, &dev);
    let linear = Linear::new(wl, Some(bl));
    let (x, _) = tensor([b, h * w, c], 22, 1.0, &dev);
    let (res, _) = tensor([b, h * w, co], 23, 2.0, &dev);
    let want = to_vec(res.clone() + linear.forward(x.clone())).unwrap();
    assert_close(linear.forward_add(x, res), &want, 1e-5, "Linear::forward_add");

    let (wc, _) = tensor([co, c, 1, 1], 24, 0.3, &dev);
    let (bc, _) = tensor([co], 25, 1.0, &dev);
    let conv = Conv2d::new(wc, bc);
    let (x, _) = tensor([b, c, h, w], 26, 1.0, &dev);
    let want = to_vec(conv.forward(x.clone()).permute([0, 2, 3, 1]).reshape([b, h * w, co])).unwrap();
    assert_close(conv.to_tokens(x), &want, 1e-5, "Conv2d::to_tokens");
    let (tokens, _) = tensor([b, h * w, c], 27, 1.0, &dev);
    let (res, _) = tensor([b, co, h, w], 28, 2.0, &dev);
    let nchw = tokens.clone().reshape([b, h, w, c]).permute([0, 3, 1, 2]);
    let want = to_vec(conv.forward(nchw) + res.clone()).unwrap();
    assert_close(conv.from_tokens_add(tokens, h, w, res), &want, 1e-5, "Conv2d::from_tokens_add");

    let (y, _) = tensor([b, co, h, w], 29, 2.0, &dev);
    let (t, _) = tensor([b, co], 30, 1.0, &dev);
    let (bias, _) = tensor([co], 31, 1.0, &dev);
    let want = to_vec(y.clone() + bias.clone().reshape([1, co, 1, 1]) + t.clone().reshape([b, co, 1, 1])).unwrap();
    assert_close(add_terms_nchw(y.clone(), Some(bias.clone()), Some((t, None)), None), &want, 1e-5, "conv + temb");
    let (s, _) = tensor([b, co, h, w], 32, 2.0, &dev);
    let want = to_vec(s.clone() + (y.clone() + bias.clone().reshape([1, co, 1, 1]))).unwrap();
    assert_close(add_terms_nchw(y, Some(bias), None, Some((s, None))), &want, 1e-5, "shortcut + conv");
}
