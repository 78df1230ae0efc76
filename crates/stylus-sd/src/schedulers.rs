//! Samplers of SD1.5 over flat latent buffers: DDIM (η = 0), Euler ancestral and DPM++ 2M Karras,
//! with the SD1.5 scheduler config (scaled_linear β 0.00085…0.012, 1000 train steps, steps_offset 1,
//! set_alpha_to_one false, no `timestep_spacing` key ⇒ DDIM "leading", Euler/DPM++ "linspace").
//!
//! Ports of diffusers 0.42 `DDIMScheduler`, `EulerAncestralDiscreteScheduler` and
//! `DPMSolverMultistepScheduler(algorithm_type="dpmsolver++", solver_order=2, use_karras_sigmas=True,
//! final_sigmas_type="zero")` (Karras et al. 2022 σ ramp, ρ = 7; Lu et al. 2022 DPM-Solver++ 2M,
//! midpoint form). Tables are computed the way diffusers does (f32 β/ᾱ, f64 interpolation) so they
//! match its values to float precision; tensors are plain `f32` slices so any backend can use them.

use serde::{Deserialize, Serialize};

use crate::Error;

/// Which sampler.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SchedulerKind {
    Ddim,
    EulerAncestral,
    /// DPM++ 2M with Karras sigmas: the Stylus reference's default.
    DpmPp2mKarras,
}

impl std::str::FromStr for SchedulerKind {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        match s {
            "ddim" => Ok(Self::Ddim),
            "euler_a" | "euler_ancestral" => Ok(Self::EulerAncestral),
            "dpmpp_2m_karras" | "dpm++2m_karras" => Ok(Self::DpmPp2mKarras),
            other => Err(Error::Config(format!("unknown scheduler `{other}` (ddim, euler_a, dpmpp_2m_karras)"))),
        }
    }
}

const TRAIN_STEPS: usize = 1000;

/// Whether a run of `steps` steps exists (1 to the training schedule's 1000); the message says why
/// not. [`Scheduler::new`] refuses what this refuses; callers validating a request call it first.
pub fn check_steps(steps: usize) -> Result<(), String> {
    if steps == 0 || steps > TRAIN_STEPS {
        return Err(format!("steps must be between 1 and {TRAIN_STEPS}, got {steps}"));
    }
    Ok(())
}

/// ᾱ_t of SD1.5's scaled-linear schedule, computed in f32 as torch does.
pub fn alphas_cumprod() -> Vec<f32> {
    let (a, b) = (0.00085f32.sqrt(), 0.012f32.sqrt());
    let mut acc = 1.0f32;
    (0..TRAIN_STEPS)
        .map(|i| {
            // torch.linspace(start, end, n) in f32: start + i * (end - start) / (n - 1)
            let s = a + (b - a) * (i as f32 / (TRAIN_STEPS - 1) as f32);
            acc *= 1.0 - s * s;
            acc
        })
        .collect()
}

/// numpy's `round` (half to even).
fn round_half_even(x: f64) -> f64 {
    let r = x.round();
    if (x - x.trunc()).abs() == 0.5 && r % 2.0 != 0.0 {
        r - x.signum()
    } else {
        r
    }
}

fn linspace(a: f64, b: f64, n: usize) -> Vec<f64> {
    if n == 1 {
        return vec![a];
    }
    (0..n).map(|i| a + (b - a) * i as f64 / (n - 1) as f64).collect()
}

/// σ for every train step, √((1-ᾱ)/ᾱ), in f32.
fn train_sigmas(ac: &[f32]) -> Vec<f32> {
    ac.iter().map(|&a| ((1.0 - a) / a).sqrt()).collect()
}

/// np.interp over integer abscissae 0..len.
fn interp(t: f64, ys: &[f32]) -> f64 {
    let i = (t.floor() as usize).min(ys.len() - 2);
    let w = t - i as f64;
    ys[i] as f64 * (1.0 - w) + ys[i + 1] as f64 * w
}

/// diffusers `_sigma_to_t`: fractional train step of a σ by log-σ interpolation.
fn sigma_to_t(sigma: f64, log_sigmas: &[f32]) -> f64 {
    let ls = sigma.max(1e-10).ln();
    let last = log_sigmas.iter().rposition(|&l| ls - l as f64 >= 0.0).unwrap_or(0);
    let lo = last.min(log_sigmas.len() - 2);
    let (l, h) = (log_sigmas[lo] as f64, log_sigmas[lo + 1] as f64);
    let w = ((l - ls) / (l - h)).clamp(0.0, 1.0);
    (1.0 - w) * lo as f64 + w * (lo + 1) as f64
}

/// A configured sampler for `steps` inference steps, with its state (DPM++ keeps the last x₀).
#[derive(Debug, Clone)]
pub struct Scheduler {
    pub kind: SchedulerKind,
    /// UNet timestep of each step.
    pub timesteps: Vec<f32>,
    /// σ of each step plus a final 0 (Euler ancestral and DPM++; empty for DDIM).
    pub sigmas: Vec<f32>,
    /// Scale of the initial Gaussian latents.
    pub init_noise_sigma: f32,
    alphas_cumprod: Vec<f32>,
    step_ratio: usize,
    prev_x0: Option<Vec<f32>>,
}

impl Scheduler {
    pub fn new(kind: SchedulerKind, steps: usize) -> Result<Self, Error> {
        check_steps(steps).map_err(Error::Config)?;
        let ac = alphas_cumprod();
        let sig = train_sigmas(&ac);
        let (timesteps, sigmas, init, step_ratio) = match kind {
            SchedulerKind::Ddim => {
                let ratio = TRAIN_STEPS / steps;
                let ts = (0..steps).rev().map(|i| (i * ratio + 1) as f32).collect();
                (ts, Vec::new(), 1.0, ratio)
            }
            SchedulerKind::EulerAncestral => {
                let ts: Vec<f64> = linspace(0.0, (TRAIN_STEPS - 1) as f64, steps).into_iter().rev().collect();
                let mut s: Vec<f32> = ts.iter().map(|&t| interp(t, &sig) as f32).collect();
                let init = s[0];
                s.push(0.0);
                (ts.iter().map(|&t| t as f32).collect(), s, init, 0)
            }
            SchedulerKind::DpmPp2mKarras => {
                let log_sigmas: Vec<f32> = sig.iter().map(|s| s.ln()).collect();
                let (smin, smax) = (sig[0] as f64, sig[TRAIN_STEPS - 1] as f64);
                let rho = 7.0;
                let (lo, hi) = (smin.powf(1.0 / rho), smax.powf(1.0 / rho));
                let karras: Vec<f64> = linspace(0.0, 1.0, steps).iter().map(|r| (hi + r * (lo - hi)).powf(rho)).collect();
                let ts = karras.iter().map(|&s| round_half_even(sigma_to_t(s, &log_sigmas)) as f32).collect();
                let mut s: Vec<f32> = karras.iter().map(|&s| s as f32).collect();
                s.push(0.0);
                (ts, s, 1.0, 0)
            }
        };
        Ok(Scheduler { kind, timesteps, sigmas, init_noise_sigma: init, alphas_cumprod: ac, step_ratio, prev_x0: None })
    }

    pub fn len(&self) -> usize {
        self.timesteps.len()
    }

    pub fn is_empty(&self) -> bool {
        self.timesteps.is_empty()
    }

    /// Divisor applied to the latents before the UNet at step `i` (`scale_model_input`).
    pub fn model_input_divisor(&self, i: usize) -> f32 {
        match self.kind {
            SchedulerKind::EulerAncestral => ((self.sigmas[i] as f64).powi(2) + 1.0).sqrt() as f32,
            _ => 1.0,
        }
    }

    /// Whether `step` needs fresh Gaussian noise (Euler ancestral), of the latents' length.
    pub fn needs_noise(&self) -> bool {
        self.kind == SchedulerKind::EulerAncestral
    }

    /// One denoising step at index `i`: the guided ε prediction `eps` moves `x` to the next latents,
    /// in place. `noise` is required by Euler ancestral (fresh N(0,1) of the same length).
    pub fn step(&mut self, i: usize, x: &mut [f32], eps: &[f32], noise: Option<&[f32]>) -> Result<(), Error> {
        if i >= self.len() || eps.len() != x.len() {
            return Err(Error::Config(format!("step {i} of {} with {} latents and {} eps values", self.len(), x.len(), eps.len())));
        }
        match self.kind {
            SchedulerKind::Ddim => self.ddim(i, x, eps),
            SchedulerKind::EulerAncestral => {
                let noise = noise.filter(|n| n.len() == x.len()).ok_or_else(|| Error::Config("Euler ancestral needs noise of the latents' length".into()))?;
                self.euler_a(i, x, eps, noise)
            }
            SchedulerKind::DpmPp2mKarras => self.dpmpp_2m(i, x, eps),
        }
        Ok(())
    }

    /// The step's prediction of the clean latents x₀ from the latents `x` at step `i` and the guided
    /// ε — what each sampler computes inside its step (DDIM: `(x − √(1−ᾱ_t)·ε)/√ᾱ_t`; Euler
    /// ancestral: `x − σ·ε`; DPM++ in VP form: `(x − σ_t·ε)/α_t`). Live previews show it.
    pub fn denoised(&self, i: usize, x: &[f32], eps: &[f32]) -> Result<Vec<f32>, Error> {
        if i >= self.len() || eps.len() != x.len() {
            return Err(Error::Config(format!("x₀ of step {i} of {} with {} latents and {} eps values", self.len(), x.len(), eps.len())));
        }
        let (a, s) = match self.kind {
            SchedulerKind::Ddim => {
                let a_t = self.alphas_cumprod[self.timesteps[i] as usize];
                (a_t.sqrt(), (1.0 - a_t).sqrt())
            }
            SchedulerKind::EulerAncestral => (1.0, self.sigmas[i]),
            SchedulerKind::DpmPp2mKarras => Self::alpha_sigma(self.sigmas[i]),
        };
        Ok(x.iter().zip(eps).map(|(&v, &e)| (v - s * e) / a).collect())
    }

    fn ddim(&self, i: usize, x: &mut [f32], eps: &[f32]) {
        let t = self.timesteps[i] as usize;
        let a_t = self.alphas_cumprod[t];
        let a_prev = t.checked_sub(self.step_ratio).map_or(self.alphas_cumprod[0], |p| self.alphas_cumprod[p]);
        let (sa, sb) = (a_t.sqrt(), (1.0 - a_t).sqrt());
        let (pa, pb) = (a_prev.sqrt(), (1.0 - a_prev).sqrt());
        for (v, &e) in x.iter_mut().zip(eps) {
            let x0 = (*v - sb * e) / sa;
            *v = pa * x0 + pb * e;
        }
    }

    fn euler_a(&self, i: usize, x: &mut [f32], eps: &[f32], noise: &[f32]) {
        let (from, to) = (self.sigmas[i] as f64, self.sigmas[i + 1] as f64);
        let up = (to * to * (from * from - to * to) / (from * from)).sqrt();
        let down = (to * to - up * up).sqrt();
        let dt = (down - from) as f32;
        let (up, from) = (up as f32, from as f32);
        for ((v, &e), &n) in x.iter_mut().zip(eps).zip(noise) {
            let x0 = *v - from * e;
            let d = (*v - x0) / from;
            *v = *v + d * dt + n * up;
        }
    }

    /// (α_t, σ_t) of the VP form for a Karras σ.
    fn alpha_sigma(s: f32) -> (f32, f32) {
        let a = 1.0 / (s * s + 1.0).sqrt();
        (a, s * a)
    }

    fn dpmpp_2m(&mut self, i: usize, x: &mut [f32], eps: &[f32]) {
        let (a_s0, s_s0) = Self::alpha_sigma(self.sigmas[i]);
        let x0: Vec<f32> = x.iter().zip(eps).map(|(&v, &e)| (v - s_s0 * e) / a_s0).collect();
        let last = i + 1 == self.len();
        if self.sigmas[i + 1] == 0.0 {
            // σ → 0: the first-order update's limit is x₀ itself.
            x.copy_from_slice(&x0);
        } else {
            let (a_t, s_t) = Self::alpha_sigma(self.sigmas[i + 1]);
            let lambda = |a: f32, s: f32| a.ln() - s.ln();
            let h = lambda(a_t, s_t) - lambda(a_s0, s_s0);
            let c = s_t / s_s0;
            let k = a_t * ((-h).exp() - 1.0);
            match self.prev_x0.as_ref().filter(|_| i > 0 && !last) {
                None => x.iter_mut().zip(&x0).for_each(|(v, &m0)| *v = c * *v - k * m0),
                Some(m1) => {
                    let (a_s1, s_s1) = Self::alpha_sigma(self.sigmas[i - 1]);
                    let r0 = (lambda(a_s0, s_s0) - lambda(a_s1, s_s1)) / h;
                    for ((v, &m0), &m1) in x.iter_mut().zip(&x0).zip(m1) {
                        let d1 = (m0 - m1) / r0;
                        *v = c * *v - k * m0 - 0.5 * k * d1;
                    }
                }
            }
        }
        self.prev_x0 = Some(x0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timesteps_of_the_reference_4_step_runs() {
        let t = |k| Scheduler::new(k, 4).unwrap().timesteps;
        assert_eq!(t(SchedulerKind::Ddim), vec![751.0, 501.0, 251.0, 1.0]);
        assert_eq!(t(SchedulerKind::EulerAncestral), vec![999.0, 666.0, 333.0, 0.0]);
        assert_eq!(t(SchedulerKind::DpmPp2mKarras), vec![999.0, 687.0, 146.0, 0.0]);
    }

    /// Latents made from a known x₀ and ε by each sampler's own noising convention give back x₀.
    #[test]
    fn denoised_recovers_x0_for_every_sampler() {
        let x0 = [0.5f32, -1.25, 2.0, 0.0];
        let e = [1.0f32, -0.5, 0.25, 2.0];
        for kind in [SchedulerKind::Ddim, SchedulerKind::EulerAncestral, SchedulerKind::DpmPp2mKarras] {
            let s = Scheduler::new(kind, 10).unwrap();
            for i in [0, 4, 9] {
                let (a, sd) = match kind {
                    SchedulerKind::Ddim => {
                        let a_t = alphas_cumprod()[s.timesteps[i] as usize];
                        (a_t.sqrt(), (1.0 - a_t).sqrt())
                    }
                    SchedulerKind::EulerAncestral => (1.0, s.sigmas[i]),
                    SchedulerKind::DpmPp2mKarras => {
                        let sg = s.sigmas[i];
                        (1.0 / (sg * sg + 1.0).sqrt(), sg / (sg * sg + 1.0).sqrt())
                    }
                };
                let x: Vec<f32> = x0.iter().zip(&e).map(|(&v, &n)| a * v + sd * n).collect();
                let got = s.denoised(i, &x, &e).unwrap();
                for (g, w) in got.iter().zip(&x0) {
                    assert!((g - w).abs() <= 2e-3 * (1.0 + sd / a), "{kind:?} step {i}: {g} vs {w}");
                }
            }
            assert!(s.denoised(10, &x0, &e).is_err());
            assert!(s.denoised(0, &x0, &e[..3]).is_err());
        }
    }

    #[test]
    fn bad_arguments_are_errors() {
        assert!(Scheduler::new(SchedulerKind::Ddim, 0).is_err());
        assert!("plms".parse::<SchedulerKind>().is_err());
        let mut s = Scheduler::new(SchedulerKind::EulerAncestral, 4).unwrap();
        let mut x = vec![0.0; 4];
        assert!(s.step(0, &mut x, &[0.0; 4], None).is_err(), "Euler ancestral without noise");
        assert!(s.step(9, &mut x, &[0.0; 4], Some(&[0.0; 4])).is_err());
        assert!(s.step(0, &mut x, &[0.0; 3], Some(&[0.0; 4])).is_err());
    }

    #[test]
    fn round_half_even_like_numpy() {
        assert_eq!(round_half_even(499.5), 500.0);
        assert_eq!(round_half_even(748.5), 748.0);
        assert_eq!(round_half_even(2.4), 2.0);
    }
}
