//! Full-size SD1.5 shapes: a synthetic rank-1 kohya LoCon on every module kohya's LoCon targets
//! (Transformer2DModel, ResnetBlock2D, Down/Upsample2D in the UNet; all CLIP linears) parses
//! against `SdConfig::v1_5()` with NOTES §5.3's counts: 278 UNet modules (50 of them 3×3) + 72 TE.

mod common;

use common::*;
use safetensors::Dtype;
use stylus_lora::{AdapterKind, LoraFile};
use stylus_sd::Component;

#[test]
fn sd15_locon_on_every_kohya_target() {
    let table = sd15_table();
    let mut ts = Vec::new();
    for (k, info) in table.iter() {
        let unet_target = ["down_blocks.", "mid_block.", "up_blocks."].iter().any(|p| k.path.starts_with(p));
        if k.component == Component::Unet && !unet_target {
            continue; // conv_in, conv_out, time_embedding: not LoCon targets
        }
        let prefix = if k.component == Component::Unet { "lora_unet_" } else { "lora_te_" };
        let name = format!("{prefix}{}", k.path.replace('.', "_"));
        let (mut down, mut up) = (vec![1, info.shape[1]], vec![info.shape[0], 1]);
        if info.shape.len() == 4 {
            down.extend(&info.shape[2..]);
            up.extend([1, 1]);
        }
        for (suffix, shape) in [("lora_down.weight", down), ("lora_up.weight", up)] {
            let n: usize = shape.iter().product();
            ts.push(T { name: format!("{name}.{suffix}"), dtype: Dtype::F16, shape, data: vec![0; 2 * n] });
        }
    }
    let f = LoraFile::parse(&write(&ts, None), &table).unwrap();
    let s = f.summary();
    assert_eq!((s.unet_modules, s.text_encoder_modules, s.conv3x3_modules), (278, 72, 50));
    assert_eq!(s.ranks, vec![1]);
    assert!(f.modules().all(|(_, a)| matches!(a.kind, AdapterKind::Lora | AdapterKind::LoCon) && a.scale == 1.0));
    let (k, a) = f.modules().find(|(_, a)| a.kind == AdapterKind::LoCon).unwrap();
    assert_eq!(f.low_rank(k).unwrap().down.shape[2..], a.target_shape[2..]);
}
