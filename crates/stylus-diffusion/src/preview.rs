//! Live previews during denoising: the step's x₀ prediction (`Scheduler::denoised`) mapped to RGB
//! at latent resolution by a fixed linear map of the 4 latent channels — no VAE pass, a few
//! microseconds per image. The coefficients are the least-squares fit of SD v1.x's VAE published by
//! Keturn, "Decoding latents to RGB without upscaling" (Hugging Face forum, 2022); SD1.5 shares
//! that VAE. The picture is blurry and its colours approximate: a progress view, not an image.

use crate::pipeline::Image;

/// `rgb[c] = Σ_l latent[l] · FACTORS[l][c]`, in [-1, 1] (rows: latent channels; columns: R, G, B).
pub const FACTORS: [[f32; 3]; 4] = [[0.298, 0.207, 0.208], [0.187, 0.286, 0.173], [-0.158, 0.189, 0.264], [-0.184, -0.271, -0.473]];

/// Previews of a batch at one step, sent to [`crate::Pipeline::generate_async`]'s preview callback.
#[derive(Debug, Clone, PartialEq)]
pub struct Preview {
    /// Steps done (1-based, like `Progress::done`).
    pub step: usize,
    pub total: usize,
    /// One per image of the batch, `w × h` of the latents (1/8 of the output size).
    pub images: Vec<Image>,
}

/// One image's latents `[channels, h, w]` (x₀ scale, as the UNet sees them) → 8-bit RGB `w × h`.
/// Latents with other than 4 channels (not SD1.x) give a grey image of the right size.
pub fn latent_rgb(latents: &[f32], channels: usize, h: usize, w: usize) -> Image {
    let plane = h * w;
    let mut rgb = vec![128u8; 3 * plane];
    if channels == FACTORS.len() && latents.len() == channels * plane {
        for p in 0..plane {
            for (c, out) in rgb[3 * p..3 * p + 3].iter_mut().enumerate() {
                let v: f32 = (0..channels).map(|l| latents[l * plane + p] * FACTORS[l][c]).sum();
                *out = ((v / 2.0 + 0.5).clamp(0.0, 1.0) * 255.0).round() as u8;
            }
        }
    }
    Image { width: w, height: h, rgb }
}

/// Previews of a batch of x₀ predictions `[batch, channels, h, w]`.
pub fn batch_previews(x0: &[f32], batch: usize, channels: usize, h: usize, w: usize) -> Vec<Image> {
    let per = channels * h * w;
    (0..batch).map(|k| latent_rgb(x0.get(k * per..(k + 1) * per).unwrap_or(&[]), channels, h, w)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A latent equal to one factor row's channel gives that row's colour; zeros give mid-grey;
    /// pixels keep their positions; a wrong channel count gives grey, not a panic.
    #[test]
    fn linear_map_per_pixel() {
        let (h, w) = (2, 3);
        let mut lat = vec![0.0f32; 4 * h * w];
        lat[5] = 1.0; // channel 0, last pixel
        lat[3 * h * w] = 2.0; // channel 3, first pixel
        let img = latent_rgb(&lat, 4, h, w);
        assert_eq!((img.width, img.height, img.rgb.len()), (3, 2, 18));
        let px = |p: usize| &img.rgb[3 * p..3 * p + 3];
        let expect = |v: [f32; 3]| v.map(|x| ((x / 2.0 + 0.5).clamp(0.0, 1.0) * 255.0).round() as u8);
        assert_eq!(px(5), expect(FACTORS[0]));
        assert_eq!(px(0), expect(FACTORS[3].map(|x| 2.0 * x)));
        assert_eq!(px(2), [128, 128, 128]);
        assert_eq!(latent_rgb(&lat, 3, h, w).rgb, vec![128; 18]);
        let two = batch_previews(&[lat.clone(), vec![0.0; 24]].concat(), 2, 4, h, w);
        assert_eq!(two[0], img);
        assert_eq!(two[1].rgb, vec![128; 18]);
    }
}
