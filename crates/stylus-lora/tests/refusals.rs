//! Safety and refusals: unmatched keys reported by name, SDXL/SD2 LoRAs refused with the reason,
//! shapes checked against the module table, NaN/Inf, ranks, size/count/header caps, pickle and
//! garbage, DoRA, conflicting spellings, sha256 verification, and a mutation sweep over a valid
//! file that must never panic.

mod common;

use std::collections::BTreeMap;

use common::*;
use safetensors::Dtype;
use stylus_lora::{verify_sha256, BaseFamily, Error, LoraFile, ModuleTable, MAX_FILE_BYTES, MAX_TENSORS};

fn err(bytes: &[u8], table: &ModuleTable) -> Error {
    LoraFile::parse(bytes, table).expect_err("must be refused")
}

/// A kohya module `name` with down `[r, din]`, up `[dout, r]` and alpha.
fn kohya(name: &str, down: &[usize], up: &[usize]) -> Vec<T> {
    vec![pattern_t(&format!("{name}.lora_down.weight"), down), pattern_t(&format!("{name}.lora_up.weight"), up), f32_t(&format!("{name}.alpha"), &[], &[1.0])]
}

const Q: &str = "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q";

#[test]
fn unmatched_keys_are_reported_by_name() {
    let (mut ts, meta) = read(&lora("kohya_lora.safetensors"));
    ts.extend(kohya("lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn3_to_q", &[4, 8], &[8, 4]));
    ts.push(pattern_t("lora_unet_down_blocks_0_attentions_0_proj_in.mystery", &[2]));
    ts.push(T { name: "training_step".into(), dtype: Dtype::I64, shape: vec![1], data: vec![0; 8] });
    let f = LoraFile::parse(&write(&ts, meta), &tiny_table()).unwrap();
    assert_eq!(f.len(), 210);
    let keys: Vec<&str> = f.unmatched().iter().map(|u| u.key.as_str()).collect();
    assert_eq!(
        keys,
        vec![
            "lora_unet_down_blocks_0_attentions_0_proj_in.mystery",
            "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn3_to_q.alpha",
            "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn3_to_q.lora_down.weight",
            "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn3_to_q.lora_up.weight",
            "training_step",
        ]
    );
    assert!(f.unmatched()[1].reason.contains("no such module"));
    assert_eq!(f.summary().unmatched.len(), 5);
    // Nothing that matches at all: refused, with examples.
    let e = err(&write(&kohya("lora_unet_bogus", &[4, 8], &[8, 4]), None), &tiny_table());
    assert!(matches!(&e, Error::NoModules { count: 3, first } if first[0].starts_with("lora_unet_bogus")), "{e}");
}

#[test]
fn sdxl_and_sd2_are_refused_with_the_reason() {
    let sd15 = sd15_table();
    let family = |e: Error| match e {
        Error::WrongBaseModel { family, reason } => (family, reason),
        other => panic!("expected WrongBaseModel, got {other}"),
    };
    // SDXL: two text encoders.
    let (f, why) = family(err(&write(&kohya("lora_te1_text_model_encoder_layers_0_self_attn_q_proj", &[4, 768], &[768, 4]), None), &sd15));
    assert_eq!(f, BaseFamily::Sdxl);
    assert!(why.contains("lora_te1_"), "{why}");
    // SDXL: ten transformer blocks per attention (ldm names).
    let (f, why) = family(err(&write(&kohya("lora_unet_input_blocks_7_1_transformer_blocks_1_attn1_to_q", &[4, 1280], &[1280, 4]), None), &sd15));
    assert_eq!(f, BaseFamily::Sdxl);
    assert!(why.contains("transformer blocks"), "{why}");
    // SDXL: PEFT second text encoder.
    let ts = vec![pattern_t("text_encoder_2.text_model.encoder.layers.0.self_attn.q_proj.lora_A.weight", &[4, 1280])];
    assert_eq!(family(err(&write(&ts, None), &sd15)).0, BaseFamily::Sdxl);
    // SDXL / SD2 by cross-attention width on a module SD1.5 has.
    let k = "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_k";
    let (f, why) = family(err(&write(&kohya(k, &[4, 2048], &[320, 4]), None), &sd15));
    assert_eq!(f, BaseFamily::Sdxl);
    assert!(why.contains("2048") && why.contains("768"), "{why}");
    assert_eq!(family(err(&write(&kohya(k, &[4, 1024], &[320, 4]), None), &sd15)).0, BaseFamily::Sd2);
    // SD2: 1024-wide text encoder; linear proj_in.
    let te = "lora_te_text_model_encoder_layers_0_self_attn_q_proj";
    assert_eq!(family(err(&write(&kohya(te, &[4, 1024], &[1024, 4]), None), &sd15)).0, BaseFamily::Sd2);
    let p = "lora_unet_down_blocks_0_attentions_0_proj_in";
    let (f, why) = family(err(&write(&kohya(p, &[4, 320], &[320, 4]), None), &sd15));
    assert_eq!(f, BaseFamily::Sd2);
    assert!(why.contains("linear"), "{why}");
    // The same modules with SD1.5 shapes are fine.
    let mut ok = kohya(k, &[4, 768], &[320, 4]);
    ok.extend(kohya(p, &[4, 320, 1, 1], &[320, 4, 1, 1]));
    assert_eq!(LoraFile::parse(&write(&ok, None), &sd15).unwrap().len(), 2);
    // inspect names the family instead of failing.
    let i = stylus_lora::inspect(&write(&kohya(k, &[4, 2048], &[320, 4]), None), &sd15).unwrap();
    assert_eq!(i.base.family, BaseFamily::Sdxl);
    assert!(i.error.unwrap().contains("SDXL"));
}

#[test]
fn shapes_must_fit_the_target() {
    let t = tiny_table();
    for (down, up) in [(&[4, 9][..], &[8, 4][..]), (&[4, 8], &[9, 4]), (&[4, 8], &[8, 3]), (&[4, 8, 1, 1], &[8, 4, 1, 1]), (&[4], &[8, 4])] {
        let e = err(&write(&kohya(Q, down, up), None), &t);
        assert!(matches!(e, Error::ShapeMismatch { .. } | Error::BadRank { .. }), "{down:?} {up:?}: {e}");
    }
    // 3×3 LoCon down on a 1×1 module, and a linear factor on a 3×3 conv.
    let e = err(&write(&kohya("lora_unet_down_blocks_0_attentions_0_proj_in", &[2, 8, 3, 3], &[8, 2, 1, 1]), None), &t);
    assert!(matches!(e, Error::ShapeMismatch { .. }), "{e}");
    let e = err(&write(&kohya("lora_unet_down_blocks_0_resnets_0_conv1", &[2, 72], &[8, 2]), None), &t);
    assert!(matches!(e, Error::ShapeMismatch { .. }), "{e}");
    let mut ts = kohya(Q, &[4, 8], &[8, 4]);
    ts[2] = f32_t(&format!("{Q}.alpha"), &[2], &[1.0, 1.0]);
    assert!(matches!(err(&write(&ts, None), &t), Error::ShapeMismatch { .. }));
}

#[test]
fn ranks_are_bounded() {
    let t = tiny_table();
    assert!(matches!(err(&write(&kohya(Q, &[1025, 8], &[8, 1025]), None), &t), Error::BadRank { rank: 1025, .. }));
    assert!(matches!(err(&write(&kohya(Q, &[0, 8], &[8, 0]), None), &t), Error::BadRank { rank: 0, .. }));
    assert_eq!(LoraFile::parse(&write(&kohya(Q, &[1024, 8], &[8, 1024]), None), &t).unwrap().len(), 1);
}

#[test]
fn nan_inf_and_dtypes_are_refused() {
    let t = tiny_table();
    for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
        let mut ts = kohya(Q, &[4, 8], &[8, 4]);
        let mut v = vec![0.1f32; 32];
        v[17] = bad;
        ts[1] = f32_t(&format!("{Q}.lora_up.weight"), &[8, 4], &v);
        assert!(matches!(err(&write(&ts, None), &t), Error::NonFinite { key } if key.ends_with("lora_up.weight")));
    }
    let mut ts = kohya(Q, &[4, 8], &[8, 4]);
    ts[0] = T { name: format!("{Q}.lora_down.weight"), dtype: Dtype::I32, shape: vec![4, 8], data: vec![0; 128] };
    assert!(matches!(err(&write(&ts, None), &t), Error::UnsupportedDtype { .. }));
}

#[test]
fn container_limits_and_garbage() {
    let t = tiny_table();
    assert!(matches!(err(b"", &t), Error::Safetensors(_)));
    assert!(matches!(err(b"not a safetensors file at all", &t), Error::Safetensors(_)));
    assert!(matches!(err(b"PK\x03\x04 zip", &t), Error::PickleRefused));
    assert!(matches!(err(&[0x80, 0x02, b'}', b'q'], &t), Error::PickleRefused));
    // A valid file whose header is 640 bytes starts with 80 02 like a protocol-2 pickle: not refused.
    let f = write(&kohya(Q, &[4, 8], &[8, 4]), None);
    let n = u64::from_le_bytes(f[..8].try_into().unwrap()) as usize;
    assert!(n < 640);
    let mut padded = 640u64.to_le_bytes().to_vec();
    padded.extend_from_slice(&f[8..8 + n]);
    padded.resize(8 + 640, b' ');
    padded.extend_from_slice(&f[8 + n..]);
    assert_eq!(padded[..2], [0x80, 0x02]);
    assert_eq!(LoraFile::parse(&padded, &t).unwrap().len(), 1);
    let mut huge_header = (40u64 << 20).to_le_bytes().to_vec();
    huge_header.push(b'{');
    huge_header.resize(8 + (40 << 20) - 1, b' ');
    huge_header.push(b'}');
    assert!(matches!(err(&huge_header, &t), Error::TooLarge { what, .. } if what.contains("header")));
    assert!(matches!(err(&huge_header[..1000], &t), Error::Safetensors(_)));
    let big = vec![0u8; MAX_FILE_BYTES as usize + 1];
    assert!(matches!(err(&big, &t), Error::TooLarge { what: "file size", .. }));
    drop(big);
    let many: Vec<T> = (0..=MAX_TENSORS).map(|i| f32_t(&format!("t{i:05}"), &[], &[0.0])).collect();
    assert!(matches!(err(&write(&many, None), &t), Error::TooLarge { what: "tensor count", .. }));
    // A header whose offsets run past the end.
    let mut v = br#"{"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}"#.to_vec();
    let mut b = (v.len() as u64).to_le_bytes().to_vec();
    b.append(&mut v);
    b.extend_from_slice(&[0; 8]);
    assert!(matches!(err(&b, &t), Error::Safetensors(_)));
}

#[test]
fn dora_conflicts_and_incomplete_modules() {
    let t = tiny_table();
    let mut ts = kohya(Q, &[4, 8], &[8, 4]);
    ts.push(pattern_t(&format!("{Q}.dora_scale"), &[8, 1]));
    assert!(matches!(err(&write(&ts, None), &t), Error::Unsupported { .. }));
    // The same module in kohya and PEFT spelling.
    let mut ts = kohya(Q, &[4, 8], &[8, 4]);
    ts.push(pattern_t("unet.down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q.lora_A.weight", &[4, 8]));
    ts.push(pattern_t("unet.down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q.lora_B.weight", &[8, 4]));
    assert!(matches!(err(&write(&ts, None), &t), Error::ConflictingKeys { .. }));
    // LoRA and LoHa parts on one module.
    let mut ts = kohya(Q, &[4, 8], &[8, 4]);
    ts.push(pattern_t(&format!("{Q}.hada_w1_a"), &[8, 4]));
    assert!(matches!(err(&write(&ts, None), &t), Error::ConflictingKeys { .. }));
    // Down without up; LoHa without w2; a lone Tucker core.
    assert!(matches!(err(&write(&kohya(Q, &[4, 8], &[8, 4])[..1].iter().map(|x| f32_t(&x.name, &x.shape, &[0.1; 32])).collect::<Vec<_>>(), None), &t), Error::IncompleteModule { .. }));
    let ts = vec![pattern_t(&format!("{Q}.hada_w1_a"), &[8, 4]), pattern_t(&format!("{Q}.hada_w1_b"), &[4, 8])];
    assert!(matches!(err(&write(&ts, None), &t), Error::IncompleteModule { .. }));
    let c = "lora_unet_down_blocks_0_resnets_0_conv1";
    let mut ts: Vec<T> = ["hada_w1_a", "hada_w2_a"].iter().map(|p| pattern_t(&format!("{c}.{p}"), &[4, 8])).collect();
    ts.extend(["hada_w1_b", "hada_w2_b"].iter().map(|p| pattern_t(&format!("{c}.{p}"), &[4, 8])));
    ts.push(pattern_t(&format!("{c}.hada_t1"), &[4, 4, 3, 3]));
    assert!(matches!(err(&write(&ts, None), &t), Error::IncompleteModule { .. }));
    // With both cores it is a valid Tucker LoHa.
    ts.push(pattern_t(&format!("{c}.hada_t2"), &[4, 4, 3, 3]));
    let f = LoraFile::parse(&write(&ts, None), &t).unwrap();
    assert!(f.summary().tucker_modules == 1);
}

#[test]
fn sha256_of_a_fixture_against_sha256sums_in_upper_case() {
    let sums = String::from_utf8(fixture("SHA256SUMS")).unwrap();
    let line = sums.lines().find(|l| l.ends_with("lora/kohya_lora.safetensors")).unwrap();
    let hex = line.split_whitespace().next().unwrap().to_uppercase();
    let bytes = lora("kohya_lora.safetensors");
    verify_sha256(&bytes, &hex).unwrap();
    let mut tampered = bytes.clone();
    tampered[100] ^= 1;
    assert!(matches!(verify_sha256(&tampered, &hex), Err(Error::HashMismatch { .. })));
}

/// Flip, truncate and overwrite bytes of valid files (header and data): never a panic.
#[test]
fn mutated_valid_files_never_panic() {
    let t = tiny_table();
    for name in ["kohya_lora.safetensors", "lokr.safetensors", "loha.safetensors", "peft_lora_noalpha.safetensors"] {
        let src = lora(name);
        let step = (src.len() / 400).max(1);
        let mut n = 0;
        for i in (0..src.len()).step_by(step) {
            for m in [0x01u8, 0x80, 0xff] {
                let mut b = src.clone();
                b[i] ^= m;
                let _ = LoraFile::parse(&b, &t);
                let _ = stylus_lora::inspect(&b, &t);
                n += 1;
            }
            let _ = LoraFile::parse(&src[..i], &t);
        }
        assert!(n > 1000, "{n}");
    }
    // Zero-sized tensors with huge other dimensions pass safetensors' checks; no overflow here.
    let huge = 1usize << 40;
    for shape in [vec![0, 0, huge, huge], vec![0, 8, huge, huge], vec![huge, 0]] {
        let mut ts = kohya("lora_unet_down_blocks_0_resnets_0_conv1", &[2, 8, 3, 3], &[8, 2, 1, 1]);
        ts[0] = T { name: ts[0].name.clone(), dtype: Dtype::F32, shape: shape.clone(), data: vec![] };
        let b = write(&ts, None);
        assert!(LoraFile::parse(&b, &t).is_err(), "{shape:?}");
        let i = stylus_lora::inspect(&b, &t).unwrap();
        assert!(i.error.is_some());
    }
    let meta = BTreeMap::from([("lora_adapter_metadata".to_string(), "{\"unet.r\": 1e999}".to_string())]);
    let _ = LoraFile::parse(&write(&kohya(Q, &[4, 8], &[8, 4]), Some(meta)), &t);
}
