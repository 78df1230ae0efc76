//! A fused attention kernel for the cube backend written for what WebGPU guarantees (no subgroups,
//! no tensor cores, 16 KiB of workgroup memory): each unit owns one to four query rows (held in
//! registers, [`super::fused_rows_per_unit`]) and walks the keys in blocks staged through workgroup
//! memory, each staged key feeding all of them, keeping FlashAttention's running max and sum (Dao et
//! al. 2022, "FlashAttention", Algorithm 1; Milakov & Gimelshein 2018, "Online normalizer
//! calculation for softmax"), so no score matrix is ever written: one launch per attention instead
//! of the explicit attention's chunked matmul + scale + softmax (five kernels) + matmul.
//!
//! It reads `q`/`k`/`v` as the projections lay them out (`[B, S, H, d]`, any strides: no head
//! transpose is copied) and writes `[B, Sq, H, dv]` contiguous, which is the `[B, Sq, H·dv]` the
//! output projection takes. Sums run in f32 whatever the storage dtype.

use burn::tensor::Tensor;
use burn_backend::cubecl::dtype_to_storage_type;
use burn_cubecl::cubecl::prelude::{CubeCount, CubeDim};
use burn_cubecl::ops::numeric::empty_device_contiguous_dtype;
use burn_cubecl::CubeBackend;

use super::cube::{float_ok, primitive};

/// Units per workgroup.
pub const UNITS: usize = 64;

/// Workgroup memory the key/value blocks may take (WebGPU's default
/// `maxComputeWorkgroupStorageSize` is 16 KiB).
const STAGE_BYTES: usize = 12 << 10;

/// Largest head dim the kernel takes: a row's query and accumulator live in registers
/// (`d + dv` floats per unit; SD1.5's largest is 160).
pub const MAX_HEAD_DIM: usize = 160;

/// Keys per staged block for head dims `d`, `dv`: the largest power of two ≤ 32 whose f32 block
/// (head dims padded to a multiple of 4) fits [`STAGE_BYTES`] (SD1.5: 32 at d = 40, 16 at 80, 8
/// at 160).
pub fn keys_per_block(d: usize, dv: usize) -> usize {
    let fit = STAGE_BYTES / (16 * (d.div_ceil(4) + dv.div_ceil(4)).max(1));
    let mut block = 32;
    while block > 1 && block > fit {
        block /= 2;
    }
    block
}

/// The kernel, apart: cubecl's `Tensor` is not burn's.
mod kernel {
    use burn_cubecl::cubecl::{self, prelude::*};

    /// Staged keys and values travel as 4-lane vectors (one workgroup-memory read per 4 products);
    /// head dims are padded with zero lanes to a multiple of 4.
    type V4 = Vector<f32, Const<4>>;

    /// Stages keys (or values) `start..start + block` of one head into `dst` as 4-lane vectors
    /// (`width` lanes of each, zero past `width` and past the last key), the workgroup's `units`
    /// sharing the work from `unit` on.
    #[cube]
    #[allow(clippy::too_many_arguments)]
    fn stage<F: Float>(
        src: &Tensor<F>,
        at: usize,
        keys: usize,
        start: usize,
        dst: &mut Shared<[V4]>,
        unit: usize,
        #[comptime] width: usize,
        #[comptime] block: usize,
        #[comptime] units: usize,
    ) {
        let w4 = comptime!(width.div_ceil(4));
        let mut e = unit;
        while e < comptime!(block * w4) {
            let j = start + e / w4;
            let row = at + min(j, keys - 1) * src.stride(1);
            let mut x = V4::empty();
            #[unroll]
            for l in 0..4 {
                let c = (e % w4) * 4 + l;
                x.insert(l, select(j < keys && c < width, f32::cast_from(src[row + min(c, width - 1) * src.stride(3)]), f32::new(0.0)));
            }
            dst[e] = x;
            e += units;
        }
    }

    /// One workgroup: `units × per_unit` query rows of one (batch, head); unit `u` owns rows
    /// `base + r·units + u` for `r < per_unit`, so that each staged key feeds `per_unit` rows.
    #[cube(launch)]
    pub fn attention_rows<F: Float>(
        q: &Tensor<F>,
        k: &Tensor<F>,
        v: &Tensor<F>,
        out: &mut Tensor<F>,
        scale: f32,
        #[comptime] d: usize,
        #[comptime] dv: usize,
        #[comptime] units: usize,
        #[comptime] per_unit: usize,
        #[comptime] block: usize,
        #[comptime] causal: bool,
        #[define(F)] _dtype: ElemType,
    ) {
        let d4 = comptime!(d.div_ceil(4));
        let dv4 = comptime!(dv.div_ceil(4));
        let b = CUBE_POS_Z as usize;
        let h = CUBE_POS_Y as usize;
        let unit = UNIT_POS_X as usize;
        let base = CUBE_POS_X as usize * comptime!(units * per_unit) + unit;
        let sq = q.shape(1);
        let sk = k.shape(1);

        let mut qr = Array::<f32>::new(comptime!(per_unit * d4 * 4));
        let mut acc = Array::<f32>::new(comptime!(per_unit * dv4 * 4));
        let mut max_so_far = Array::<f32>::new(per_unit);
        let mut sum = Array::<f32>::new(per_unit);
        let mut dots = Array::<f32>::new(per_unit);
        let mut probs = Array::<f32>::new(per_unit);
        #[unroll]
        for r in 0..per_unit {
            // rows past the end read row 0 and are never written: every unit must reach each sync
            let i = base + r * units;
            let q_at = b * q.stride(0) + select(i < sq, i, 0) * q.stride(1) + h * q.stride(2);
            #[unroll]
            for c in 0..comptime!(d4 * 4) {
                qr[r * d4 * 4 + c] = select(c < d, f32::cast_from(q[q_at + min(c, d - 1) * q.stride(3)]) * scale, f32::new(0.0));
            }
            #[unroll]
            for c in 0..comptime!(dv4 * 4) {
                acc[r * dv4 * 4 + c] = f32::new(0.0);
            }
            // a finite floor: the first key's rescale is exp(floor − score) = 0, without inf − inf
            max_so_far[r] = f32::new(-1.0e30);
            sum[r] = f32::new(0.0);
        }
        let mut ks = Shared::<[V4]>::new_slice(comptime!(block * d4));
        let mut vs = Shared::<[V4]>::new_slice(comptime!(block * dv4));

        // causal: the workgroup's last row sees keys up to its own position
        let last_row = min(sq, (CUBE_POS_X as usize + 1) * comptime!(units * per_unit));
        let mut end = sk;
        if causal {
            end = min(sk, last_row);
        }
        let k_at = b * k.stride(0) + h * k.stride(2);
        let v_at = b * v.stride(0) + h * v.stride(2);
        let mut start = 0usize.runtime();
        while start < end {
            stage(k, k_at, sk, start, &mut ks, unit, d, block, units);
            stage(v, v_at, sk, start, &mut vs, unit, dv, block, units);
            sync_cube();

            // keys one at a time; a row's accumulator is rescaled only when its running max rises
            for j in 0..block {
                #[unroll]
                for r in 0..per_unit {
                    dots[r] = f32::new(0.0);
                }
                #[unroll]
                for c4 in 0..d4 {
                    let kc = ks[j * d4 + c4];
                    #[unroll]
                    for l in 0..4 {
                        let kl = kc.extract(l);
                        #[unroll]
                        for r in 0..per_unit {
                            dots[r] += qr[r * d4 * 4 + c4 * 4 + l] * kl;
                        }
                    }
                }
                let key = start + j;
                #[unroll]
                for r in 0..per_unit {
                    probs[r] = f32::new(0.0);
                    if key < sk && (!causal || key <= base + r * units) {
                        if dots[r] > max_so_far[r] {
                            let keep = (max_so_far[r] - dots[r]).exp();
                            sum[r] *= keep;
                            #[unroll]
                            for c in 0..comptime!(dv4 * 4) {
                                acc[r * dv4 * 4 + c] *= keep;
                            }
                            max_so_far[r] = dots[r];
                        }
                        probs[r] = (dots[r] - max_so_far[r]).exp();
                        sum[r] += probs[r];
                    }
                }
                #[unroll]
                for c4 in 0..dv4 {
                    let vc = vs[j * dv4 + c4];
                    #[unroll]
                    for l in 0..4 {
                        let vl = vc.extract(l);
                        #[unroll]
                        for r in 0..per_unit {
                            acc[r * dv4 * 4 + c4 * 4 + l] += probs[r] * vl;
                        }
                    }
                }
            }
            sync_cube();
            start += block;
        }

        let o_step = out.stride(3);
        #[unroll]
        for r in 0..per_unit {
            let i = base + r * units;
            if i < sq {
                let o_at = b * out.stride(0) + i * out.stride(1) + h * out.stride(2);
                #[unroll]
                for c in 0..dv {
                    out[o_at + c * o_step] = F::cast_from(acc[r * dv4 * 4 + c] / sum[r]);
                }
            }
        }
    }
}

/// `softmax(q·kᵀ/√d)·v` per head for `q` `[B, Sq, H, d]`, `k` `[B, Sk, H, d]`, `v` `[B, Sk, H, dv]`
/// (`causal`: keys after the query's own position hidden, `Sq == Sk`) → `[B, Sq, H, dv]`. `None`
/// where the tensors are not on the cube backend, their dtypes differ or are not float, a head dim
/// exceeds [`MAX_HEAD_DIM`], or a dimension is empty.
pub fn attention(q: &Tensor<4>, k: &Tensor<4>, v: &Tensor<4>, causal: bool) -> Option<Tensor<4>> {
    let (pq, pk, pv) = (primitive(q)?, primitive(k)?, primitive(v)?);
    let dtype = pq.dtype;
    if !float_ok(dtype) || pk.dtype != dtype || pv.dtype != dtype {
        return None;
    }
    let ([b, sq, h, d], [kb, sk, kh, kd], [vb, vk, vh, dv]) = (q.dims(), k.dims(), v.dims());
    let shapes_agree = kb == b && vb == b && kh == h && vh == h && kd == d && vk == sk && (!causal || sq == sk);
    if !shapes_agree || [b, sq, h, d, sk, dv].contains(&0) || d.max(dv) > MAX_HEAD_DIM {
        return None;
    }
    let client = pq.client.clone();
    let out = empty_device_contiguous_dtype(client.clone(), pq.device.clone(), [b, sq, h, dv].into(), dtype);
    let block = keys_per_block(d, dv);
    let per_unit = super::fused_rows_per_unit(d, dv);
    let count = CubeCount::Static(sq.div_ceil(UNITS * per_unit) as u32, h as u32, b as u32);
    kernel::attention_rows::launch(
        &client,
        count,
        CubeDim::new_1d(UNITS as u32),
        pq.into_tensor_arg(),
        pk.into_tensor_arg(),
        pv.into_tensor_arg(),
        out.clone().into_tensor_arg(),
        1.0 / (d as f32).sqrt(),
        d,
        dv,
        UNITS,
        per_unit,
        block,
        causal,
        dtype_to_storage_type(dtype),
    );
    Some(Tensor::from_primitive::<CubeBackend>(out))
}

#[cfg(test)]
mod tests {
    use super::keys_per_block;

    /// SD1.5's head dims stage 12 KiB or less per block, within WebGPU's 16 KiB default.
    #[test]
    fn blocks_fit_workgroup_memory() {
        assert_eq!(keys_per_block(40, 40), 32);
        assert_eq!(keys_per_block(80, 80), 16);
        assert_eq!(keys_per_block(160, 160), 8);
        assert_eq!(keys_per_block(64, 64), 16);
        for d in [1, 8, 40, 64, 77, 80, 128, 160] {
            assert!(keys_per_block(d, d) * 2 * d.div_ceil(4) * 16 <= super::STAGE_BYTES, "{d}");
        }
    }
}
