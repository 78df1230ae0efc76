//! Tiled VAE decoding, so a 512² decode fits WebGPU's 128 MiB binding limit: a port of diffusers'
//! `AutoencoderKL.tiled_decode` with `blend_v` / `blend_h` (diffusers 0.42 `autoencoder_kl.py`):
//! latent tiles of `tile_latent` with overlap factor `overlap` (tiles start every
//! `⌊tile_latent·(1−overlap)⌋` latents), each decoded alone (post_quant_conv + decoder), the top and
//! left `⌊tile_sample·overlap⌋` pixel rows/columns of a tile linearly blended with its already
//! blended upper / left neighbour, then every tile cropped to `tile_sample − blend` and concatenated.
//! The result equals diffusers' tiled output (checked against `tiny_sd/oracle/vae_tiled.safetensors`);
//! like diffusers' it is not the untiled decode (GroupNorm statistics are per tile).

use burn::tensor::Tensor;

use crate::attention::AttentionConfig;
use crate::nn::from_vec;
use crate::{AutoencoderKL, Error, Result};

/// Tile geometry, in latent pixels (diffusers: `tile_latent_min_size`, `tile_overlap_factor`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct VaeTiling {
    pub tile_latent: usize,
    pub overlap: f64,
}

impl VaeTiling {
    /// diffusers' default overlap (0.25) with `tile_latent` latents per tile.
    pub fn new(tile_latent: usize) -> Self {
        VaeTiling { tile_latent, overlap: 0.25 }
    }

    /// The largest tile (from 64, 48, 32, 24, 16, 8 latents) whose decoder activations stay within
    /// `max_bytes` (f32), or `None` when even an untiled decode of `h × w` latents fits.
    pub fn for_budget(vae: &AutoencoderKL, h: usize, w: usize, max_bytes: u64) -> Option<VaeTiling> {
        if peak_bytes(vae, h, w) <= max_bytes {
            return None;
        }
        let t = [64, 48, 32, 24, 16, 8].into_iter().find(|&t| peak_bytes(vae, t, t) <= max_bytes).unwrap_or(8);
        Some(VaeTiling::new(t))
    }
}

/// Bytes of the decoder's largest activation for one image of `h × w` latents: each up block runs
/// its channels at its resolution, and all but the last end in a 2× upsampler + conv at the next.
pub fn peak_bytes(vae: &AutoencoderKL, h: usize, w: usize) -> u64 {
    let mut ch: Vec<usize> = vae.config().block_out_channels.clone();
    ch.reverse();
    let levels = ch.len();
    (0..levels)
        .map(|k| {
            let up = 1u64 << (k + 1).min(levels - 1);
            ch[k] as u64 * (h as u64 * up) * (w as u64 * up) * 4
        })
        .max()
        .unwrap_or(0)
}

/// `b`'s first `extent` rows (dim 2, `vertical`) or columns (dim 3) ← `a`'s last ones·(1−y/e) + `b`'s·(y/e).
fn blend(a: &Tensor<4>, b: Tensor<4>, extent: usize, vertical: bool) -> Result<Tensor<4>> {
    let dim = if vertical { 2 } else { 3 };
    let (ad, bd) = (a.dims(), b.dims());
    let e = extent.min(ad[dim]).min(bd[dim]);
    if e == 0 {
        return Ok(b);
    }
    let (wb, wa): (Vec<f32>, Vec<f32>) = (0..e).map(|y| ((y as f64 / e as f64) as f32, (1.0 - y as f64 / e as f64) as f32)).unzip();
    let shape = if vertical { [1, 1, e, 1] } else { [1, 1, 1, e] };
    let device = b.device();
    let (wb, wa) = (from_vec(wb, shape, &device)?, from_vec(wa, shape, &device)?);
    let [n, c, hb, wdb] = bd;
    let (a_part, b_range) = if vertical {
        (a.clone().slice([0..n, 0..c, ad[2] - e..ad[2], 0..ad[3]]), [0..n, 0..c, 0..e, 0..wdb])
    } else {
        (a.clone().slice([0..n, 0..c, 0..ad[2], ad[3] - e..ad[3]]), [0..n, 0..c, 0..hb, 0..e])
    };
    // Vertical neighbours share a width, horizontal ones a height.
    let across = if vertical { 3 } else { 2 };
    if ad[across] != bd[across] {
        return Err(Error::Request("tiled VAE: neighbouring tiles disagree in size".into()));
    }
    let mixed = a_part * wa + b.clone().slice(b_range.clone()) * wb;
    Ok(b.slice_assign(b_range, mixed))
}

impl AutoencoderKL {
    /// Decodes `z` `[B, latent, h, w]` tile by tile as diffusers' `tiled_decode`; a latent no larger
    /// than one tile is decoded whole (diffusers' condition).
    pub fn decode_tiled(&self, z: Tensor<4>, tiling: &VaeTiling, attn: &AttentionConfig) -> Result<Tensor<4>> {
        let [n, _, h, w] = z.dims();
        let tl = tiling.tile_latent;
        if tl == 0 || !(0.0..1.0).contains(&tiling.overlap) {
            return Err(Error::Request(format!("VAE tiling {tiling:?}: the tile must be positive and the overlap in [0, 1)")));
        }
        if h <= tl && w <= tl {
            return self.decode(z, attn);
        }
        let f = 1usize << (self.config().block_out_channels.len() - 1);
        let ts = tl * f;
        let step = ((tl as f64 * (1.0 - tiling.overlap)) as usize).max(1);
        let extent = (ts as f64 * tiling.overlap) as usize;
        let limit = ts - extent;
        let c = z.dims()[1];
        let mut grid: Vec<Vec<Tensor<4>>> = Vec::new();
        for i in (0..h).step_by(step) {
            let mut row: Vec<Tensor<4>> = Vec::new();
            for j in (0..w).step_by(step) {
                let tile = z.clone().slice([0..n, 0..c, i..(i + tl).min(h), j..(j + tl).min(w)]);
                let mut tile = self.decode(tile, attn)?;
                if let Some(up) = grid.last().map(|r: &Vec<Tensor<4>>| &r[row.len()]) {
                    tile = blend(up, tile, extent, true)?;
                }
                if let Some(left) = row.last() {
                    tile = blend(left, tile, extent, false)?;
                }
                row.push(tile);
            }
            grid.push(row);
        }
        let rows = grid
            .into_iter()
            .map(|row| {
                let cropped = row
                    .into_iter()
                    .map(|t| {
                        let [b, ch, th, tw] = t.dims();
                        t.slice([0..b, 0..ch, 0..th.min(limit), 0..tw.min(limit)])
                    })
                    .collect();
                Tensor::cat(cropped, 3)
            })
            .collect();
        Ok(Tensor::cat(rows, 2))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Loader;
    use stylus_sd::SdConfig;

    /// SD1.5's decoder peaks at 256 ch × 512² (256 MiB) for a 64² latent; within WebGPU's default
    /// 128 MiB binding the budget picks 32-latent tiles (64 MiB peak).
    #[test]
    fn budget_picks_tiles_that_fit() {
        let dev = crate::cpu_device();
        let vae = AutoencoderKL::load(&SdConfig::v1_5().vae, &mut Loader::dry_run(&dev)).unwrap();
        assert_eq!(peak_bytes(&vae, 64, 64), 256 << 20);
        assert_eq!(VaeTiling::for_budget(&vae, 64, 64, 128 << 20), Some(VaeTiling::new(32)));
        assert_eq!(peak_bytes(&vae, 32, 32), 64 << 20);
        assert_eq!(VaeTiling::for_budget(&vae, 64, 64, 1 << 30), None);
    }
}
