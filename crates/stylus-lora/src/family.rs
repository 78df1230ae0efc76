//! Which base model a LoRA was trained for, from tell-tale keys, shapes and kohya metadata:
//! SDXL has two text encoders (`lora_te1_`/`lora_te2_`, `text_encoder_2.`), several transformer
//! blocks per attention (`transformer_blocks_1…`), `add_embedding`/`label_emb` and 2048-wide
//! cross-attention (1280 for its second encoder); SD2.x has 1024-wide cross-attention and text
//! encoder and linear `proj_in/proj_out`; SD1.x has 768 (NOTES §5, diffusers model configs).

use std::collections::BTreeMap;
use std::fmt;

use stylus_sd::Component;

use crate::table::{ModuleKey, ModuleTable};
use crate::Error;

/// A Stable Diffusion model family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum BaseFamily {
    Sd1,
    Sd2,
    Sdxl,
    Unknown,
}

impl fmt::Display for BaseFamily {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BaseFamily::Sd1 => "SD1.x",
            BaseFamily::Sd2 => "SD2.x",
            BaseFamily::Sdxl => "SDXL",
            BaseFamily::Unknown => "an unknown model",
        })
    }
}

/// A guess of the base model with the evidence.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct BaseGuess {
    pub family: BaseFamily,
    pub reason: String,
}

/// Family of a conditioning width (cross-attention context / text-encoder hidden size).
pub(crate) fn width_family(width: usize) -> Option<BaseFamily> {
    match width {
        768 => Some(BaseFamily::Sd1),
        1024 => Some(BaseFamily::Sd2),
        1280 | 2048 => Some(BaseFamily::Sdxl),
        _ => None,
    }
}

/// Tell-tales in a module name that the table does not know.
pub(crate) fn unmatched_name_telltale(name: &str) -> Option<(BaseFamily, String)> {
    if name.contains("add_embedding") || name.contains("label_emb") {
        return Some((BaseFamily::Sdxl, format!("`{name}` targets the SDXL size/time embedding")));
    }
    for sep in ["transformer_blocks_", "transformer_blocks."] {
        let mut rest = name;
        while let Some(i) = rest.find(sep) {
            rest = rest.get(i + sep.len()..).unwrap_or("");
            let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
            if digits.parse::<u32>().is_ok_and(|n| n >= 1) {
                return Some((
                    BaseFamily::Sdxl,
                    format!("`{name}`: several transformer blocks per attention (SD1.x/SD2.x have one)"),
                ));
            }
        }
    }
    None
}

/// Explains a shape mismatch on a known module by the base model it points to, if any.
/// `in_width`: the input width the adapter's down factor implies; `linear_on_conv`: a 2-D factor
/// given for a 1×1 conv module (linear projection).
pub(crate) fn shape_mismatch(
    table: &ModuleTable,
    module: &ModuleKey,
    in_width: Option<usize>,
    linear_on_conv: bool,
    detail: String,
) -> Error {
    let path = module.path.as_str();
    let cross = module.component == Component::Unet && (path.ends_with("attn2.to_k") || path.ends_with("attn2.to_v"));
    let te_in = module.component == Component::TextEncoder && !path.ends_with("mlp.fc2");
    if let Some(w) = in_width {
        let (expected, what) = if cross {
            (table.cross_attention_dim(), "cross-attention context")
        } else if te_in {
            (table.text_hidden(), "text-encoder hidden")
        } else {
            (0, "")
        };
        if expected != 0 && w != expected {
            if let Some(family) = width_family(w) {
                let reason = format!("`{module}` has {what} width {w}; this model's is {expected}");
                return Error::WrongBaseModel { family, reason };
            }
        }
    }
    if linear_on_conv && (path.ends_with("proj_in") || path.ends_with("proj_out")) {
        let reason = format!("`{module}` is a linear projection (use_linear_projection, as in SD2.x and SDXL); SD1.x uses 1×1 convs");
        return Error::WrongBaseModel { family: BaseFamily::Sd2, reason };
    }
    Error::ShapeMismatch { module: module.to_string(), detail }
}

/// What kohya/modelspec metadata says about the base model.
pub(crate) fn metadata_hint(meta: &BTreeMap<String, String>) -> Option<(BaseFamily, String)> {
    if let Some(v) = meta.get("ss_base_model_version") {
        let fam = if v.starts_with("sdxl") {
            BaseFamily::Sdxl
        } else if v.starts_with("sd_v2") {
            BaseFamily::Sd2
        } else if v.starts_with("sd_v1") {
            BaseFamily::Sd1
        } else {
            BaseFamily::Unknown
        };
        return Some((fam, format!("ss_base_model_version = {v}")));
    }
    if meta.get("ss_v2").is_some_and(|v| v.eq_ignore_ascii_case("true")) {
        return Some((BaseFamily::Sd2, "ss_v2 = True".into()));
    }
    if let Some(v) = meta.get("modelspec.architecture") {
        let fam = if v.contains("stable-diffusion-xl") {
            BaseFamily::Sdxl
        } else if v.contains("stable-diffusion-v2") {
            BaseFamily::Sd2
        } else if v.contains("stable-diffusion-v1") {
            BaseFamily::Sd1
        } else {
            BaseFamily::Unknown
        };
        return Some((fam, format!("modelspec.architecture = {v}")));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use stylus_sd::SdConfig;

    #[test]
    fn name_telltales() {
        assert!(unmatched_name_telltale("lora_unet_input_blocks_7_1_transformer_blocks_1_attn1_to_q").is_some());
        assert!(unmatched_name_telltale("down_blocks.1.attentions.0.transformer_blocks.3.attn1.to_q").is_some());
        assert!(unmatched_name_telltale("lora_unet_add_embedding_linear_1").is_some());
        assert!(unmatched_name_telltale("lora_unet_down_blocks_9_attentions_0_transformer_blocks_0_attn1_to_q").is_none());
        assert!(unmatched_name_telltale("transformer_blocks_").is_none());
    }

    #[test]
    fn width_mismatch_names_the_family() {
        let t = ModuleTable::new(&SdConfig::v1_5()).unwrap();
        let m = ModuleKey::new(Component::Unet, "down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k");
        let e = shape_mismatch(&t, &m, Some(1024), false, String::new());
        assert!(matches!(e, Error::WrongBaseModel { family: BaseFamily::Sd2, .. }), "{e}");
        let e = shape_mismatch(&t, &m, Some(2048), false, String::new());
        assert!(matches!(e, Error::WrongBaseModel { family: BaseFamily::Sdxl, .. }), "{e}");
        let e = shape_mismatch(&t, &m, Some(77), false, "x".into());
        assert!(matches!(e, Error::ShapeMismatch { .. }));
        let m = ModuleKey::new(Component::Unet, "down_blocks.0.attentions.0.proj_in");
        let e = shape_mismatch(&t, &m, Some(320), true, String::new());
        assert!(matches!(e, Error::WrongBaseModel { family: BaseFamily::Sd2, .. }));
    }

    #[test]
    fn metadata_hints() {
        let mut m = BTreeMap::new();
        m.insert("ss_base_model_version".to_string(), "sdxl_base_v1-0".to_string());
        assert_eq!(metadata_hint(&m).unwrap().0, BaseFamily::Sdxl);
        m.clear();
        m.insert("ss_v2".into(), "True".into());
        assert_eq!(metadata_hint(&m).unwrap().0, BaseFamily::Sd2);
    }
}
