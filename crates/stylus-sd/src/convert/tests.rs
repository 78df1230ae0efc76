//! Unit tests of the converted-model format: manifest round trip, splitting across shards, the
//! sha256 check, the f16 overflow rule, the q8 rule and its per-row error bound, determinism.

use std::convert::Infallible;

use super::*;
use crate::SdConfig;

/// Deterministic values in [-a, a] (xorshift).
fn values(n: usize, seed: u64, a: f32) -> Vec<f32> {
    let mut s = seed | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            ((s >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0) * a
        })
        .collect()
}

type Tensors = Vec<(Component, &'static str, Vec<usize>, Vec<f32>)>;

fn sample() -> Tensors {
    vec![
        (Component::Unet, "conv_in.weight", vec![32, 4, 3, 3], values(32 * 36, 1, 0.2)),
        (Component::Unet, "conv_in.bias", vec![32], values(32, 2, 0.1)),
        (Component::Vae, "decoder.mid_block.attentions.0.to_q.weight", vec![64, 64], values(64 * 64, 3, 0.5)),
        (Component::TextEncoder, "text_model.embeddings.token_embedding.weight", vec![300, 16], values(4800, 4, 0.03)),
    ]
}

/// Converts `tensors` in memory: (manifest, shards).
fn convert(tensors: &Tensors, policy: DtypePolicy, limit: u64) -> Result<(Manifest, Vec<Vec<u8>>), Error> {
    let mut shards = Vec::new();
    let mut w = Writer::new("tiny", &SdConfig::tiny(), policy, limit, |info: &ShardInfo, bytes: Vec<u8>| {
        assert_eq!(info.file, writer::shard_file_name(shards.len()));
        shards.push(bytes);
        Ok::<(), Infallible>(())
    })?;
    for (c, path, shape, v) in tensors {
        w.add(*c, path, shape, Source::F32(v))?;
    }
    let m = w.finish()?;
    Ok((m, shards))
}

fn read_all(m: &Manifest, shards: &[Vec<u8>]) -> Result<Vec<(String, Vec<f32>)>, Error> {
    ShardReader::new(m, |i, _: &ShardInfo| Ok::<_, Infallible>(&shards[i][..])).map(|r| r.and_then(|(t, b)| Ok((t.path.clone(), decode(t, &b)?)))).collect()
}

#[test]
fn manifest_round_trips_through_json_and_f32_is_exact() {
    let tensors = sample();
    let (m, shards) = convert(&tensors, DtypePolicy::F32, DEFAULT_SHARD_BYTES).unwrap();
    assert_eq!(shards.len(), 1);
    let json = m.to_json();
    let back = Manifest::from_json(&json).unwrap();
    assert_eq!(back, m);
    assert_eq!((back.format.as_str(), back.version, back.config.as_str()), (FORMAT, VERSION, "tiny"));
    let text = String::from_utf8(json).unwrap();
    assert!(text.contains("\"component\":\"text_encoder\"") && text.contains("\"dtype\":\"f32\""), "{text}");
    let got = read_all(&back, &shards).unwrap();
    for ((_, path, _, v), (p, g)) in tensors.iter().zip(&got) {
        assert_eq!(path, p);
        assert_eq!(v, g, "f32 is lossless");
    }
    // every tensor starts 16-byte aligned
    assert!(m.tensors.iter().all(|t| t.pieces[0].offset % ALIGN == 0));
}

#[test]
fn a_large_tensor_is_split_across_shards_and_small_ones_are_not() {
    let tensors = sample();
    let limit = 1024;
    let (m, shards) = convert(&tensors, DtypePolicy::F16, limit).unwrap();
    assert!(shards.iter().all(|s| s.len() as u64 <= limit), "every shard within the limit");
    assert_eq!(shards.len(), m.shards.len());
    let emb = m.tensors.iter().find(|t| t.path.ends_with("token_embedding.weight")).unwrap();
    assert_eq!(emb.bytes, 9600);
    assert!(emb.pieces.len() >= 10, "9600 bytes over 1 KiB shards: {:?}", emb.pieces);
    assert!(emb.pieces.windows(2).all(|w| w[1].shard == w[0].shard + 1 && w[1].offset == 0));
    let bias = m.tensors.iter().find(|t| t.path == "conv_in.bias").unwrap();
    assert_eq!(bias.pieces.len(), 1, "a tensor that fits a shard is never split");
    let got = read_all(&m, &shards).unwrap();
    for ((_, _, _, v), (_, g)) in tensors.iter().zip(&got) {
        let want: Vec<f32> = v.iter().map(|&x| half::f16::from_f32(x).to_f32()).collect();
        assert_eq!(&want, g, "f16 decode is the rounded value");
    }
    // Same input, same output.
    let (m2, shards2) = convert(&tensors, DtypePolicy::F16, limit).unwrap();
    assert_eq!((m2.to_json(), shards2), (m.to_json(), shards));
}

#[test]
fn a_corrupt_shard_is_refused_naming_it() {
    let (m, mut shards) = convert(&sample(), DtypePolicy::F16, 1024).unwrap();
    shards[2][100] ^= 1;
    let err = read_all(&m, &shards).unwrap_err();
    assert!(matches!(err, Error::ShardCorrupt { ref file, .. } if file == "shard-00002.bin"), "{err}");
    assert!(err.to_string().contains("sha256"), "{err}");
    shards[2].pop();
    let err = read_all(&m, &shards).unwrap_err().to_string();
    assert!(err.contains("shard-00002.bin") && err.contains("bytes"), "{err}");
    // A failing fetch is reported with the shard's name.
    let err = ShardReader::new(&m, |_, _: &ShardInfo| Err::<Vec<u8>, _>("offline")).next().unwrap().unwrap_err().to_string();
    assert_eq!(err, "shard `shard-00000.bin`: offline");
}

#[test]
fn f16_overflow_is_an_error_not_a_clamp() {
    let ok = vec![(Component::Unet, "conv_in.bias", vec![4], vec![65504.0, -65519.0, f32::INFINITY, 1.0])];
    let (m, shards) = convert(&ok, DtypePolicy::F16, 1024).unwrap();
    assert_eq!(read_all(&m, &shards).unwrap()[0].1, vec![65504.0, -65504.0, f32::INFINITY, 1.0]);
    let big = vec![(Component::Unet, "conv_in.bias", vec![3], vec![1.0, -70000.0, 2.0])];
    match convert(&big, DtypePolicy::F16, 1024) {
        Err(Error::F16Overflow { key, value }) => assert_eq!((key.as_str(), value), ("conv_in.bias", -70000.0)),
        other => panic!("expected F16Overflow, got {other:?}"),
    }
    // f32 keeps it.
    assert!(convert(&big, DtypePolicy::F32, 1024).is_ok());
}

#[test]
fn q8_rule_and_per_row_error_bound() {
    let q = |p: &str, s: &[usize]| encoding_for(DtypePolicy::Q8, p, s, Q8_MIN_ELEMENTS);
    assert_eq!(q("down_blocks.0.resnets.0.conv1.weight", &[320, 320, 3, 3]), Encoding::Q8);
    assert_eq!(q("time_embedding.linear_1.weight", &[1280, 320]), Encoding::Q8);
    assert_eq!(q("decoder.mid_block.attentions.0.to_q.weight", &[512, 512]), Encoding::Q8);
    assert_eq!(q("conv_out.weight", &[4, 320, 3, 3]), Encoding::Q8);
    assert_eq!(q("text_model.embeddings.token_embedding.weight", &[49408, 768]), Encoding::Q8, "one scale per token row");
    assert_eq!(q("text_model.embeddings.position_embedding.weight", &[77, 768]), Encoding::F16);
    assert_eq!(q("conv_in.bias", &[320]), Encoding::F16);
    assert_eq!(q("norm1.weight", &[320]), Encoding::F16);
    assert_eq!(q("quant_conv.weight", &[8, 8, 1, 1]), Encoding::F16, "under 4096 elements");
    assert_eq!(encoding_for(DtypePolicy::Q8, "quant_conv.weight", &[8, 8, 1, 1], 64), Encoding::Q8, "a smaller threshold");
    assert_eq!(encoding_for(DtypePolicy::F16, "conv_out.weight", &[4, 320, 3, 3], Q8_MIN_ELEMENTS), Encoding::F16);

    // Rows of very different magnitudes, one all-zero row, outliers.
    let (rows, cols) = (24, 300);
    let mut v = Vec::new();
    for r in 0..rows {
        let a = if r == 5 { 0.0 } else { 10f32.powi(r as i32 % 7 - 4) };
        let mut row = values(cols, 100 + r as u64, a);
        if r % 3 == 0 {
            row[7] = 9.0 * a;
        }
        v.extend(row);
    }
    let tensors = vec![(Component::Unet, "mid_block.attentions.0.proj_in.weight", vec![rows, cols], v.clone())];
    let (m, shards) = convert(&tensors, DtypePolicy::Q8, 2048).unwrap();
    let t = &m.tensors[0];
    assert_eq!((t.dtype, t.q8, t.bytes), (Encoding::Q8, Some(Q8Layout { rows, cols }), (4 * rows + rows * cols) as u64));
    assert!(t.pieces.len() > 1, "split across 2 KiB shards");
    let got = &read_all(&m, &shards).unwrap()[0].1;
    for r in 0..rows {
        let (want, have) = (&v[r * cols..(r + 1) * cols], &got[r * cols..(r + 1) * cols]);
        let max = want.iter().fold(0f32, |m, x| m.max(x.abs()));
        let bound = max / 254.0 * (1.0 + 1e-5);
        let err = want.iter().zip(have).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
        assert!(err <= bound, "row {r}: error {err} > bound {bound}");
        let top = have.iter().fold(0f32, |m, x| m.max(x.abs()));
        assert!((top - max).abs() <= 1e-6 * max, "row {r}: the row maximum survives ({top} vs {max})");
    }
    // Non-finite values cannot be quantized.
    let nan = vec![(Component::Unet, "mid_block.attentions.0.proj_in.weight", vec![64, 64], [vec![f32::NAN], vec![0.0; 4095]].concat())];
    let err = convert(&nan, DtypePolicy::Q8, 2048).unwrap_err().to_string();
    assert!(err.contains("row 0") && err.contains("finite"), "{err}");
}

#[test]
fn bad_manifests_and_writer_misuse_are_typed_errors() {
    let (m, _) = convert(&sample(), DtypePolicy::F16, 1024).unwrap();
    let tamper = |f: &dyn Fn(&mut Manifest)| {
        let mut t = m.clone();
        f(&mut t);
        Manifest::from_json(&t.to_json()).unwrap_err().to_string()
    };
    assert!(tamper(&|t| t.version = 2).contains("version 2"));
    assert!(tamper(&|t| t.format = "x".into()).contains("format"));
    assert!(tamper(&|t| t.shards[0].file = "../etc/passwd".into()).contains("plain file name"));
    assert!(tamper(&|t| t.tensors[0].pieces[0].offset = 1 << 40).contains("outside shard"));
    assert!(tamper(&|t| t.tensors[1].shape = vec![33]).contains("bytes"));
    assert!(tamper(&|t| t.total_bytes += 1).contains("total_bytes"));
    assert!(Manifest::from_json(b"{\"not\": 1}").unwrap_err().to_string().contains("manifest"));
    assert!(m.check_config(&SdConfig::v1_5()).unwrap_err().to_string().contains("`tiny`"));
    assert!(m.check_config(&SdConfig::tiny()).is_ok());

    assert!(convert(&sample(), DtypePolicy::F16, 1000).unwrap_err().to_string().contains("multiple of 16"));
    let mut dup = sample();
    dup.push(dup[0].clone());
    assert!(convert(&dup, DtypePolicy::F16, 1024).unwrap_err().to_string().contains("added twice"));
    let wrong = vec![(Component::Unet, "conv_in.bias", vec![5], vec![0.0; 4])];
    assert!(convert(&wrong, DtypePolicy::F16, 1024).unwrap_err().to_string().contains("4 values for shape [5]"));
    assert_eq!("q8".parse::<DtypePolicy>().unwrap(), DtypePolicy::Q8);
    assert!("int4".parse::<DtypePolicy>().unwrap_err().to_string().contains("f16, q8 or f32"));
    // A failing emit stops the writer with the shard's name.
    let mut w = Writer::new("tiny", &SdConfig::tiny(), DtypePolicy::F32, 1024, |_: &ShardInfo, _| Err("disk full")).unwrap();
    let err = w.add(Component::Unet, "x.weight", &[600], Source::F32(&[0.0; 600])).unwrap_err().to_string();
    assert_eq!(err, "shard `shard-00000.bin`: disk full");
}

#[test]
fn f16_and_bf16_sources_convert_without_a_float_detour_where_exact() {
    let vals = [0.5f32, -1.25, 3.0e-5, 1000.0];
    let f16: Vec<u8> = vals.iter().flat_map(|&x| half::f16::from_f32(x).to_le_bytes()).collect();
    let bf16: Vec<u8> = vals.iter().flat_map(|&x| half::bf16::from_f32(x).to_le_bytes()).collect();
    let mut shards = Vec::new();
    let mut w = Writer::new("tiny", &SdConfig::tiny(), DtypePolicy::F16, 1024, |_: &ShardInfo, b| {
        shards.push(b);
        Ok::<(), Infallible>(())
    })
    .unwrap();
    w.add(Component::Unet, "a.bias", &[4], Source::Bytes { dtype: safetensors::Dtype::F16, data: &f16 }).unwrap();
    w.add(Component::Unet, "b.bias", &[4], Source::Bytes { dtype: safetensors::Dtype::BF16, data: &bf16 }).unwrap();
    let err = w.add(Component::Unet, "c.bias", &[2], Source::Bytes { dtype: safetensors::Dtype::I64, data: &[0; 16] }).unwrap_err();
    assert!(matches!(err, Error::UnsupportedDtype { .. }), "{err}");
    let m = w.finish().unwrap();
    assert_eq!(&shards[0][..8], &f16[..], "F16 is copied byte for byte");
    let got = read_all(&m, &shards).unwrap();
    let bf: Vec<f32> = vals.iter().map(|&x| half::f16::from_f32(half::bf16::from_f32(x).to_f32()).to_f32()).collect();
    assert_eq!(got[1].1, bf);
}
