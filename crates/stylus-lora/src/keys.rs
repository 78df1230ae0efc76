//! Classifies one tensor key of a LoRA file: naming scheme, adapter part, and the module name to
//! look up. Spellings from NOTES §5.3: kohya-ss/A1111 (`lora_unet_…`/`lora_te_…` +
//! `.lora_down.weight`/`.lora_up.weight`/`.alpha`), LyCORIS (`hada_*`, `lokr_*`), diffusers/PEFT
//! (`unet.`/`text_encoder.` + path + `.lora_A/B.weight`) and the legacy diffusers spellings
//! (`.lora.down/up.weight`, `.lora_linear_layer.down/up.weight`,
//! `.processor.to_q_lora.down.weight`; no prefix = UNet). Only the suffix is split off here; the
//! module name itself is resolved by table lookup (`table.rs`).

use stylus_sd::Component;

use crate::family::BaseFamily;

/// How a file names its modules and parts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum Naming {
    Kohya,
    Peft,
    DiffusersLegacy,
    AttnProcessor,
    /// `.alpha` in a dotted file: belongs to whatever spelling the module's weights use.
    DottedAlpha,
}

/// Which tensor of an adapter a key holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum Part {
    Down,
    Up,
    Mid,
    Alpha,
    HadaW1A,
    HadaW1B,
    HadaW2A,
    HadaW2B,
    HadaT1,
    HadaT2,
    LokrW1,
    LokrW1A,
    LokrW1B,
    LokrW2,
    LokrW2A,
    LokrW2B,
    LokrT2,
}

/// The module a key names, before lookup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Target<'k> {
    /// A kohya name without suffix (`lora_unet_…`).
    Kohya(&'k str),
    /// A dotted module path in a component.
    Dotted(Component, String),
}

/// Result of classifying a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum KeyClass<'k> {
    Part { naming: Naming, part: Part, target: Target<'k> },
    /// Not a tensor of an adapter kind we know (reported as unmatched with this reason).
    Unknown(&'static str),
    /// A known adapter kind that this crate does not apply (reported as unmatched).
    Unsupported(&'static str),
    /// A feature that would be applied wrongly if ignored: the file is refused.
    Refused(&'static str),
    /// A key only another model family has.
    Family(BaseFamily, String),
}

const KOHYA_PARTS: &[(&str, Part)] = &[
    ("lora_down.weight", Part::Down),
    ("lora_up.weight", Part::Up),
    ("lora_mid.weight", Part::Mid),
    ("alpha", Part::Alpha),
    ("hada_w1_a", Part::HadaW1A),
    ("hada_w1_b", Part::HadaW1B),
    ("hada_w2_a", Part::HadaW2A),
    ("hada_w2_b", Part::HadaW2B),
    ("hada_t1", Part::HadaT1),
    ("hada_t2", Part::HadaT2),
    ("lokr_w1", Part::LokrW1),
    ("lokr_w1_a", Part::LokrW1A),
    ("lokr_w1_b", Part::LokrW1B),
    ("lokr_w2", Part::LokrW2),
    ("lokr_w2_a", Part::LokrW2A),
    ("lokr_w2_b", Part::LokrW2B),
    ("lokr_t2", Part::LokrT2),
];

/// LyCORIS kinds we recognise but do not apply.
const KOHYA_UNSUPPORTED: &[&str] =
    &["diff", "diff_b", "oft_blocks", "oft_diag", "a1.weight", "a2.weight", "b1.weight", "b2.weight", "w_norm", "b_norm"];

const DOTTED_PARTS: &[(&str, Naming, Part)] = &[
    (".lora_A.weight", Naming::Peft, Part::Down),
    (".lora_B.weight", Naming::Peft, Part::Up),
    (".lora.down.weight", Naming::DiffusersLegacy, Part::Down),
    (".lora.up.weight", Naming::DiffusersLegacy, Part::Up),
    (".lora_linear_layer.down.weight", Naming::DiffusersLegacy, Part::Down),
    (".lora_linear_layer.up.weight", Naming::DiffusersLegacy, Part::Up),
    (".alpha", Naming::DottedAlpha, Part::Alpha),
];

/// diffusers ≤ 0.14 attention-processor parts: `<attn>.processor.<proj>_lora.<down|up>.weight`.
const PROCESSOR_PROJ: &[(&str, &str)] =
    &[("to_q_lora", "to_q"), ("to_k_lora", "to_k"), ("to_v_lora", "to_v"), ("to_out_lora", "to_out.0")];

/// Classifies one key.
pub(crate) fn classify(key: &str) -> KeyClass<'_> {
    if key.starts_with("lora_te1_") || key.starts_with("lora_te2_") {
        return KeyClass::Family(BaseFamily::Sdxl, format!("two text encoders (`lora_te1_`/`lora_te2_` keys such as `{key}`)"));
    }
    if key.starts_with("lora_unet_") || key.starts_with("lora_te_") {
        return classify_kohya(key);
    }
    classify_dotted(key)
}

fn classify_kohya(key: &str) -> KeyClass<'_> {
    let Some((name, suffix)) = key.split_once('.') else {
        return KeyClass::Unknown("kohya key without a `.` suffix");
    };
    if let Some(&(_, part)) = KOHYA_PARTS.iter().find(|(s, _)| *s == suffix) {
        return KeyClass::Part { naming: Naming::Kohya, part, target: Target::Kohya(name) };
    }
    if suffix == "dora_scale" {
        return KeyClass::Refused("DoRA (`dora_scale`)");
    }
    if KOHYA_UNSUPPORTED.contains(&suffix) {
        return KeyClass::Unsupported("LyCORIS full/OFT/GLoRA/norm adapter (not applied)");
    }
    KeyClass::Unknown("unknown kohya suffix")
}

fn classify_dotted(key: &str) -> KeyClass<'_> {
    if key.starts_with("text_encoder_2.") {
        return KeyClass::Family(BaseFamily::Sdxl, format!("a second text encoder (`{key}`)"));
    }
    let (component, rest) = if let Some(r) = key.strip_prefix("unet.") {
        (Component::Unet, r)
    } else if let Some(r) = key.strip_prefix("text_encoder.") {
        (Component::TextEncoder, r)
    } else {
        (Component::Unet, key)
    };
    if let Some((attn, proc_part)) = rest.split_once(".processor.") {
        for (p, proj) in PROCESSOR_PROJ {
            let part = match proc_part.strip_prefix(p) {
                Some(".down.weight") => Part::Down,
                Some(".up.weight") => Part::Up,
                _ => continue,
            };
            let path = format!("{attn}.{proj}");
            return KeyClass::Part { naming: Naming::AttnProcessor, part, target: Target::Dotted(component, path) };
        }
        return KeyClass::Unknown("unknown attention-processor key");
    }
    for (suffix, naming, part) in DOTTED_PARTS {
        if let Some(path) = rest.strip_suffix(suffix) {
            return KeyClass::Part { naming: *naming, part: *part, target: Target::Dotted(component, path.to_string()) };
        }
    }
    if rest.ends_with(".lora_magnitude_vector") || rest.ends_with(".lora_magnitude_vector.weight") {
        return KeyClass::Refused("DoRA (`lora_magnitude_vector`)");
    }
    KeyClass::Unknown("not a LoRA tensor name this crate knows")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn part(key: &str) -> (Naming, Part, Target<'_>) {
        match classify(key) {
            KeyClass::Part { naming, part, target } => (naming, part, target),
            other => panic!("{key}: {other:?}"),
        }
    }

    #[test]
    fn spellings() {
        let (n, p, t) = part("lora_unet_mid_block_attentions_0_proj_in.lora_down.weight");
        assert_eq!((n, p, t), (Naming::Kohya, Part::Down, Target::Kohya("lora_unet_mid_block_attentions_0_proj_in")));
        assert_eq!(part("lora_te_text_model_encoder_layers_0_mlp_fc1.alpha").1, Part::Alpha);
        assert_eq!(part("lora_unet_x.lokr_w2_b").1, Part::LokrW2B);
        let (n, p, t) = part("text_encoder.text_model.encoder.layers.0.self_attn.k_proj.lora_B.weight");
        assert_eq!((n, p), (Naming::Peft, Part::Up));
        assert_eq!(t, Target::Dotted(Component::TextEncoder, "text_model.encoder.layers.0.self_attn.k_proj".into()));
        let (n, _, t) = part("unet.down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q.lora.down.weight");
        assert_eq!(n, Naming::DiffusersLegacy);
        assert_eq!(t, Target::Dotted(Component::Unet, "down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q".into()));
        assert_eq!(part("text_encoder.text_model.encoder.layers.0.mlp.fc1.lora_linear_layer.up.weight").0, Naming::DiffusersLegacy);
        let (n, p, t) = part("down_blocks.0.attentions.0.transformer_blocks.0.attn1.processor.to_out_lora.up.weight");
        assert_eq!((n, p), (Naming::AttnProcessor, Part::Up));
        assert_eq!(t, Target::Dotted(Component::Unet, "down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_out.0".into()));
    }

    #[test]
    fn refusals_and_unknowns() {
        assert!(matches!(classify("lora_te2_text_model_encoder_layers_0_mlp_fc1.alpha"), KeyClass::Family(BaseFamily::Sdxl, _)));
        assert!(matches!(classify("text_encoder_2.text_model.x.lora_A.weight"), KeyClass::Family(BaseFamily::Sdxl, _)));
        assert!(matches!(classify("lora_unet_x.dora_scale"), KeyClass::Refused(_)));
        assert!(matches!(classify("unet.x.lora_magnitude_vector"), KeyClass::Refused(_)));
        assert!(matches!(classify("lora_unet_x.diff"), KeyClass::Unsupported(_)));
        assert!(matches!(classify("lora_unet_x.bogus"), KeyClass::Unknown(_)));
        assert!(matches!(classify("lora_unet_x"), KeyClass::Unknown(_)));
        assert!(matches!(classify("something.else"), KeyClass::Unknown(_)));
        assert!(matches!(classify("a.processor.to_q_lora.mid.weight"), KeyClass::Unknown(_)));
    }
}
