//! The engine's own GEMM kernel for the cube backend, written for what WebGPU guarantees (no
//! subgroups, no tensor cores, 16 KiB of workgroup memory): the classic register-blocked SGEMM
//! (Volkov & Demmel 2008, "Benchmarking GPUs to tune dense linear algebra"; the structure of
//! CUTLASS's SIMT GEMM): a workgroup of 256 units computes a `bm × bn` output tile (128² or 64²),
//! staging `bm × 8` of A and `8 × bn` of B in workgroup memory as 4-lane vectors per step of `k`,
//! and each unit accumulates a `tm × tn` sub-tile (8×8 or 4×4) in registers, so that every staged
//! value feeds `tm` or `tn` products; the next step is read from global memory while the staged one
//! is multiplied (one vector of A and one of B per unit). Sums run in f32 whatever the storage
//! dtype. Operands are read with their strides (a side with fewer batches repeats them); the output
//! is contiguous.

use burn::tensor::Tensor;
use burn_backend::cubecl::dtype_to_storage_type;
use burn_cubecl::cubecl::prelude::{CubeCount, CubeDim};
use burn_cubecl::ops::numeric::empty_device_contiguous_dtype;
use burn_cubecl::CubeBackend;

use super::cube::{float_ok, primitive};

/// Units per workgroup.
const UNITS: usize = 256;

/// Steps of `k` staged at once.
const BK: usize = 8;

/// A tile shape: output rows and columns per workgroup, per unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tile {
    pub bm: usize,
    pub bn: usize,
    pub tm: usize,
    pub tn: usize,
}

impl Tile {
    /// Whether the tile divides into [`UNITS`] units of `tm × tn` and each stages at most one vector of A and one of B
    /// per step of k, within WebGPU's 16 KiB of workgroup memory.
    pub fn fits(self) -> bool {
        self.tm > 0
            && self.tn > 0
            && self.bm.is_multiple_of(self.tm)
            && self.bn.is_multiple_of(self.tn)
            && (self.bm / self.tm) * (self.bn / self.tn) == UNITS
            && self.bm * BK / 4 <= UNITS
            && self.bn * BK / 4 <= UNITS
            && self.tn.is_multiple_of(4)
            && (self.bm + self.bn) * BK * 4 <= 16 << 10
    }
}

/// 128×128 per workgroup, 8×8 per unit: the most reuse (`(128 + 128)·8` f32 staged: 8 KiB).
pub const LARGE: Tile = Tile { bm: 128, bn: 128, tm: 8, tn: 8 };
/// 64×64 per workgroup, 4×4 per unit: four times the workgroups for small outputs.
pub const SMALL: Tile = Tile { bm: 64, bn: 64, tm: 4, tn: 4 };

/// The tile for a `batch × m × n` output: [`LARGE`] where that still gives at least 128
/// workgroups (about one per multiprocessor of a large GPU), else [`SMALL`].
pub fn tile_for(batch: usize, m: usize, n: usize) -> Tile {
    if batch * m.div_ceil(LARGE.bm) * n.div_ceil(LARGE.bn) >= 128 {
        LARGE
    } else {
        SMALL
    }
}

/// The kernel, apart: cubecl's `Tensor` is not burn's.
mod kernel {
    use burn_cubecl::cubecl::{self, prelude::*};

    type V4 = Vector<f32, Const<4>>;

    /// Four consecutive columns `c0..c0 + 4` of row `r` of the `rows × cols` matrix at `at` in
    /// `t` (`t`'s dims 1 and 2), zero past its edges: a vector of A (4 steps of k of one tile row;
    /// a row's 8 steps are two units' 32 bytes) or of B (4 columns of one step of k; a step's
    /// columns are consecutive units' reads).
    #[cube]
    fn load4<F: Float>(t: &Tensor<F>, at: usize, rows: usize, cols: usize, r: usize, c0: usize) -> V4 {
        let row = at + min(r, rows - 1) * t.stride(1);
        let mut x = V4::empty();
        #[unroll]
        for l in 0..4 {
            let c = c0 + l;
            x.insert(l, select(r < rows && c < cols, f32::cast_from(t[row + min(c, cols - 1) * t.stride(2)]), f32::new(0.0)));
        }
        x
    }

    /// `c[z] = a[z mod ba] · b[z mod bb]` for `a` `[ba, m, k]`, `b` `[bb, k, n]`,
    /// `c` `[batch, m, n]` contiguous. Workgroup `(x, y, z)`: output columns from `x·bn`, rows from
    /// `y·bm`, batch `z`; unit `(ty, tx)`: rows `ty·tm..`, columns `tx·tn..` of the tile.
    #[cube(launch)]
    #[allow(clippy::too_many_arguments)]
    pub fn tiled_matmul<F: Float>(
        a: &Tensor<F>,
        b: &Tensor<F>,
        c: &mut Tensor<F>,
        #[comptime] bm: usize,
        #[comptime] bn: usize,
        #[comptime] tm: usize,
        #[comptime] tn: usize,
        #[comptime] bk: usize,
        #[define(F)] _dtype: ElemType,
    ) {
        let (bk4, bn4, tn4) = (comptime!(bk / 4), comptime!(bn / 4), comptime!(tn / 4));
        let m = a.shape(1);
        let k = a.shape(2);
        let n = b.shape(2);
        let z = CUBE_POS_Z as usize;
        // a side with fewer batches repeats them (1: broadcast; `[1, s]` against `[n, s]`: `z mod s`)
        let a_at = (z % a.shape(0)) * a.stride(0);
        let b_at = (z % b.shape(0)) * b.stride(0);
        let row0 = CUBE_POS_Y as usize * bm;
        let col0 = CUBE_POS_X as usize * bn;
        let unit = UNIT_POS_X as usize;
        let tx = unit % comptime!(bn / tn);
        let ty = unit / comptime!(bn / tn);

        // A as [bm][bk] (4 steps of k per vector), B as [bk][bn] (4 columns per vector)
        let mut sa = Shared::<[V4]>::new_slice(comptime!(bm * bk4));
        let mut sb = Shared::<[V4]>::new_slice(comptime!(bk * bn4));
        let mut acc = Array::<f32>::new(comptime!(tm * tn));
        #[unroll]
        for i in 0..comptime!(tm * tn) {
            acc[i] = f32::new(0.0);
        }
        let mut av = Array::<V4>::new(tm);
        let mut bv = Array::<V4>::new(comptime!(4 * tn4));

        // each unit stages at most one vector of A and one of B per step of k (see `Tile::fits`),
        // read from global memory one step ahead, while the staged step is multiplied
        let (a_vectors, b_vectors) = (comptime!(bm * bk4), comptime!(bk * bn4));
        let mut xa = V4::empty();
        let mut xb = V4::empty();
        if unit < a_vectors {
            xa = load4(a, a_at, m, k, row0 + unit / bk4, (unit % bk4) * 4);
        }
        if unit < b_vectors {
            xb = load4(b, b_at, k, n, unit / bn4, col0 + (unit % bn4) * 4);
        }
        let mut k0 = 0usize.runtime();
        while k0 < k {
            if unit < a_vectors {
                sa[unit] = xa;
            }
            if unit < b_vectors {
                sb[unit] = xb;
            }
            sync_cube();
            let next = k0 + bk;
            if next < k {
                if unit < a_vectors {
                    xa = load4(a, a_at, m, k, row0 + unit / bk4, next + (unit % bk4) * 4);
                }
                if unit < b_vectors {
                    xb = load4(b, b_at, k, n, next + unit / bn4, col0 + (unit % bn4) * 4);
                }
            }

            #[unroll]
            for q in 0..bk4 {
                #[unroll]
                for i in 0..tm {
                    av[i] = sa[(ty * tm + i) * bk4 + q];
                }
                #[unroll]
                for l in 0..4 {
                    #[unroll]
                    for j4 in 0..tn4 {
                        bv[l * tn4 + j4] = sb[(q * 4 + l) * bn4 + tx * tn4 + j4];
                    }
                }
                #[unroll]
                for l in 0..4 {
                    #[unroll]
                    for i in 0..tm {
                        let x = av[i].extract(l);
                        #[unroll]
                        for j4 in 0..tn4 {
                            let y = bv[l * tn4 + j4];
                            #[unroll]
                            for jl in 0..4 {
                                acc[i * tn + j4 * 4 + jl] += x * y.extract(jl);
                            }
                        }
                    }
                }
            }
            sync_cube();
            k0 = next;
        }

        let c_at = z * m * n;
        #[unroll]
        for i in 0..tm {
            let r = row0 + ty * tm + i;
            #[unroll]
            for j in 0..tn {
                let col = col0 + tx * tn + j;
                if r < m && col < n {
                    c[c_at + r * n + col] = F::cast_from(acc[i * tn + j]);
                }
            }
        }
    }
}

/// `a · b` for `a` `[ba, m, k]`, `b` `[bb, k, n]` → `[batch, m, n]` (batch = max(ba, bb); output
/// `z` takes `a[z mod ba]`, `b[z mod bb]`: a batch of 1 broadcasts, and a flattened `[1, s]` against
/// `[n, s]` repeats) with [`tile_for`]'s tile.
pub fn matmul_auto(a: &Tensor<3>, b: &Tensor<3>) -> Option<Tensor<3>> {
    let ([ba, m, _], [bb, _, n]) = (a.dims(), b.dims());
    matmul(a, b, tile_for(ba.max(bb), m, n))
}

/// [`matmul_auto`] with `tile`; `None` off the cube backend, for dtypes that differ or are not
/// float, mismatched shapes, a batch that does not divide the other's, or an empty dimension.
pub fn matmul(a: &Tensor<3>, b: &Tensor<3>, tile: Tile) -> Option<Tensor<3>> {
    let (pa, pb) = (primitive(a)?, primitive(b)?);
    let dtype = pa.dtype;
    let ([ba, m, k], [bb, kb, n]) = (a.dims(), b.dims());
    let batch = ba.max(bb);
    let batches_ok = ba > 0 && bb > 0 && batch.is_multiple_of(ba) && batch.is_multiple_of(bb);
    if !tile.fits() || !float_ok(dtype) || pb.dtype != dtype || kb != k || !batches_ok || [batch, m, k, n].contains(&0) {
        return None;
    }
    let (gx, gy, gz) = (u32::try_from(n.div_ceil(tile.bn)).ok()?, u32::try_from(m.div_ceil(tile.bm)).ok()?, u32::try_from(batch).ok()?);
    if gx.max(gy).max(gz) > 65_535 {
        return None;
    }
    let client = pa.client.clone();
    let out = empty_device_contiguous_dtype(client.clone(), pa.device.clone(), [batch, m, n].into(), dtype);
    kernel::tiled_matmul::launch(
        &client,
        CubeCount::Static(gx, gy, gz),
        CubeDim::new_1d(UNITS as u32),
        pa.into_tensor_arg(),
        pb.into_tensor_arg(),
        out.clone().into_tensor_arg(),
        tile.bm,
        tile.bn,
        tile.tm,
        tile.tn,
        BK,
        dtype_to_storage_type(dtype),
    );
    Some(Tensor::from_primitive::<CubeBackend>(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Both tiles have 256 units, each staging one vector of A and of B, within WebGPU's 16 KiB.
    #[test]
    fn tiles_fit_the_workgroup() {
        assert!(LARGE.fits() && SMALL.fits() && BK.is_multiple_of(4));
        assert!(!Tile { bm: 256, bn: 128, tm: 16, tn: 8 }.fits(), "two vectors of A per unit");
        assert_eq!(tile_for(2, 320, 4096), LARGE, "the 64² convolution: 3·32·2 = 192 tiles");
        assert_eq!(tile_for(2, 1280, 256), SMALL, "the 16² convolution: 10·2·2 = 40 tiles");
    }
}
