//! The tiny SD1.5-architecture fixtures (tests/fixtures/tiny_sd) load through the remap table:
//! the single file and the diffusers folder resolve every parameter to identical values, the
//! table's key names and shapes equal what the reference exporter wrote, and bad files are refused.

use std::collections::{BTreeMap, BTreeSet};

use stylus_e2e::fixture;
use stylus_sd::checkpoint::{self, to_f32};
use stylus_sd::{sd_params, Component, Error, SdConfig};

const SINGLE: &str = "tiny_sd/ldm/tiny_sd15_fp16.safetensors";

fn diffusers_file(c: Component) -> String {
    let f = if c == Component::TextEncoder { "model.safetensors" } else { "diffusion_pytorch_model.safetensors" };
    format!("tiny_sd/diffusers/{}/{f}", c.dir())
}

#[test]
fn single_file_and_diffusers_folder_hold_identical_weights() {
    let cfg = SdConfig::tiny();
    let single = fixture(SINGLE);
    let st = checkpoint::parse(&single).unwrap();
    let res = checkpoint::resolve_single_file(&st, &cfg).unwrap();
    assert!(res.unexpected.is_empty(), "unexpected keys in the single file: {:?}", res.unexpected);
    assert_eq!(res.params.len(), sd_params(&cfg).len());
    let by_path: BTreeMap<_, _> = res.params.iter().map(|r| ((r.spec.component, r.spec.path.clone()), r)).collect();

    let mut compared = 0;
    for comp in [Component::Unet, Component::Vae, Component::TextEncoder] {
        let bytes = fixture(&diffusers_file(comp));
        let st = checkpoint::parse(&bytes).unwrap();
        let d = checkpoint::resolve_diffusers(comp, &st, &cfg).unwrap();
        assert!(d.unexpected.is_empty(), "{comp:?}: unexpected {:?}", d.unexpected);
        for r in &d.params {
            let s = by_path[&(comp, r.spec.path.clone())];
            let (a, b) = (to_f32(&r.view).unwrap(), to_f32(&s.view).unwrap());
            assert_eq!(a.len(), r.spec.numel());
            assert_eq!(a, b, "{} differs between the diffusers folder and the single file", r.spec.path);
            compared += 1;
        }
    }
    assert_eq!(compared, sd_params(&cfg).len());
}

/// `key_map.json` (written by the reference exporter): ldm key -> [component, diffusers key].
#[test]
fn remap_table_equals_the_reference_exporter() {
    let file: serde_json::Value = serde_json::from_slice(&fixture("tiny_sd/key_map.json")).unwrap();
    let map: BTreeMap<String, serde_json::Value> = serde_json::from_value(file["map"].clone()).unwrap();
    let ours: BTreeMap<String, (String, String)> = sd_params(&SdConfig::tiny())
        .into_iter()
        .map(|p| (p.ldm_key, (p.component.dir().to_string(), p.path)))
        .collect();
    let theirs: BTreeMap<String, (String, String)> = map
        .iter()
        .map(|(k, v)| (k.clone(), (v[0].as_str().unwrap().to_string(), v[1].as_str().unwrap().to_string())))
        .collect();
    let only_ours: Vec<_> = ours.keys().filter(|k| !theirs.contains_key(*k)).collect();
    let only_theirs: Vec<_> = theirs.keys().filter(|k| !ours.contains_key(*k)).collect();
    assert!(only_ours.is_empty() && only_theirs.is_empty(), "only ours: {only_ours:?}\nonly reference: {only_theirs:?}");
    for (k, v) in &ours {
        assert_eq!(&theirs[k], v, "mapping of {k}");
    }
}

/// `ldm_keys.json`: every key of the single file with its shape; ours plus the known buffers.
#[test]
fn ldm_shapes_equal_the_reference_file() {
    let keys: BTreeMap<String, serde_json::Value> = serde_json::from_slice(&fixture("tiny_sd/ldm/ldm_keys.json")).unwrap();
    let mut extra = BTreeSet::new();
    for p in sd_params(&SdConfig::tiny()) {
        let v = keys.get(&p.ldm_key).unwrap_or_else(|| panic!("{} not in the reference file", p.ldm_key));
        let shape: Vec<usize> = serde_json::from_value(v[0].clone()).unwrap();
        assert_eq!(&shape, p.ldm_shape.as_ref().unwrap_or(&p.shape), "{}", p.ldm_key);
    }
    let ours: BTreeSet<String> = sd_params(&SdConfig::tiny()).into_iter().map(|p| p.ldm_key).collect();
    for k in keys.keys().filter(|k| !ours.contains(*k)) {
        extra.insert(k.clone());
    }
    // What remains are the 12 DDPM buffers and the text encoder's position_ids.
    assert_eq!(extra.len(), 13, "{extra:?}");
    assert!(extra.iter().any(|k| k.ends_with("position_ids")));
}

#[test]
fn pickled_checkpoint_is_refused_with_a_conversion_hint() {
    let bytes = fixture("tiny_sd/ldm/tiny_pickle.ckpt");
    let err = checkpoint::parse(&bytes).unwrap_err();
    assert!(matches!(err, Error::PickleRefused));
    assert!(err.to_string().contains("safetensors"));
}

#[test]
fn a_different_architecture_is_refused_by_shape() {
    // The tiny file checked against the full-size SD1.5 table: first tensor mismatches.
    let single = fixture(SINGLE);
    let st = checkpoint::parse(&single).unwrap();
    let err = checkpoint::resolve_single_file(&st, &SdConfig::v1_5()).unwrap_err();
    assert!(matches!(err, Error::ShapeMismatch { .. }), "{err}");
}

#[test]
fn a_truncated_file_is_a_typed_error() {
    let single = fixture(SINGLE);
    for cut in [4, 100, single.len() / 2, single.len() - 1] {
        assert!(matches!(checkpoint::parse(&single[..cut]), Err(Error::Safetensors(_))), "cut at {cut}");
    }
}

/// The diffusers folder's config.json files describe the same architecture as `SdConfig::tiny()`.
#[test]
fn tiny_preset_matches_the_fixture_configs() {
    let j = |c: &str| -> serde_json::Value { serde_json::from_slice(&fixture(&format!("tiny_sd/diffusers/{c}/config.json"))).unwrap() };
    let cfg = SdConfig::tiny();
    let (u, v, t) = (j("unet"), j("vae"), j("text_encoder"));
    let chans = |x: &serde_json::Value| -> Vec<usize> { serde_json::from_value(x["block_out_channels"].clone()).unwrap() };
    assert_eq!(chans(&u), cfg.unet.block_out_channels);
    assert_eq!(u["norm_num_groups"], cfg.unet.norm_num_groups);
    assert_eq!(u["cross_attention_dim"], cfg.unet.cross_attention_dim);
    assert_eq!(u["attention_head_dim"], cfg.unet.attention_heads);
    assert_eq!(chans(&v), cfg.vae.block_out_channels);
    assert_eq!(v["norm_num_groups"], cfg.vae.norm_num_groups);
    assert_eq!(t["hidden_size"], cfg.text.hidden_size);
    assert_eq!(t["intermediate_size"], cfg.text.intermediate_size);
    assert_eq!(t["num_hidden_layers"], cfg.text.num_hidden_layers);
    assert_eq!(t["num_attention_heads"], cfg.text.num_attention_heads);
}
