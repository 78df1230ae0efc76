//! Merge parity with the reference stack (tests/fixtures/lora/merged_oracle.safetensors: diffusers
//! `load_lora_weights` + `fuse_lora(lora_scale=0.7)` for kohya/LoCon/PEFT, `W + 0.7·lycoris.functional`
//! for LoHa/LoKr; NOTES §5.2–5.3): base + 0.7·ΔW from the fixture LoRA and the tiny base weights must
//! match to max |diff| ≤ 1e-6, and the set of changed modules must equal the oracle's.

mod common;

use std::collections::{BTreeSet, HashMap};

use common::*;
use safetensors::SafeTensors;
use serde_json::Value;
use stylus_lora::{compose, merged, LoraFile, ModuleKey};

const TOL: f32 = 1e-6;

type Base = HashMap<ModuleKey, (Vec<usize>, Vec<f32>)>;

/// Returns (modules, max |diff|) for one case.
fn check_case(case: &str, file: &str, scale: f32, base: &Base, oracle: &SafeTensors<'_>) -> (usize, f32) {
    let table = tiny_table();
    let lora = LoraFile::parse(&lora(file), &table).unwrap_or_else(|e| panic!("{case}: {e}"));
    let sum = compose(&[(&lora, scale)]).unwrap();
    let prefix = format!("{case}/");
    let want: BTreeSet<String> = oracle
        .names()
        .into_iter()
        .filter_map(|k| k.strip_prefix(&prefix).and_then(|m| m.strip_suffix(".weight")).map(str::to_string))
        .collect();
    let got: BTreeSet<String> = sum.keys().map(ToString::to_string).collect();
    assert_eq!(got, want, "{case}: the set of changed modules differs from the oracle's");
    let mut worst = 0.0f32;
    for (module, delta) in &sum {
        let (shape, w) = &base[module];
        let m = merged(w, shape, delta).unwrap();
        let o = oracle.tensor(&format!("{prefix}{module}.weight")).unwrap();
        assert_eq!(o.shape(), shape.as_slice(), "{case}: {module}");
        let o = stylus_sd::checkpoint::to_f32(&o).unwrap();
        let d = max_abs_diff(&m, &o);
        assert!(d <= TOL, "{case}: {module}: max |diff| {d:e} > {TOL:e}");
        worst = worst.max(d);
    }
    (sum.len(), worst)
}

#[test]
fn merged_oracle_every_case_within_1e6() {
    let meta: Value = serde_json::from_slice(&lora("meta.json")).unwrap();
    let scale = meta["lora_scale"].as_f64().unwrap() as f32;
    let oracle_bytes = lora("merged_oracle.safetensors");
    let oracle = SafeTensors::deserialize(&oracle_bytes).unwrap();
    let base = base_weights_diffusers();
    let cases = meta["cases"].as_object().unwrap();
    assert_eq!(cases.len(), 6);
    let mut total = 0;
    for (case, c) in cases {
        let (n, worst) = check_case(case, c["file"].as_str().unwrap(), scale, &base, &oracle);
        let expected = c.get("n_modules_rule").or(c.get("n_modules")).and_then(Value::as_u64).unwrap();
        assert_eq!(n as u64, expected, "{case}");
        println!("parity {case:>13}: {n:>3} modules, max |diff| {worst:.3e}");
        total += n;
    }
    assert_eq!(total, oracle.len(), "every oracle tensor is checked");
}

/// The ldm single file gives the same base weights through the remap table, hence the same merge.
#[test]
fn ldm_single_file_base_gives_the_same_merge() {
    let meta: Value = serde_json::from_slice(&lora("meta.json")).unwrap();
    let oracle_bytes = lora("merged_oracle.safetensors");
    let oracle = SafeTensors::deserialize(&oracle_bytes).unwrap();
    let base = base_weights_ldm();
    let (n, worst) = check_case("locon", "kohya_locon.safetensors", 0.7, &base, &oracle);
    assert_eq!(n as u64, meta["cases"]["locon"]["n_modules_rule"].as_u64().unwrap());
    assert!(worst <= TOL);
}

/// Counts, ranks and alphas agree with the fixture's meta.json.
#[test]
fn summaries_match_meta() {
    let meta: Value = serde_json::from_slice(&lora("meta.json")).unwrap();
    let table = tiny_table();
    for case in ["kohya", "locon", "peft", "peft_noalpha"] {
        let c = &meta["cases"][case];
        let f = LoraFile::parse(&lora(c["file"].as_str().unwrap()), &table).unwrap();
        let s = f.summary();
        assert_eq!(s.unet_modules as u64, c["n_unet"].as_u64().unwrap(), "{case}");
        assert_eq!(s.text_encoder_modules as u64, c["n_text_encoder"].as_u64().unwrap(), "{case}");
        assert_eq!(s.conv3x3_modules as u64, c["n_3x3_modules"].as_u64().unwrap(), "{case}");
        let ranks: Vec<u64> = c["ranks"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap()).collect();
        assert_eq!(s.ranks.iter().map(|&r| r as u64).collect::<Vec<_>>(), ranks, "{case}");
        if let Some(alphas) = c["alphas"].as_array() {
            let alphas: Vec<f32> = alphas.iter().map(|v| v.as_f64().unwrap() as f32).collect();
            assert_eq!(s.alphas, alphas, "{case}");
        }
        assert!(s.unmatched.is_empty(), "{case}: {:?}", s.unmatched);
    }
    for case in ["loha", "lokr"] {
        let c = &meta["cases"][case];
        let f = LoraFile::parse(&lora(c["file"].as_str().unwrap()), &table).unwrap();
        let s = f.summary();
        assert_eq!(s.conv3x3_modules as u64, c["n_conv3x3"].as_u64().unwrap(), "{case}");
        let mut got: Vec<String> = f.modules().map(|(k, _)| k.to_string()).collect();
        got.sort();
        let mut want: Vec<String> = c["modules"].as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_string()).collect();
        want.sort();
        assert_eq!(got, want, "{case}");
    }
}
