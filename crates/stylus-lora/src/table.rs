//! The module table LoRA keys are resolved against, built from `stylus_sd::sd_params` — by lookup,
//! never by rewriting `_` into `.` (ambiguous: `to_out_0`, `ff_net_0_proj`). Same approach as
//! A1111/ComfyUI (NOTES §5.3): enumerate the Linear/Conv2d modules of UNet and text encoder, name
//! each `lora_unet_` / `lora_te_` + path with `.`→`_`, plus the ldm spelling of UNet modules
//! (`lora_unet_input_blocks_4_1_proj_in`), and refuse any name that would denote two modules.

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use stylus_sd::{sd_params, Component, SdConfig};

use crate::Error;

/// A LoRA-targetable module: component + diffusers module path (the weight is `path + ".weight"`;
/// text-encoder paths carry the `text_model.` prefix). Displays as `unet.<path>` /
/// `text_encoder.<path>`, the spelling of diffusers/PEFT files.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ModuleKey {
    pub component: Component,
    pub path: String,
}

impl ModuleKey {
    pub fn new(component: Component, path: impl Into<String>) -> Self {
        ModuleKey { component, path: path.into() }
    }
    /// The parameter path of the module's weight (`ParamSpec::path`).
    pub fn weight_path(&self) -> String {
        format!("{}.weight", self.path)
    }
}

impl fmt::Display for ModuleKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.component.dir(), self.path)
    }
}

impl serde::Serialize for ModuleKey {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// What the table knows about a module.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModuleInfo {
    /// Shape of the module's weight (`[out, in]` or `[out, in, kh, kw]`).
    pub shape: Vec<usize>,
    /// The weight's key in an original single-file checkpoint.
    pub ldm_key: String,
}

/// Kohya prefix of a component's names.
pub(crate) fn kohya_prefix(c: Component) -> &'static str {
    match c {
        Component::TextEncoder => "lora_te_",
        _ => "lora_unet_",
    }
}

/// Every Linear/Conv2d module of the UNet and text encoder for one config, with kohya names.
#[derive(Debug, Clone)]
pub struct ModuleTable {
    modules: BTreeMap<ModuleKey, ModuleInfo>,
    kohya: HashMap<String, ModuleKey>,
    cross_attention_dim: usize,
    text_hidden: usize,
}

impl ModuleTable {
    /// Builds the table; fails if two modules would share a kohya name (SD1.5 has no collision).
    pub fn new(cfg: &SdConfig) -> Result<Self, Error> {
        let mut modules = BTreeMap::new();
        let mut kohya: HashMap<String, ModuleKey> = HashMap::new();
        for spec in sd_params(cfg) {
            let is_module_weight = spec.component != Component::Vae
                && matches!(spec.shape.len(), 2 | 4)
                && !spec.path.starts_with("text_model.embeddings.");
            let Some(path) = spec.path.strip_suffix(".weight") else { continue };
            if !is_module_weight {
                continue;
            }
            let key = ModuleKey::new(spec.component, path);
            let prefix = kohya_prefix(spec.component);
            let mut names = vec![format!("{prefix}{}", path.replace('.', "_"))];
            let ldm_module = spec.ldm_key.strip_prefix(spec.component.ldm_prefix()).and_then(|k| k.strip_suffix(".weight"));
            if let Some(l) = ldm_module {
                names.push(format!("{prefix}{}", l.replace('.', "_")));
            }
            for name in names {
                if let Some(prev) = kohya.get(&name) {
                    if *prev != key {
                        return Err(Error::NameCollision { name, a: prev.to_string(), b: key.to_string() });
                    }
                }
                kohya.insert(name, key.clone());
            }
            modules.insert(key, ModuleInfo { shape: spec.shape.clone(), ldm_key: spec.ldm_key.clone() });
        }
        Ok(ModuleTable {
            modules,
            kohya,
            cross_attention_dim: cfg.unet.cross_attention_dim,
            text_hidden: cfg.text.hidden_size,
        })
    }

    /// Number of modules.
    pub fn len(&self) -> usize {
        self.modules.len()
    }
    pub fn is_empty(&self) -> bool {
        self.modules.is_empty()
    }
    /// Number of distinct kohya names (diffusers and ldm spellings).
    pub fn kohya_name_count(&self) -> usize {
        self.kohya.len()
    }
    /// The module's info, if the model has it.
    pub fn get(&self, key: &ModuleKey) -> Option<&ModuleInfo> {
        self.modules.get(key)
    }
    /// All modules in path order.
    pub fn iter(&self) -> impl Iterator<Item = (&ModuleKey, &ModuleInfo)> {
        self.modules.iter()
    }
    /// Looks up a kohya module name (`lora_unet_…` / `lora_te_…`, without suffix).
    pub fn by_kohya(&self, name: &str) -> Option<&ModuleKey> {
        self.kohya.get(name)
    }
    /// Looks up a dotted module path; text-encoder paths with or without `text_model.`.
    pub fn by_path(&self, component: Component, path: &str) -> Option<ModuleKey> {
        let key = ModuleKey::new(component, path);
        if self.modules.contains_key(&key) {
            return Some(key);
        }
        if component == Component::TextEncoder {
            let alt = ModuleKey::new(component, format!("text_model.{path}"));
            if self.modules.contains_key(&alt) {
                return Some(alt);
            }
        }
        None
    }
    /// Cross-attention (context) width of the UNet: 768 for SD1.x.
    pub fn cross_attention_dim(&self) -> usize {
        self.cross_attention_dim
    }
    /// Hidden width of the text encoder: 768 for SD1.x.
    pub fn text_hidden(&self) -> usize {
        self.text_hidden
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// NOTES §5.3: SD1.5 has 354 Linear/Conv2d modules in UNet + text encoder, no name collision.
    #[test]
    fn sd15_has_354_modules_and_unique_kohya_names() {
        let t = ModuleTable::new(&SdConfig::v1_5()).unwrap();
        assert_eq!(t.len(), 354);
        let te = t.iter().filter(|(k, _)| k.component == Component::TextEncoder).count();
        assert_eq!(te, 72);
        // Every module has its diffusers name; UNet modules whose ldm spelling differs add one more.
        assert!(t.kohya_name_count() > t.len());
        let k = t.by_kohya("lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_out_0").unwrap();
        assert_eq!(k.path, "down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_out.0");
        let k = t.by_kohya("lora_unet_input_blocks_4_1_proj_in").unwrap();
        assert_eq!(k.path, "down_blocks.1.attentions.0.proj_in");
        let k = t.by_kohya("lora_unet_middle_block_1_transformer_blocks_0_ff_net_0_proj").unwrap();
        assert_eq!(k.path, "mid_block.attentions.0.transformer_blocks.0.ff.net.0.proj");
        let k = t.by_kohya("lora_unet_output_blocks_2_1_conv").unwrap();
        assert_eq!(k.path, "up_blocks.0.upsamplers.0.conv");
        let k = t.by_kohya("lora_te_text_model_encoder_layers_11_mlp_fc2").unwrap();
        assert_eq!((k.component, k.path.as_str()), (Component::TextEncoder, "text_model.encoder.layers.11.mlp.fc2"));
        assert!(t.by_kohya("lora_te_text_model_embeddings_token_embedding").is_none());
        assert!(t.by_path(Component::TextEncoder, "encoder.layers.0.self_attn.q_proj").is_some());
        assert_eq!(t.get(k).unwrap().shape, vec![768, 3072]);
    }

    #[test]
    fn tiny_table_builds() {
        let t = ModuleTable::new(&SdConfig::tiny()).unwrap();
        assert_eq!(t.len(), 282 + 18);
        assert_eq!((t.cross_attention_dim(), t.text_hidden()), (8, 8));
    }
}
