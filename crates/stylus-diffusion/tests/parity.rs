//! CPU (burn `flex`) parity of the three networks and the full generation loop against the PyTorch
//! oracle `tests/fixtures/tiny_sd/oracle/oracle.safetensors` (diffusers 0.42.1 / transformers 5.24,
//! fp32), loading the tiny SD1.5-topology model from BOTH the ldm single file and the diffusers
//! folder.
//!
//! Tolerances (oracle `meta.json` → `tolerances`, stated per check below):
//! * text embeddings: abs 1e-4;
//! * UNet ε (standalone forward and every scheduler's first CFG step): rel 1e-4 of max |ε|;
//! * VAE decode / generated `decoded`: abs 1e-3; VAE encode mean/logvar: abs 1e-4;
//! * latents after the 4 steps: rel 1e-3 of max |latents| (random weights do not denoise);
//! * `image_uint8`: ±2 per channel (±1 expected from rounding at .5 boundaries).
//!
//! Run with `--no-capture` to see the measured max differences.

mod common;

use common::{fixture, oracle_request};
use stylus_diffusion::attention::AttentionConfig;
use stylus_diffusion::nn::{from_vec, to_vec};
use stylus_diffusion::{device_from_env, AutoencoderKL, Checkpoint, ClipTextModel, Loader, ModelFiles, Pipeline, RecordedNoise, UNet2DConditionModel};
use stylus_sd::checkpoint::{parse, to_f32};
use stylus_sd::{ClipTokenizer, SchedulerKind, SdConfig};

struct Oracle(Vec<u8>);

impl Oracle {
    fn load() -> Self {
        Oracle(fixture("tiny_sd/oracle/oracle.safetensors"))
    }
    fn f32(&self, key: &str) -> Vec<f32> {
        let st = parse(&self.0).unwrap();
        to_f32(&st.tensor(key).unwrap_or_else(|_| panic!("oracle has no {key}"))).unwrap()
    }
    fn i64(&self, key: &str) -> Vec<i64> {
        let st = parse(&self.0).unwrap();
        let t = st.tensor(key).unwrap();
        t.data().chunks_exact(8).map(|c| i64::from_le_bytes(c.try_into().unwrap())).collect()
    }
    fn u8(&self, key: &str) -> Vec<u8> {
        parse(&self.0).unwrap().tensor(key).unwrap().data().to_vec()
    }
}

/// The two on-disk layouts of the same weights.
struct Files {
    name: &'static str,
    single: Option<Vec<u8>>,
    diffusers: Option<[Vec<u8>; 3]>,
}

fn sources() -> Vec<Files> {
    let d = |c: &str| fixture(&format!("tiny_sd/diffusers/{c}"));
    vec![
        Files { name: "single file", single: Some(fixture("tiny_sd/ldm/tiny_sd15_fp16.safetensors")), diffusers: None },
        Files {
            name: "diffusers folder",
            single: None,
            diffusers: Some([d("unet/diffusion_pytorch_model.safetensors"), d("vae/diffusion_pytorch_model.safetensors"), d("text_encoder/model.safetensors")]),
        },
    ]
}

impl Files {
    fn checkpoint(&self) -> Checkpoint<'_> {
        match (&self.single, &self.diffusers) {
            (Some(s), _) => Checkpoint::SingleFile(s),
            (None, Some([u, v, t])) => Checkpoint::Diffusers { unet: u, vae: v, text_encoder: t },
            _ => unreachable!(),
        }
    }
    fn loader(&self) -> Loader<'_> {
        Loader::from_checkpoint(&SdConfig::tiny(), self.checkpoint(), &device_from_env().unwrap()).unwrap()
    }
}

fn max_abs(v: &[f32]) -> f32 {
    v.iter().fold(0.0, |m, x| m.max(x.abs()))
}

/// Max |a - b|, checked against `tol`; prints the number for the README.
fn check(what: &str, got: &[f32], want: &[f32], tol: f32) -> f32 {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let d = got.iter().zip(want).fold(0f32, |m, (a, b)| m.max((a - b).abs()));
    println!("{what}: max |diff| {d:.3e} (tolerance {tol:.1e}, max |ref| {:.3e})", max_abs(want));
    assert!(d <= tol, "{what}: max |diff| {d} > {tol}");
    d
}

#[test]
fn text_embeddings_match_the_oracle() {
    let o = Oracle::load();
    let ids: Vec<u32> = o.i64("input_ids").iter().map(|&i| i as u32).collect();
    for src in sources() {
        let mut ld = src.loader();
        let clip = ClipTextModel::load(&SdConfig::tiny().text, &mut ld).unwrap();
        let attn = AttentionConfig::default();
        let e = to_vec(clip.forward(&ids, 2, 0, &attn).unwrap()).unwrap();
        check(&format!("{}: text_embeddings (abs 1e-4)", src.name), &e, &o.f32("text_embeddings"), 1e-4);
        let e2 = to_vec(clip.forward(&ids, 2, 2, &attn).unwrap()).unwrap();
        check(&format!("{}: text_embeddings_clip_skip2 (abs 1e-4)", src.name), &e2, &o.f32("text_embeddings_clip_skip2"), 1e-4);
    }
}

#[test]
fn tokenizer_gives_the_oracle_ids() {
    let o = Oracle::load();
    let tok = ClipTokenizer::from_json_bytes(&fixture("tokenizer/tokenizer.json")).unwrap();
    let mut ids = tok.encode("").unwrap().ids;
    ids.extend(tok.encode("a photo of an astronaut riding a horse on mars").unwrap().ids);
    let want: Vec<u32> = o.i64("input_ids").iter().map(|&i| i as u32).collect();
    assert_eq!(ids, want);
}

#[test]
fn unet_forward_matches_the_oracle() {
    let o = Oracle::load();
    let dev = device_from_env().unwrap();
    let attn = AttentionConfig::default();
    let t = o.i64("unet_forward.timestep")[0] as f32;
    for src in sources() {
        let mut ld = src.loader();
        let unet = UNet2DConditionModel::load(&SdConfig::tiny().unet, &mut ld).unwrap();
        let sample = from_vec(o.f32("unet_forward.sample"), [1, 4, 8, 8], &dev).unwrap();
        let ctx = from_vec(o.f32("unet_forward.encoder_hidden_states"), [1, 77, 8], &dev).unwrap();
        let out = to_vec(unet.forward(sample, &[t], &ctx, &attn).unwrap()).unwrap();
        let want = o.f32("unet_forward.out");
        check(&format!("{}: unet_forward.out (rel 1e-4)", src.name), &out, &want, 1e-4 * max_abs(&want));
    }
}

/// Every scheduler's first CFG step: the recorded model input and text embeddings through the
/// UNet give the recorded ε_uncond / ε_text (timesteps 751, 999, 999).
#[test]
fn unet_first_cfg_step_matches_for_every_scheduler() {
    let o = Oracle::load();
    let dev = device_from_env().unwrap();
    let attn = AttentionConfig::default();
    let src = &sources()[0];
    let mut ld = src.loader();
    let unet = UNet2DConditionModel::load(&SdConfig::tiny().unet, &mut ld).unwrap();
    let ctx = from_vec(o.f32("text_embeddings"), [2, 77, 8], &dev).unwrap();
    for s in ["ddim", "euler_a", "dpmpp_2m_karras"] {
        let t = o.f32(&format!("{s}.timesteps"))[0];
        let input = from_vec(o.f32(&format!("{s}.step0_model_input")), [2, 4, 8, 8], &dev).unwrap();
        let eps = to_vec(unet.forward(input, &[t], &ctx, &attn).unwrap()).unwrap();
        let mut want = o.f32(&format!("{s}.step0_eps_uncond"));
        want.extend(o.f32(&format!("{s}.step0_eps_text")));
        check(&format!("{s}: step0 eps (rel 1e-4)"), &eps, &want, 1e-4 * max_abs(&want));
    }
}

#[test]
fn vae_decode_and_encode_match_the_oracle() {
    let o = Oracle::load();
    let dev = device_from_env().unwrap();
    let attn = AttentionConfig::default();
    for src in sources() {
        let mut ld = src.loader();
        let vae = AutoencoderKL::load(&SdConfig::tiny().vae, &mut ld).unwrap();
        let z = from_vec(o.f32("vae_decode.latent"), [1, 4, 8, 8], &dev).unwrap();
        let out = to_vec(vae.decode(z, &attn).unwrap()).unwrap();
        check(&format!("{}: vae_decode.out (abs 1e-3)", src.name), &out, &o.f32("vae_decode.out"), 1e-3);
        let img = from_vec(o.f32("vae_encode.image"), [1, 3, 64, 64], &dev).unwrap();
        let (mean, logvar) = vae.encode(img, &attn).unwrap();
        check(&format!("{}: vae_encode.mean (abs 1e-4)", src.name), &to_vec(mean).unwrap(), &o.f32("vae_encode.mean"), 1e-4);
        check(&format!("{}: vae_encode.logvar (abs 1e-4)", src.name), &to_vec(logvar).unwrap(), &o.f32("vae_encode.logvar"), 1e-4);
    }
}

/// The full 4-step CFG 7.5 generation for each scheduler from torch's initial latents (Euler
/// ancestral replays torch's recorded step noise), from both weight layouts.
#[test]
fn four_step_generations_match_the_oracle() {
    let o = Oracle::load();
    let tokenizer = fixture("tokenizer/tokenizer.json");
    for src in sources() {
        let files = ModelFiles { checkpoint: src.checkpoint(), tokenizer_json: &tokenizer };
        let pipe = Pipeline::load(&SdConfig::tiny(), &files, &device_from_env().unwrap()).unwrap();
        for (s, kind) in [("ddim", SchedulerKind::Ddim), ("euler_a", SchedulerKind::EulerAncestral), ("dpmpp_2m_karras", SchedulerKind::DpmPp2mKarras)] {
            let req = oracle_request(kind, o.f32("init_latents"));
            let steps = if s == "euler_a" { (0..4).map(|i| o.f32(&format!("euler_a.step{i}_noise"))).collect() } else { Vec::new() };
            let mut noise = RecordedNoise { initial: Vec::new(), steps };
            let mut seen = 0;
            let g = pipe.generate_with(&req, &mut noise, &mut |_| seen += 1).unwrap();
            assert_eq!(seen, 1 + 4 + 1, "progress: prompt, 4 steps, 1 decode");
            let name = format!("{}: {s}", src.name);
            let lat = o.f32(&format!("{s}.latents_4"));
            check(&format!("{name}.latents_4 (rel 1e-3)"), &g.latents, &lat, 1e-3 * max_abs(&lat));
            check(&format!("{name}.decoded (abs 1e-3)"), &g.decoded, &o.f32(&format!("{s}.decoded")), 1e-3);
            let want = o.u8(&format!("{s}.image_uint8"));
            let got = &g.images[0].rgb;
            assert_eq!(got.len(), want.len());
            let worst = got.iter().zip(&want).map(|(&a, &b)| (a as i16 - b as i16).abs()).max().unwrap();
            let off = got.iter().zip(&want).filter(|(a, b)| a != b).count();
            println!("{name}.image_uint8 (±2): max |diff| {worst}, {off} of {} values differ", want.len());
            assert!(worst <= 2, "{name}: uint8 max diff {worst}");
        }
    }
}

/// Tiled decoding equals diffusers' `enable_tiling()` decode (4-latent tiles, overlap 0.25, a 16×12
/// latent: seams on both axes and partial edge tiles), and is not the untiled decode.
#[test]
fn tiled_vae_decode_matches_diffusers_tiling() {
    let bytes = fixture("tiny_sd/oracle/vae_tiled.safetensors");
    let st = parse(&bytes).unwrap();
    let get = |k: &str| to_f32(&st.tensor(k).unwrap()).unwrap();
    let dev = device_from_env().unwrap();
    let attn = AttentionConfig::default();
    let srcs = sources();
    let mut ld = srcs[0].loader();
    let vae = AutoencoderKL::load(&SdConfig::tiny().vae, &mut ld).unwrap();
    let z = from_vec(get("latent"), [1, 4, 16, 12], &dev).unwrap();
    let tiled = vae.decode_tiled(z.clone(), &stylus_diffusion::VaeTiling::new(4), &attn).unwrap();
    assert_eq!(tiled.dims(), [1, 3, 128, 96]);
    let tiled = to_vec(tiled).unwrap();
    check("vae tiled decode (abs 1e-3)", &tiled, &get("tiled"), 1e-3);
    let whole = to_vec(vae.decode(z, &attn).unwrap()).unwrap();
    check("vae untiled decode (abs 1e-3)", &whole, &get("untiled"), 1e-3);
    let seam = tiled.iter().zip(&whole).fold(0f32, |m, (a, b)| m.max((a - b).abs()));
    assert!(seam > 0.1, "tiling changes the output ({seam}), as in diffusers");
}

/// burn's own conv2d (`kernels::ConvKernel::Backend`; every other test runs the default GEMM
/// convolution: 1×1 as matmul, 3×3 as im2col + matmul) gives the oracle's UNet ε and VAE decode
/// within the same tolerances. nextest runs each test in its own process, so the process-wide
/// kernel choice stays local to this test.
#[test]
fn backend_convolutions_match_the_oracle() {
    use stylus_diffusion::kernels::{set_conv_kernel, ConvKernel};
    set_conv_kernel(ConvKernel::Backend);
    let o = Oracle::load();
    let dev = device_from_env().unwrap();
    let attn = AttentionConfig::default();
    let srcs = sources();
    let mut ld = srcs[0].loader();
    let unet = UNet2DConditionModel::load(&SdConfig::tiny().unet, &mut ld).unwrap();
    let t = o.i64("unet_forward.timestep")[0] as f32;
    let sample = from_vec(o.f32("unet_forward.sample"), [1, 4, 8, 8], &dev).unwrap();
    let ctx = from_vec(o.f32("unet_forward.encoder_hidden_states"), [1, 77, 8], &dev).unwrap();
    let want = o.f32("unet_forward.out");
    let out = to_vec(unet.forward(sample, &[t], &ctx, &attn).unwrap()).unwrap();
    check("backend conv: unet_forward.out (rel 1e-4)", &out, &want, 1e-4 * max_abs(&want));
    let src = &sources()[0];
    let vae = AutoencoderKL::load(&SdConfig::tiny().vae, &mut src.loader()).unwrap();
    let z = from_vec(o.f32("vae_decode.latent"), [1, 4, 8, 8], &dev).unwrap();
    check("backend conv: vae_decode.out (abs 1e-3)", &to_vec(vae.decode(z, &attn).unwrap()).unwrap(), &o.f32("vae_decode.out"), 1e-3);
}
