//! f16 models (`set_precision(Precision::F16)`): on the wgpu backend (`STYLUS_DEVICE=wgpu`,
//! lavapipe here) the whole pipeline runs in f16 — weights, activations, latents — and the
//! tiny fixture's 4-step DPM++ generation stays close to the PyTorch f32 oracle (stated bounds
//! below, measured values printed); on the CPU backend f16 is refused with a message. A test binary
//! of its own: the precision is a setting of the process-wide wgpu device.

mod common;

use burn::tensor::DType;
use common::{fixture, oracle_request};
use stylus_diffusion::{device_from_env, set_precision, Error, ModelFiles, Pipeline, Precision, RecordedNoise};
use stylus_sd::checkpoint::{parse, to_f32};
use stylus_sd::{SchedulerKind, SdConfig};

#[test]
fn f16_generation_stays_close_to_the_f32_oracle() {
    assert_eq!(Precision::parse("f16"), Some(Precision::F16));
    assert_eq!(Precision::parse("fp32"), Some(Precision::F32));
    assert_eq!(Precision::parse("bf16"), None);
    let mut device = device_from_env().unwrap();
    if std::env::var("STYLUS_DEVICE").as_deref() != Ok("wgpu") {
        let err = set_precision(&mut device, Precision::F16).unwrap_err();
        assert!(matches!(&err, Error::Request(m) if m.contains("f16") && m.contains("f32")), "{err}");
        eprintln!("f16 is for the GPU: refused on the CPU backend ({err}); run with STYLUS_DEVICE=wgpu for the generation");
        return;
    }
    set_precision(&mut device, Precision::F16).unwrap();
    let oracle = fixture("tiny_sd/oracle/oracle.safetensors");
    let st = parse(&oracle).unwrap();
    let f32s = |key: &str| to_f32(&st.tensor(key).unwrap()).unwrap();
    let (model, tokenizer) = (fixture("tiny_sd/ldm/tiny_sd15_fp16.safetensors"), fixture("tokenizer/tokenizer.json"));
    let files = ModelFiles { checkpoint: stylus_diffusion::Checkpoint::SingleFile(&model), tokenizer_json: &tokenizer };
    let pipe = Pipeline::load(&SdConfig::tiny(), &files, &device).unwrap();
    assert_eq!(pipe.unet.conv_in.weight.dtype(), DType::F16, "the weights are f16");
    let req = oracle_request(SchedulerKind::DpmPp2mKarras, f32s("init_latents"));
    let g = pipe.generate_with(&req, &mut RecordedNoise { initial: Vec::new(), steps: Vec::new() }, &mut |_| {}).unwrap();
    let want = f32s("dpmpp_2m_karras.latents_4");
    let scale = want.iter().fold(0f32, |m, v| m.max(v.abs()));
    let lat_err = g.latents.iter().zip(&want).fold(0f32, |m, (a, b)| m.max((a - b).abs())) / scale;
    let image = st.tensor("dpmpp_2m_karras.image_uint8").unwrap().data().to_vec();
    let got = &g.images[0].rgb;
    assert_eq!(got.len(), image.len());
    let worst = got.iter().zip(&image).map(|(&a, &b)| (a as i16 - b as i16).abs()).max().unwrap();
    let mse = got.iter().zip(&image).map(|(&a, &b)| (a as f64 - b as f64).powi(2)).sum::<f64>() / image.len() as f64;
    let psnr = 10.0 * (255f64.powi(2) / mse.max(1e-9)).log10();
    println!("f16 vs the f32 oracle: latents max |diff| / max |ref| {lat_err:.2e}; image PSNR {psnr:.1} dB, max |diff| {worst}");
    assert!(lat_err <= 2e-2, "f16 latents drift {lat_err}");
    assert!(psnr >= 40.0 && worst <= 16, "f16 image: PSNR {psnr:.1} dB, max |diff| {worst}");
}
