//! Kernel warm-up before the first image (issue #5 item 9): the text encoder, one UNet step and one
//! image decode at a request's shapes, results discarded, so that a GPU backend compiles every
//! shader a generation of that request launches before anybody waits on it (in the browser: while
//! the adapters download). burn/cubecl keep compiled pipelines for the life of the device, so the
//! generation that follows launches only kernels it already has. Nothing of the pipeline changes
//! and no noise source is drawn from: the warm-up's latents are zeros (values do not matter to a
//! compiler, shapes and dtypes do). [`Pipeline::stand_in`] is the same networks with zero weights,
//! for warming up before the checkpoint has arrived.

use burn::tensor::Device;
use stylus_sd::SdConfig;

use crate::load::Loader;
use crate::nn::{to_vec, to_vec_async};
use crate::pipeline::{GenerateRequest, Pipeline, Progress, Stage};
use crate::rng::NoiseSource;
use crate::{Error, Result};

/// All-zero latents.
struct Zeros;

impl NoiseSource for Zeros {
    fn initial(&mut self, _image: usize, n: usize) -> Result<Vec<f32>> {
        Ok(vec![0.0; n])
    }
    fn step(&mut self, _image: usize, _step: usize, n: usize) -> Result<Vec<f32>> {
        Ok(vec![0.0; n])
    }
}

/// The networks a warm-up runs: text encoder, UNet, VAE decoder.
pub const WARM_UP_PARTS: usize = 3;

fn report(progress: &mut dyn FnMut(Progress), done: usize) {
    progress(Progress { stage: Stage::WarmingUp, done, total: WARM_UP_PARTS });
}

impl Pipeline {
    /// The three networks of `cfg` with zero weights (made on the device: nothing read, nothing
    /// uploaded) and no VAE encoder. Kernels depend on shapes and dtypes, not on values, so a
    /// warm-up of this stand-in compiles what the real model's generation will launch; the browser
    /// runs it while the checkpoint downloads, then drops it. It takes the model's size in device
    /// memory while it lives.
    pub fn stand_in(cfg: &SdConfig, tokenizer_json: &[u8], device: &Device) -> Result<Self> {
        Self::from_loader(cfg, Loader::zeros(device), tokenizer_json)
    }

    /// Runs the text encoder, one UNet step and one image decode at `req`'s shapes (size, batch,
    /// guidance, clip skip, the rows of an installed per-image adapter set, VAE tiling) and
    /// discards the results. On a GPU backend this compiles the kernels `generate(req)` will
    /// launch, so its first step costs what the others do; on the CPU it only spends the time.
    /// Call it after loading the model and after `set_adapters_per_image` (whose run-time
    /// low-rank terms are kernels of their own). Reports [`Stage::WarmingUp`], 0 to 3 of 3. A
    /// request `generate` refuses is refused here, with the same error.
    pub fn warm_up(&self, req: &GenerateRequest, progress: &mut dyn FnMut(Progress)) -> Result<()> {
        report(progress, 0);
        let run = self.begin(req, &mut Zeros, &mut |_| {})?;
        to_vec(run.ctx.clone())?;
        report(progress, 1);
        to_vec(self.step_eps(&run, 0)?)?;
        report(progress, 2);
        to_vec(self.decode_image(&run, 0)?)?;
        report(progress, 3);
        Ok(())
    }

    /// [`Pipeline::warm_up`] with asynchronous reads (WebGPU in the browser); `cancelled` is
    /// polled between the networks and stops it with [`Error::Cancelled`].
    pub async fn warm_up_async(&self, req: &GenerateRequest, progress: &mut dyn FnMut(Progress), cancelled: &dyn Fn() -> bool) -> Result<()> {
        let stop = || if cancelled() { Err(Error::Cancelled) } else { Ok(()) };
        report(progress, 0);
        let run = self.begin(req, &mut Zeros, &mut |_| {})?;
        to_vec_async(run.ctx.clone()).await?;
        report(progress, 1);
        stop()?;
        to_vec_async(self.step_eps(&run, 0)?).await?;
        report(progress, 2);
        stop()?;
        to_vec_async(self.decode_image(&run, 0)?).await?;
        report(progress, 3);
        Ok(())
    }
}
