//! Converted models (`stylus_sd::convert` manifest + shards) loaded through
//! `Loader::from_manifest`, on the tiny fixture: f32 and f16 give bit-identical generations (the
//! fixture's weights are fp16-exact), q8's drift is measured and bounded, a KB-level shard limit
//! splits the model and its token embedding across shards with the same result, and bad manifests
//! or shards are refused with typed errors before (or instead of) loading.
//!
//! Run with `--no-capture` to see the measured q8 drift.

mod common;

use std::cell::Cell;
use std::convert::Infallible;

use common::{fixture, oracle_request};
use stylus_diffusion::attention::AttentionConfig;
use stylus_diffusion::nn::{from_vec, to_vec};
use stylus_diffusion::{device_from_env, Checkpoint, Error, Generation, Loader, ModelFiles, Pipeline, SeededNoise, UNet2DConditionModel};
use stylus_sd::checkpoint::{parse, resolve_single_file, to_f32};
use stylus_sd::convert::{DtypePolicy, Manifest, ShardInfo, Writer, DEFAULT_SHARD_BYTES, Q8_MIN_ELEMENTS};
use stylus_sd::{Component, SchedulerKind, SdConfig};

fn oracle(key: &str) -> Vec<f32> {
    let bytes = fixture("tiny_sd/oracle/oracle.safetensors");
    let st = parse(&bytes).unwrap();
    to_f32(&st.tensor(key).unwrap()).unwrap()
}

/// The tiny single file converted in memory: (manifest JSON, shards).
fn convert(policy: DtypePolicy, limit: u64) -> (Vec<u8>, Vec<Vec<u8>>) {
    convert_q8(policy, limit, Q8_MIN_ELEMENTS)
}

/// [`convert`] with a q8 size threshold.
fn convert_q8(policy: DtypePolicy, limit: u64, q8_min_elements: usize) -> (Vec<u8>, Vec<Vec<u8>>) {
    convert_with(policy, limit, q8_min_elements, true)
}

/// [`convert_q8`], optionally without the VAE encoder (a text-to-image conversion).
fn convert_with(policy: DtypePolicy, limit: u64, q8_min_elements: usize, vae_encoder: bool) -> (Vec<u8>, Vec<Vec<u8>>) {
    let cfg = SdConfig::tiny();
    let bytes = fixture("tiny_sd/ldm/tiny_sd15_fp16.safetensors");
    let st = parse(&bytes).unwrap();
    let res = resolve_single_file(&st, &cfg).unwrap();
    let mut shards = Vec::new();
    let mut w = Writer::new("tiny", &cfg, policy, limit, |_: &ShardInfo, b: Vec<u8>| {
        shards.push(b);
        Ok::<(), Infallible>(())
    })
    .unwrap()
    .q8_min_elements(q8_min_elements);
    if !vae_encoder {
        w = w.without_vae_encoder();
    }
    for r in &res.params {
        w.add_resolved(r).unwrap();
    }
    let m = w.finish().unwrap();
    (m.to_json(), shards)
}

fn loader<'a>(json: &[u8], shards: &[Vec<u8>]) -> Result<Loader<'a>, Error> {
    Loader::from_manifest(&SdConfig::tiny(), json, |i, _: &ShardInfo| Ok::<_, Infallible>(shards[i].clone()), &device_from_env().unwrap())
}

fn pipeline(json: &[u8], shards: &[Vec<u8>]) -> Pipeline {
    Pipeline::from_loader(&SdConfig::tiny(), loader(json, shards).unwrap(), &fixture("tokenizer/tokenizer.json")).unwrap()
}

fn original() -> Pipeline {
    let bytes = fixture("tiny_sd/ldm/tiny_sd15_fp16.safetensors");
    let tok = fixture("tokenizer/tokenizer.json");
    Pipeline::load(&SdConfig::tiny(), &ModelFiles { checkpoint: Checkpoint::SingleFile(&bytes), tokenizer_json: &tok }, &device_from_env().unwrap()).unwrap()
}

/// The 4-step DDIM CFG 7.5 generation of `tests/parity.rs` (torch's initial latents).
fn generate(pipe: &Pipeline) -> Generation {
    let req = oracle_request(SchedulerKind::Ddim, oracle("init_latents"));
    pipe.generate_with(&req, &mut SeededNoise { seed: 0 }, &mut |_| {}).unwrap()
}

/// ε of the standalone UNet forward of the oracle (t = 500).
fn unet_eps(ld: &mut Loader<'_>) -> Vec<f32> {
    let dev = device_from_env().unwrap();
    ld.retain(Component::Unet);
    ld.set_component(Component::Unet);
    let unet = UNet2DConditionModel::load(&SdConfig::tiny().unet, ld).unwrap();
    let t = 500.0;
    let sample = from_vec(oracle("unet_forward.sample"), [1, 4, 8, 8], &dev).unwrap();
    let ctx = from_vec(oracle("unet_forward.encoder_hidden_states"), [1, 77, 8], &dev).unwrap();
    to_vec(unet.forward(sample, &[t], &ctx, &AttentionConfig::default()).unwrap()).unwrap()
}

fn rel_l2(got: &[f32], want: &[f32]) -> f64 {
    let num: f64 = got.iter().zip(want).map(|(a, b)| (*a as f64 - *b as f64).powi(2)).sum();
    let den: f64 = want.iter().map(|b| (*b as f64).powi(2)).sum();
    (num / den).sqrt()
}

/// PSNR in dB for values with peak-to-peak range `peak`.
fn psnr(got: impl Iterator<Item = f64>, want: impl Iterator<Item = f64>, peak: f64) -> f64 {
    let (mut se, mut n) = (0.0, 0usize);
    for (a, b) in got.zip(want) {
        se += (a - b).powi(2);
        n += 1;
    }
    10.0 * (peak * peak / (se / n as f64)).log10()
}

#[test]
fn f32_and_f16_conversions_generate_bit_identical_images() {
    let base = generate(&original());
    for policy in [DtypePolicy::F32, DtypePolicy::F16] {
        let (json, shards) = convert(policy, DEFAULT_SHARD_BYTES);
        assert_eq!(shards.len(), 1, "the tiny model fits one 64 MiB shard");
        let g = generate(&pipeline(&json, &shards));
        assert_eq!(g.latents, base.latents, "{policy:?}: latents bit-identical");
        assert_eq!(g.decoded, base.decoded, "{policy:?}: decoded bit-identical");
        assert_eq!(g.images, base.images, "{policy:?}: image identical");
    }
}

/// q8 with the default rule (only the 64 tiny weights of ≥ 4096 elements are int8) and with every
/// matrix int8 (threshold 1): drift of the UNet's ε and of the 4-step generation, bounded.
#[test]
fn q8_drift_is_measured_and_bounded() {
    let bytes = fixture("tiny_sd/ldm/tiny_sd15_fp16.safetensors");
    let mut ld = Loader::from_checkpoint(&SdConfig::tiny(), Checkpoint::SingleFile(&bytes), &device_from_env().unwrap()).unwrap();
    let eps_ref = unet_eps(&mut ld);
    let base = generate(&original());
    let f16_bytes = Manifest::from_json(&convert(DtypePolicy::F16, DEFAULT_SHARD_BYTES).0).unwrap().total_bytes;
    for (threshold, min_q8, max_eps, max_lat, min_psnr) in [(Q8_MIN_ELEMENTS, 64, 1e-2, 2e-2, 40.0), (1, 372, 5e-2, 8e-2, 33.0)] {
        let (json, shards) = convert_q8(DtypePolicy::Q8, DEFAULT_SHARD_BYTES, threshold);
        let m = Manifest::from_json(&json).unwrap();
        let q8 = m.tensors.iter().filter(|t| t.q8.is_some()).count();
        let eps = unet_eps(&mut loader(&json, &shards).unwrap());
        let eps_err = rel_l2(&eps, &eps_ref);
        let g = generate(&pipeline(&json, &shards));
        let lat_err = rel_l2(&g.latents, &base.latents);
        let f = |v: &[f32]| v.iter().map(|&x| x as f64).collect::<Vec<_>>().into_iter();
        let psnr_decoded = psnr(f(&g.decoded), f(&base.decoded), 2.0);
        let u = |img: &[u8]| img.iter().map(|&x| x as f64).collect::<Vec<_>>().into_iter();
        let psnr_u8 = psnr(u(&g.images[0].rgb), u(&base.images[0].rgb), 255.0);
        println!(
            "tiny q8, threshold {threshold} ({q8} of {} tensors int8, {} bytes vs f16 {f16_bytes}): UNet ε rel L2 error {eps_err:.2e}; \
             4-step DDIM latents rel error {lat_err:.2e}, decoded PSNR {psnr_decoded:.1} dB, image PSNR {psnr_u8:.1} dB",
            m.tensors.len(),
            m.total_bytes,
        );
        assert!(q8 >= min_q8, "{q8} int8 tensors");
        assert!(eps_err > 0.0 && eps_err < max_eps, "UNet ε rel error {eps_err}");
        assert!(lat_err < max_lat, "latents rel error {lat_err}");
        assert!(psnr_decoded > min_psnr && psnr_u8 > min_psnr, "PSNR {psnr_decoded} / {psnr_u8} dB");
    }
}

#[test]
fn a_kb_level_shard_limit_splits_the_model_and_loads_the_same() {
    let limit = 256 << 10;
    let (json, shards) = convert(DtypePolicy::F16, limit);
    let m = Manifest::from_json(&json).unwrap();
    assert!(shards.len() >= 8, "{} shards", shards.len());
    assert!(shards.iter().all(|s| s.len() as u64 <= limit));
    let emb = m.tensors.iter().find(|t| t.path.ends_with("token_embedding.weight")).unwrap();
    assert_eq!(emb.bytes, 49408 * 8 * 2);
    assert!(emb.pieces.len() >= 4, "the 790 KB token embedding spans shards: {:?}", emb.pieces);
    let (json1, shards1) = convert(DtypePolicy::F16, DEFAULT_SHARD_BYTES);
    assert_eq!(generate(&pipeline(&json, &shards)).images, generate(&pipeline(&json1, &shards1)).images);
}

fn edited(json: &[u8], f: impl FnOnce(&mut Manifest)) -> Vec<u8> {
    let mut m = Manifest::from_json(json).unwrap();
    f(&mut m);
    m.to_json()
}

#[test]
fn bad_manifests_and_shards_are_refused() {
    let (json, shards) = convert(DtypePolicy::F16, 256 << 10);
    let fetched = Cell::new(0);
    let counting = |json: &[u8]| {
        let r = Loader::from_manifest(
            &SdConfig::tiny(),
            json,
            |i, _: &ShardInfo| {
                fetched.set(fetched.get() + 1);
                Ok::<_, Infallible>(&shards[i][..])
            },
            &device_from_env().unwrap(),
        );
        r.err().expect("must fail")
    };
    let missing = edited(&json, |m| m.tensors.retain(|t| t.path != "mid_block.attentions.0.proj_in.weight"));
    assert!(matches!(counting(&missing), Error::MissingParam(p) if p == "mid_block.attentions.0.proj_in.weight"));
    let extra = edited(&json, |m| {
        let mut t = m.tensors[0].clone();
        t.path = "mid_block.attentions.0.extra.weight".into();
        m.tensors.push(t);
    });
    assert!(counting(&extra).to_string().contains("mid_block.attentions.0.extra.weight"));
    // Same byte length, other shape.
    let shape = edited(&json, |m| {
        let t = m.tensors.iter_mut().find(|t| t.path == "time_embedding.linear_1.weight").unwrap();
        t.shape.reverse();
    });
    assert!(matches!(counting(&shape), Error::ParamShape { path, .. } if path == "time_embedding.linear_1.weight"));
    assert_eq!(fetched.get(), 0, "the tensor set is checked before any shard is fetched");

    let mut bad = shards.clone();
    bad[3][10] ^= 0x40;
    let err = loader(&json, &bad).err().expect("a corrupt shard must fail").to_string();
    assert!(err.contains("shard-00003.bin") && err.contains("sha256"), "{err}");
    let err =
        Loader::from_manifest(&SdConfig::v1_5(), &json, |i, _: &ShardInfo| Ok::<_, Infallible>(&shards[i][..]), &device_from_env().unwrap()).err().unwrap();
    assert!(err.to_string().contains("converted for config `tiny`"), "{err}");
    let err = Loader::from_manifest(&SdConfig::tiny(), b"not json", |i, _: &ShardInfo| Ok::<_, Infallible>(&shards[i][..]), &device_from_env().unwrap())
        .err()
        .unwrap();
    assert!(err.to_string().contains("manifest"), "{err}");
}

/// A text-to-image conversion leaves the VAE encoder out: smaller, says so in its manifest, generates
/// exactly the same images, and refuses image-to-image with a message instead of failing to load.
/// A manifest claiming no encoder while listing encoder tensors is refused.
#[test]
fn a_conversion_without_the_vae_encoder_generates_the_same_and_refuses_encoding() {
    let (full_json, full) = convert(DtypePolicy::F16, DEFAULT_SHARD_BYTES);
    let (json, shards) = convert_with(DtypePolicy::F16, DEFAULT_SHARD_BYTES, Q8_MIN_ELEMENTS, false);
    let (m, mf) = (Manifest::from_json(&json).unwrap(), Manifest::from_json(&full_json).unwrap());
    assert!(!m.vae_encoder && mf.vae_encoder);
    assert!(String::from_utf8_lossy(&json).contains("\"vae_encoder\":false") && !String::from_utf8_lossy(&full_json).contains("vae_encoder"));
    let enc = mf.tensors.iter().filter(|t| stylus_sd::convert::is_vae_encoder(t.component, &t.path)).count();
    assert!(enc > 10 && m.tensors.len() == mf.tensors.len() - enc, "{} of {} tensors left out", mf.tensors.len() - m.tensors.len(), enc);
    assert!(m.total_bytes < mf.total_bytes);
    let pipe = pipeline(&json, &shards);
    assert_eq!(generate(&pipe).images, generate(&pipeline(&full_json, &full)).images);
    let img = from_vec(vec![0.0; 3 * 64 * 64], [1, 3, 64, 64], &device_from_env().unwrap()).unwrap();
    let err = pipe.vae.encode(img, &AttentionConfig::default()).unwrap_err().to_string();
    assert!(err.contains("no VAE encoder"), "{err}");
    let bad = edited(&full_json, |m| m.vae_encoder = false);
    assert!(Manifest::from_json(&bad).unwrap_err().to_string().contains("VAE encoder"));
}
