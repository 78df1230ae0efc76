//! Samplers against diffusers: the timestep/σ/ᾱ tables for 4, 20 and 35 steps
//! (tests/fixtures/tiny_sd/oracle/scheduler_tables.json) and every step of the reference 4-step
//! generations (oracle.safetensors: latents_i + guided ε_i (+ noise_i) → latents_{i+1}).

use serde_json::Value;
use stylus_e2e::fixture;
use stylus_sd::checkpoint::{self, to_f32};
use stylus_sd::schedulers::alphas_cumprod;
use stylus_sd::{Scheduler, SchedulerKind};

const KINDS: [(&str, SchedulerKind); 3] =
    [("ddim", SchedulerKind::Ddim), ("euler_a", SchedulerKind::EulerAncestral), ("dpmpp_2m_karras", SchedulerKind::DpmPp2mKarras)];

fn close(a: f64, b: f64, rel: f64, what: &str) {
    assert!((a - b).abs() <= rel * b.abs().max(1.0), "{what}: {a} vs {b}");
}

fn floats(v: &Value) -> Vec<f64> {
    v.as_array().unwrap().iter().map(|x| x.as_f64().unwrap_or(f64::NAN)).collect()
}

#[test]
fn tables_match_diffusers() {
    let t: Value = serde_json::from_slice(&fixture("tiny_sd/oracle/scheduler_tables.json")).unwrap();
    for (a, b) in alphas_cumprod().iter().zip(floats(&t["alphas_cumprod_f32"])) {
        close(*a as f64, b, 1e-6, "alphas_cumprod");
    }
    for (name, kind) in KINDS {
        for steps in ["4", "20", "35"] {
            let r = &t["schedulers"][name][steps];
            let s = Scheduler::new(kind, steps.parse().unwrap()).unwrap();
            let ts = floats(&r["timesteps"]);
            assert_eq!(s.timesteps.len(), ts.len(), "{name} {steps}");
            for (a, b) in s.timesteps.iter().zip(&ts) {
                close(*a as f64, *b, 1e-6, &format!("{name} {steps} timestep"));
            }
            close(s.init_noise_sigma as f64, r["init_noise_sigma"].as_f64().unwrap(), 1e-6, "init_noise_sigma");
            if kind != SchedulerKind::Ddim {
                for (a, b) in s.sigmas.iter().zip(floats(&r["sigmas"])) {
                    close(*a as f64, b, 1e-6, &format!("{name} {steps} sigma"));
                }
            }
            if kind == SchedulerKind::EulerAncestral {
                for (i, b) in floats(&r["scale_model_input_divisor"]).iter().enumerate() {
                    close(s.model_input_divisor(i) as f64, *b, 1e-6, "scale_model_input divisor");
                }
            }
        }
    }
}

#[test]
fn every_step_of_the_reference_generations() {
    let bytes = fixture("tiny_sd/oracle/oracle.safetensors");
    let st = checkpoint::parse(&bytes).unwrap();
    let get = |k: &str| to_f32(&st.tensor(k).unwrap_or_else(|_| panic!("oracle has no {k}"))).unwrap();
    let init = get("init_latents");
    for (name, kind) in KINDS {
        let mut s = Scheduler::new(kind, 4).unwrap();
        let mut x: Vec<f32> = init.iter().map(|v| v * s.init_noise_sigma).collect();
        let l0 = get(&format!("{name}.latents_0"));
        assert!(x.iter().zip(&l0).all(|(a, b)| (a - b).abs() <= 1e-5 * b.abs().max(1.0)), "{name}: initial latents");
        for i in 0..4 {
            // The UNet input of this step: the latents over the scheduler's divisor, twice (CFG batch).
            let input = get(&format!("{name}.step{i}_model_input"));
            let d = s.model_input_divisor(i);
            for (j, v) in input.iter().enumerate() {
                close((x[j % x.len()] / d) as f64, *v as f64, 1e-5, &format!("{name} step {i} model input"));
            }
            let eps = get(&format!("{name}.step{i}_eps_guided"));
            let noise = s.needs_noise().then(|| get(&format!("{name}.step{i}_noise")));
            s.step(i, &mut x, &eps, noise.as_deref()).unwrap();
            // Start every step from the reference latents so errors cannot accumulate unseen.
            let want = get(&format!("{name}.latents_{}", i + 1));
            let scale = want.iter().fold(0f32, |m, v| m.max(v.abs())) as f64;
            let err = x.iter().zip(&want).fold(0f64, |m, (a, b)| m.max((a - b).abs() as f64));
            assert!(err <= 1e-5 * scale.max(1.0), "{name} step {i}: max |diff| {err} (scale {scale})");
            x = want;
        }
    }
}
