//! Fuzz target `parse`: `LoraFile::parse` (or `inspect`, by a flag bit of the first byte) on
//! arbitrary bytes, and on a small valid LoRA (`seeds/`: LoKr, LoHa, LoCon + ss_* metadata, PEFT +
//! adapter metadata, cut from the committed fixtures; chosen by the first byte) patched by the
//! input (3-byte records: position, xor value); whatever parses is composed and merged (NOTES §5.3
//! math). Must never panic, overflow or allocate without bound.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use stylus_lora::{compose, inspect, LoraFile, ModuleTable};
use stylus_sd::SdConfig;

const SEEDS: [&[u8]; 4] = [
    include_bytes!("../seeds/lokr_small.safetensors"),
    include_bytes!("../seeds/loha_small.safetensors"),
    include_bytes!("../seeds/locon_small.safetensors"),
    include_bytes!("../seeds/peft_small.safetensors"),
];

fn table() -> &'static ModuleTable {
    static T: OnceLock<ModuleTable> = OnceLock::new();
    T.get_or_init(|| ModuleTable::new(&SdConfig::tiny()).expect("the tiny table builds"))
}

fn exercise(bytes: &[u8], report: bool) {
    let t = table();
    if report {
        let _ = inspect(bytes, t);
    } else if let Ok(f) = LoraFile::parse(bytes, t) {
        let _ = f.summary();
        if let Ok(sum) = compose(&[(&f, 0.7), (&f, -0.3)]) {
            for (k, d) in sum.iter().take(4) {
                let _ = f.low_rank(k);
                let _ = stylus_lora::merged(&d.data, &d.shape, d);
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&which, patch)) = data.split_first() else { return };
    exercise(data, which & 0x40 != 0);
    let mut b = SEEDS[usize::from(which) % SEEDS.len()].to_vec();
    let len = b.len();
    for rec in patch.chunks_exact(3) {
        let pos = usize::from(u16::from_le_bytes([rec[0], rec[1]]));
        // Bias towards the JSON header (the first ~1.5 KB), where structure lives.
        let pos = if which & 0x80 == 0 { pos % len.min(1536) } else { pos % len };
        b[pos] ^= rec[2];
    }
    if patch.len() % 3 == 1 {
        b.truncate(len - usize::from(patch[patch.len() - 1]) % len.min(64));
    }
    exercise(&b, which & 0x20 != 0);
});
