//! What the integration tests share: the committed fixtures, the oracle's 4-step generation request
//! (`tests/reference/`: a 64×64 astronaut, CFG 7.5, from torch's initial latents), and cubecl's debug
//! log once it has stopped growing. Each test binary uses part of it.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use stylus_diffusion::GenerateRequest;
use stylus_sd::SchedulerKind;

/// The bytes of `tests/fixtures/{rel}`; panics naming the file.
pub fn fixture(rel: &str) -> Vec<u8> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures").join(rel);
    std::fs::read(&p).unwrap_or_else(|e| panic!("fixture {}: {e}", p.display()))
}

/// The oracle's 4-step request with `scheduler` from its initial latents (`init_latents`).
pub fn oracle_request(scheduler: SchedulerKind, init_latents: Vec<f32>) -> GenerateRequest {
    GenerateRequest {
        prompt: "a photo of an astronaut riding a horse on mars".into(),
        steps: 4,
        cfg_scale: 7.5,
        width: 64,
        height: 64,
        scheduler,
        latents: Some(init_latents),
        ..GenerateRequest::default()
    }
}

/// The text of cubecl's log at `log` once it has not grown for 1.5 s (cubecl writes it from a task
/// of its own; at most 60 s of waiting).
pub fn settled_log(log: &Path) -> String {
    let read = || std::fs::read_to_string(log).unwrap_or_default();
    let (start, mut last, mut since) = (Instant::now(), read().len(), Instant::now());
    while since.elapsed() < Duration::from_millis(1500) && start.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(100));
        let now = read().len();
        if now != last {
            (last, since) = (now, Instant::now());
        }
    }
    read()
}
