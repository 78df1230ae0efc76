//! The generation API on the tiny fixture: seeds are reproducible (image `b` of a batch equals a
//! single image with seed `s + b`), guidance ≤ 1 runs without the negative pass, and bad requests
//! are typed errors, never panics.

mod common;

use common::fixture;
use stylus_diffusion::{device_from_env, Checkpoint, Error, GenerateRequest, ModelFiles, Pipeline, Stage};
use stylus_sd::{SchedulerKind, SdConfig};

fn pipeline() -> Pipeline {
    let model = fixture("tiny_sd/ldm/tiny_sd15_fp16.safetensors");
    let tok = fixture("tokenizer/tokenizer.json");
    Pipeline::load(&SdConfig::tiny(), &ModelFiles { checkpoint: Checkpoint::SingleFile(&model), tokenizer_json: &tok }, &device_from_env().unwrap()).unwrap()
}

fn small(seed: u64, batch: usize) -> GenerateRequest {
    GenerateRequest { prompt: "a red fox".into(), steps: 2, width: 64, height: 48, seed, batch, ..Default::default() }
}

#[test]
fn seeds_are_reproducible_per_image() {
    let pipe = pipeline();
    let mut stages = Vec::new();
    let two = pipe.generate(&small(11, 2), &mut |p| stages.push(p.stage)).unwrap();
    assert_eq!(stages, [Stage::EncodingPrompt, Stage::Denoising, Stage::Denoising, Stage::Decoding, Stage::Decoding]);
    assert_eq!((two.len(), two[0].width, two[0].height, two[0].rgb.len()), (2, 64, 48, 64 * 48 * 3));
    // Same initial noise; batch size changes only the float summation order of the kernels
    // (gemm blocking), so images agree to ±1 code value rather than bit for bit.
    let close = |a: &[u8], b: &[u8]| a.iter().zip(b).map(|(&x, &y)| (x as i16 - y as i16).abs()).max().unwrap();
    let again = pipe.generate(&small(11, 1), &mut |_| {}).unwrap();
    let next = pipe.generate(&small(12, 1), &mut |_| {}).unwrap();
    assert_eq!(again, pipe.generate(&small(11, 1), &mut |_| {}).unwrap(), "same request, same bytes");
    println!("batch vs single: max |diff| {} / {}", close(&two[0].rgb, &again[0].rgb), close(&two[1].rgb, &next[0].rgb));
    assert!(close(&two[0].rgb, &again[0].rgb) <= 1, "same seed, same image");
    assert!(close(&two[1].rgb, &next[0].rgb) <= 1, "batch image 1 = seed + 1");
    assert!(close(&two[0].rgb, &two[1].rgb) > 10, "different seeds, different images");
}

#[test]
fn every_scheduler_and_unguided_generation_run() {
    let pipe = pipeline();
    for kind in [SchedulerKind::Ddim, SchedulerKind::EulerAncestral, SchedulerKind::DpmPp2mKarras] {
        for cfg_scale in [1.0, 7.5] {
            let req = GenerateRequest { scheduler: kind, cfg_scale, clip_skip: 1, ..small(3, 1) };
            let g = pipe.generate(&req, &mut |_| {}).unwrap();
            assert_eq!(g[0].rgb.len(), 64 * 48 * 3, "{kind:?} cfg {cfg_scale}");
        }
    }
}

#[test]
fn bad_requests_are_errors() {
    let pipe = pipeline();
    let bad = [
        GenerateRequest { width: 60, ..small(0, 1) },
        GenerateRequest { height: 0, ..small(0, 1) },
        GenerateRequest { batch: 0, ..small(0, 1) },
        GenerateRequest { steps: 0, ..small(0, 1) },
        GenerateRequest { steps: 1001, ..small(0, 1) },
        GenerateRequest { cfg_scale: f32::NAN, ..small(0, 1) },
        GenerateRequest { clip_skip: 3, ..small(0, 1) },
        GenerateRequest { latents: Some(vec![0.0; 5]), ..small(0, 1) },
    ];
    for req in bad {
        let r = pipe.generate(&req, &mut |_| {});
        // a request error (the web maps it to `bad_request`), not a failure of the generation
        assert!(matches!(r, Err(Error::Request(_))), "{req:?} → {r:?}");
    }
    let ids = vec![49407u32; 77];
    assert!(pipe.text_encoder.forward(&ids, 2, 0, &pipe.attention).is_err(), "77 ids do not make 2 rows");
    assert!(pipe.text_encoder.forward(&[60000; 77], 1, 0, &pipe.attention).is_err(), "id outside the vocabulary");
    assert!(pipe.text_encoder.forward(&[0; 78], 1, 0, &pipe.attention).is_err(), "longer than 77");
}

#[test]
fn bad_checkpoints_are_errors() {
    let tok = fixture("tokenizer/tokenizer.json");
    let load = |bytes: &[u8], cfg: &SdConfig| {
        Pipeline::load(cfg, &ModelFiles { checkpoint: Checkpoint::SingleFile(bytes), tokenizer_json: &tok }, &device_from_env().unwrap())
    };
    let tiny = fixture("tiny_sd/ldm/tiny_sd15_fp16.safetensors");
    let e = load(&tiny, &SdConfig::v1_5()).err().expect("tiny weights are not full SD1.5");
    assert!(e.to_string().contains("SD1.5"), "{e}");
    let e = load(&fixture("tiny_sd/ldm/tiny_pickle.ckpt"), &SdConfig::tiny()).err().expect("pickle refused");
    assert!(e.to_string().contains("pickled"), "{e}");
    assert!(load(b"garbage", &SdConfig::tiny()).is_err());
}

/// Polls a future to completion on this thread (the CPU backend's reads are ready at once).
fn block_on<F: std::future::Future>(f: F) -> F::Output {
    let mut f = std::pin::pin!(f);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    loop {
        if let std::task::Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
        std::thread::yield_now();
    }
}

#[test]
fn async_generation_equals_sync_and_can_be_cancelled() {
    let pipe = pipeline();
    let req = small(21, 2);
    let sync = pipe.generate(&req, &mut |_| {}).unwrap();
    let mut steps = 0;
    let done = block_on(pipe.generate_async(
        &req,
        &mut stylus_diffusion::SeededNoise { seed: 21 },
        &mut |p| steps += (p.stage == Stage::Denoising) as usize,
        &mut |_| {},
        &|| false,
    ))
    .unwrap();
    assert_eq!(done.images, sync, "the async loop is the same computation");
    assert_eq!(steps, req.steps);
    let polls = std::cell::Cell::new(0);
    let cancel_after_one = || {
        polls.set(polls.get() + 1);
        polls.get() > 1
    };
    let err = block_on(pipe.generate_async(&req, &mut stylus_diffusion::SeededNoise { seed: 21 }, &mut |_| {}, &mut |_| {}, &cancel_after_one)).unwrap_err();
    assert!(matches!(err, Error::Cancelled), "{err}");
    assert_eq!(polls.get(), 2, "stopped at the second step");
}

/// `preview_every` sends latent-resolution previews of each image at the asked steps and after the
/// last, and they change nothing in the result. Without it no preview is sent.
#[test]
fn live_previews_arrive_at_the_asked_steps() {
    let pipe = pipeline();
    let req = GenerateRequest { steps: 5, preview_every: 2, ..small(5, 2) };
    let mut previews = Vec::new();
    let out =
        block_on(pipe.generate_async(&req, &mut stylus_diffusion::SeededNoise { seed: req.seed }, &mut |_| {}, &mut |p| previews.push(p), &|| false)).unwrap();
    assert_eq!(previews.iter().map(|p| (p.step, p.total, p.images.len())).collect::<Vec<_>>(), [(2, 5, 2), (4, 5, 2), (5, 5, 2)]);
    for p in &previews {
        for img in &p.images {
            assert_eq!((img.width, img.height, img.rgb.len()), (8, 6, 8 * 6 * 3));
        }
    }
    assert_ne!(previews[0].images[0], previews[2].images[0], "previews follow the denoising");
    assert_ne!(previews[2].images[0], previews[2].images[1], "one preview per image");
    assert_eq!(out.images, pipe.generate(&GenerateRequest { preview_every: 0, ..req.clone() }, &mut |_| {}).unwrap(), "previews change nothing");
    let mut none = 0;
    block_on(pipe.generate_async(
        &GenerateRequest { preview_every: 0, ..req },
        &mut stylus_diffusion::SeededNoise { seed: 5 },
        &mut |_| {},
        &mut |_| none += 1,
        &|| false,
    ))
    .unwrap();
    assert_eq!(none, 0);
}

/// A warm-up runs each network once at the request's shapes and reports the three parts; it
/// changes nothing (a generation after it is the same bytes as on a fresh pipeline), refuses what
/// `generate` refuses, and the async one stops between networks when cancelled.
#[test]
fn warm_up_reports_its_parts_and_changes_nothing() {
    let (warm, fresh) = (pipeline(), pipeline());
    let req = small(9, 2);
    let mut seen = Vec::new();
    warm.warm_up(&req, &mut |p| seen.push((p.stage, p.done, p.total))).unwrap();
    assert_eq!(seen, (0..=3).map(|d| (Stage::WarmingUp, d, stylus_diffusion::WARM_UP_PARTS)).collect::<Vec<_>>());
    assert_eq!(warm.generate(&req, &mut |_| {}).unwrap(), fresh.generate(&req, &mut |_| {}).unwrap(), "the warm-up leaves no trace");
    for bad in [GenerateRequest { width: 60, ..small(0, 1) }, GenerateRequest { steps: 0, ..small(0, 1) }, GenerateRequest { clip_skip: 3, ..small(0, 1) }] {
        let r = warm.warm_up(&bad, &mut |_| {});
        assert!(matches!(r, Err(Error::Request(_))), "{bad:?} → {r:?}");
    }
    let mut parts = 0;
    block_on(warm.warm_up_async(&small(1, 1), &mut |p| parts = p.done, &|| false)).unwrap();
    assert_eq!(parts, 3);
    let err = block_on(warm.warm_up_async(&small(1, 1), &mut |p| parts = p.done, &|| true)).unwrap_err();
    assert!(matches!(err, Error::Cancelled), "{err}");
    assert_eq!(parts, 1, "stopped after the text encoder");
}

/// The zero-weight stand-in has the real model's shapes: a request the real model takes runs on
/// it (and one it refuses is refused), without a checkpoint.
#[test]
fn the_stand_in_runs_the_requests_the_model_runs() {
    let stand_in = Pipeline::stand_in(&SdConfig::tiny(), &fixture("tokenizer/tokenizer.json"), &device_from_env().unwrap()).unwrap();
    let mut parts = 0;
    stand_in.warm_up(&small(3, 2), &mut |p| parts = p.done).unwrap();
    assert_eq!(parts, stylus_diffusion::WARM_UP_PARTS);
    assert!(stand_in.warm_up(&GenerateRequest { width: 60, ..small(0, 1) }, &mut |_| {}).is_err());
    assert!(Pipeline::stand_in(&SdConfig::tiny(), b"{}", &device_from_env().unwrap()).is_err(), "a bad tokenizer is an error");
}
