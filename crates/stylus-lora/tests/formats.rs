//! Format coverage beyond the committed fixtures, built in memory from them: legacy diffusers
//! spellings (`lora.down`, `lora_linear_layer`, attention processors with and without `unet.`),
//! ldm-named kohya keys, F32/BF16 copies of an F16 file, PEFT metadata (alpha, rsLoRA, patterns),
//! LoKr scale rules, low-rank factors vs full deltas, multi-adapter composition (NOTES §5.3).

mod common;

use std::collections::BTreeMap;

use common::*;
use safetensors::Dtype;
use stylus_lora::{add_in_place, compose, delta_for, merged, AdapterKind, Error, Format, LoraFile, ModuleKey};
use stylus_sd::Component;

fn parse(bytes: &[u8]) -> LoraFile {
    LoraFile::parse(bytes, &tiny_table()).unwrap()
}

/// Asserts two files give identical deltas (`ratio` × the second's) on the same module set.
fn same_deltas(a: &LoraFile, b: &LoraFile, ratio: f32) {
    let ka: Vec<_> = a.modules().map(|(k, _)| k.clone()).collect();
    let kb: Vec<_> = b.modules().map(|(k, _)| k.clone()).collect();
    assert_eq!(ka, kb);
    for k in &ka {
        let (da, db) = (a.delta(k).unwrap(), b.delta(k).unwrap());
        let scaled: Vec<f32> = db.data.iter().map(|v| v * ratio).collect();
        assert_eq!(da.data, scaled, "{k}");
    }
}

#[test]
fn diffusers_legacy_spellings_equal_peft() {
    let src = lora("peft_lora_noalpha.safetensors");
    let peft = parse(&src);
    let legacy = rewrite(
        &src,
        |k| {
            Some(if k.starts_with("unet.") {
                k.replace(".lora_A.weight", ".lora.down.weight").replace(".lora_B.weight", ".lora.up.weight")
            } else {
                k.replace(".lora_A.weight", ".lora_linear_layer.down.weight").replace(".lora_B.weight", ".lora_linear_layer.up.weight")
            })
        },
        None,
    );
    let legacy = parse(&legacy);
    assert_eq!(legacy.format(), Format::DiffusersLegacy);
    assert_eq!(peft.format(), Format::Peft);
    same_deltas(&legacy, &peft, 1.0);
}

/// diffusers ≤ 0.14 `save_attn_procs`: `<attn>.processor.to_{q,k,v,out}_lora.{down,up}.weight`,
/// UNet only; without metadata alpha = r, so the deltas are the PEFT file's (alpha 8, r 4) / 2.
#[test]
fn attention_processor_spellings_with_and_without_prefix() {
    let src = lora("peft_lora.safetensors");
    let peft = parse(&src);
    let unet_only = |prefix: &'static str| {
        move |k: &str| {
            let m = k.strip_prefix("unet.")?;
            let (module, part) = m.rsplit_once('.').and_then(|(rest, _)| rest.rsplit_once('.'))?;
            let part = if part == "lora_A" { "down" } else { "up" };
            let module = module.strip_suffix(".0").unwrap_or(module); // to_out.0 -> to_out
            let (attn, proj) = module.rsplit_once('.')?;
            Some(format!("{prefix}{attn}.processor.{proj}_lora.{part}.weight"))
        }
    };
    for prefix in ["", "unet."] {
        let f = parse(&rewrite(&src, unet_only(prefix), None));
        assert_eq!(f.format(), Format::AttnProcessor);
        assert_eq!(f.len(), 128);
        for (k, a) in f.modules() {
            assert_eq!(a.scale, 1.0);
            let want: Vec<f32> = peft.delta(k).unwrap().data.iter().map(|v| v / 2.0).collect();
            assert_eq!(f.delta(k).unwrap().data, want, "{k}");
        }
        assert!(f.modules().any(|(k, _)| k.path.ends_with("attn1.to_out.0")));
    }
}

/// ldm-named kohya keys (`lora_unet_input_blocks_4_1_proj_in`) resolve through the ldm keys of the table.
#[test]
fn ldm_named_kohya_keys_resolve_to_the_same_modules() {
    let table = tiny_table();
    let src = lora("kohya_locon.safetensors");
    let mut to_ldm = BTreeMap::new();
    for (k, info) in table.iter().filter(|(k, _)| k.component == Component::Unet) {
        let diff = format!("lora_unet_{}", k.path.replace('.', "_"));
        let ldm = info.ldm_key.strip_prefix("model.diffusion_model.").unwrap().strip_suffix(".weight").unwrap();
        to_ldm.insert(diff, format!("lora_unet_{}", ldm.replace('.', "_")));
    }
    let renamed = rewrite(
        &src,
        |k| {
            let (name, suffix) = k.split_once('.').unwrap();
            Some(format!("{}.{suffix}", to_ldm.get(name).map_or(name, String::as_str)))
        },
        None,
    );
    for needle in ["lora_unet_input_blocks_4_1_proj_in.", "lora_unet_middle_block_1_transformer", "lora_unet_output_blocks_11_1_proj_out."] {
        assert!(renamed.windows(needle.len()).any(|w| w == needle.as_bytes()), "{needle}");
    }
    same_deltas(&parse(&renamed), &parse(&src), 1.0);
}

#[test]
fn f16_bf16_f32_inputs() {
    let f16 = lora("kohya_lora.safetensors");
    let a = parse(&f16);
    assert_eq!(a.summary().dtypes, vec!["F16"]);
    let f32f = parse(&convert_f16(&f16, Dtype::F32));
    assert_eq!(f32f.summary().dtypes, vec!["F32"]);
    same_deltas(&f32f, &a, 1.0); // F16 -> F32 is exact
    let bf = parse(&convert_f16(&f16, Dtype::BF16));
    assert_eq!(bf.summary().dtypes, vec!["BF16"]);
    for (k, _) in a.modules() {
        let (x, y) = (a.delta(k).unwrap(), bf.delta(k).unwrap());
        let tol = 0.02 * x.max_abs().max(1e-3);
        assert!(max_abs_diff(&x.data, &y.data) <= tol, "{k}");
    }
    // The committed BF16 LoCon parses too.
    assert_eq!(parse(&lora("kohya_locon.safetensors")).summary().dtypes, vec!["BF16"]);
}

#[test]
fn peft_alpha_rslora_and_patterns() {
    let src = lora("peft_lora.safetensors");
    let f = parse(&src);
    assert!(f.modules().all(|(_, a)| a.scale == 2.0 && a.alpha == Some(8.0)));
    assert!(parse(&lora("peft_lora_noalpha.safetensors")).modules().all(|(_, a)| a.scale == 1.0 && a.alpha.is_none()));
    let meta = |json: &str| Some(BTreeMap::from([("lora_adapter_metadata".to_string(), json.to_string())]));
    let f = parse(&rewrite(&src, |k| Some(k.into()), meta(r#"{"unet.r": 4, "unet.lora_alpha": 8, "unet.use_rslora": true}"#)));
    for (k, a) in f.modules() {
        let want = if k.component == Component::Unet { 4.0 } else { 1.0 }; // 8/√4; TE: no config → alpha = r
        assert_eq!(a.scale, want, "{k}");
    }
    let f = parse(&rewrite(
        &src,
        |k| Some(k.into()),
        meta(r#"{"unet.r": 4, "unet.lora_alpha": 8, "unet.alpha_pattern": {"attn2.to_q": 2}, "unet.rank_pattern": {"mid_block.attentions.0.transformer_blocks.0.attn1.to_q": 4}}"#),
    ));
    for (k, a) in f.modules().filter(|(k, _)| k.component == Component::Unet) {
        assert_eq!(a.scale, if k.path.ends_with("attn2.to_q") { 0.5 } else { 2.0 }, "{k}");
    }
    let e = LoraFile::parse(&rewrite(&src, |k| Some(k.into()), meta(r#"{"unet.r": 8}"#)), &tiny_table()).unwrap_err();
    assert!(matches!(e, Error::BadMetadata(_)), "{e}");
}

#[test]
fn lokr_and_loha_scale_rules() {
    let f = parse(&lora("lokr.safetensors"));
    let full = ModuleKey::new(Component::Unet, "mid_block.attentions.0.transformer_blocks.0.attn1.to_out.0");
    let a = f.module(&full).unwrap();
    assert_eq!((a.kind, a.rank, a.alpha, a.scale), (AdapterKind::LoKr, None, Some(3.0), 1.0));
    let both = ModuleKey::new(Component::Unet, "mid_block.attentions.0.transformer_blocks.0.ff.net.0.proj");
    let a = f.module(&both).unwrap();
    assert_eq!((a.rank, a.scale), (Some(2), 1.0)); // alpha 2 / r 2
    assert!(f.low_rank(&both).is_none());
    assert_eq!(f.summary().alphas, vec![2.0]); // the ignored 3.0 of the full/full modules is not reported
    let h = parse(&lora("loha.safetensors"));
    assert!(h.modules().all(|(_, a)| a.kind == AdapterKind::LoHa && a.scale == 0.5));
    assert_eq!(h.format(), Format::LoHa);
}

/// `scale · up (down x)` equals `ΔW x` (linear and 3×3 conv, the latter at the centre pixel of a
/// 3×3 patch, i.e. a full dot product with the flattened kernel).
#[test]
fn low_rank_factors_reproduce_the_delta() {
    let f = parse(&lora("kohya_locon.safetensors"));
    let mut checked = [0usize; 2];
    for (k, a) in f.modules() {
        let lr = f.low_rank(k).unwrap();
        let d = f.delta(k).unwrap();
        let (out, r) = (lr.up.shape[0], lr.up.shape[1]);
        let cols: usize = lr.down.shape[1..].iter().product();
        assert_eq!(lr.down.shape[1..], d.shape[1..]);
        assert_eq!(lr.scale as f64, a.scale);
        let x: Vec<f32> = (0..cols).map(|i| ((i * 13 % 7) as f32 - 3.0) * 0.1).collect();
        let h: Vec<f32> = lr.down.data.chunks(cols).map(|row| row.iter().zip(&x).map(|(a, b)| a * b).sum()).collect();
        let y_lr: Vec<f32> = lr.up.data.chunks(r).map(|row| lr.scale * row.iter().zip(&h).map(|(a, b)| a * b).sum::<f32>()).collect();
        let y_full: Vec<f32> = d.data.chunks(cols).map(|row| row.iter().zip(&x).map(|(a, b)| a * b).sum()).collect();
        assert_eq!(y_lr.len(), out);
        assert!(max_abs_diff(&y_lr, &y_full) < 1e-5, "{k}");
        checked[usize::from(d.shape.len() == 4 && d.shape[2] == 3)] += 1;
    }
    assert_eq!(checked[1], 50);
    assert!(parse(&lora("loha.safetensors")).modules().all(|(k, _)| parse(&lora("loha.safetensors")).low_rank(k).is_none()));
}

#[test]
fn two_adapters_compose_and_merge() {
    let (a, b) = (parse(&lora("kohya_lora.safetensors")), parse(&lora("peft_lora.safetensors")));
    let set = [(&a, 0.6f32), (&b, 0.4)];
    let sum = compose(&set).unwrap();
    assert_eq!(sum.len(), 210); // PEFT's 140 modules are a subset of kohya's 210
    let base = base_weights_diffusers();
    for (k, s) in &sum {
        let da = a.delta(k).unwrap();
        let want: Vec<f32> = match b.delta(k) {
            Some(db) => da.data.iter().zip(&db.data).map(|(x, y)| 0.6 * x + 0.4 * y).collect(),
            None => da.data.iter().map(|x| 0.6 * x).collect(),
        };
        assert!(max_abs_diff(&s.data, &want) < 1e-6, "{k}");
        assert_eq!(delta_for(&set, k).unwrap().as_ref(), Some(s));
        let (shape, w) = &base[k];
        let mut copy = w.clone();
        add_in_place(&mut copy, shape, s).unwrap();
        assert_eq!(copy, merged(w, shape, s).unwrap());
    }
    assert!(compose(&[(&a, 0.0)]).unwrap().is_empty());
    assert!(matches!(compose(&[(&a, f32::NAN)]), Err(Error::BadWeight(_))));
    let (k, s) = sum.iter().next().unwrap();
    assert!(merged(&base[k].1[1..], &base[k].0, s).is_err());
}

#[test]
fn inspect_reports_format_base_and_tags() {
    let i = stylus_lora::inspect(&lora("kohya_lora.safetensors"), &tiny_table()).unwrap();
    assert_eq!(i.format, Some(Format::Kohya));
    assert_eq!(i.base.family, stylus_lora::BaseFamily::Sd1);
    let k = i.kohya.unwrap();
    assert_eq!(k.output_name.as_deref(), Some("tiny_kohya"));
    assert_eq!(k.top_tags[0], ("astronaut".to_string(), 10));
    let s = i.summary.unwrap();
    assert_eq!((s.unet_modules, s.text_encoder_modules, s.conv_modules), (192, 18, 32));
    // Against the full-size table the tiny LoRA does not fit: reported, not a crash.
    let i = stylus_lora::inspect(&lora("kohya_lora.safetensors"), &sd15_table()).unwrap();
    assert!(i.summary.is_none() && i.error.is_some());
    assert_eq!(i.format, Some(Format::Kohya));
}
