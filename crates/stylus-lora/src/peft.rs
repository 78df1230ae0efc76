//! diffusers/PEFT adapter metadata: the JSON in the safetensors header's
//! `__metadata__.lora_adapter_metadata` (`"unet.r"`, `"unet.lora_alpha"`, `"unet.use_rslora"`,
//! `"unet.rank_pattern"`, `"unet.alpha_pattern"`, same for `text_encoder.`; the nested form
//! `{"unet": {...}}` is accepted too). Scale per module (peft `LoraLayer.update_layer`):
//! `alpha / r`, or `alpha / √r` with rsLoRA, where `r` and `alpha` come from the pattern maps when a
//! pattern matches the module, else from the top-level values; no alpha anywhere ⇒ alpha = r
//! (NOTES §5.3). Patterns are matched as peft does for plain names (`(.*\.)?<pattern>$`), taking
//! regex metacharacters literally: the exact path first, else the longest pattern that is a
//! `.`-aligned suffix of the path.

use std::collections::BTreeMap;

use serde_json::{Map, Value};
use stylus_sd::Component;

use crate::Error;

/// The adapter config of one component.
#[derive(Debug, Default, Clone, PartialEq)]
pub(crate) struct PeftConfig {
    pub r: Option<f64>,
    pub alpha: Option<f64>,
    pub rslora: bool,
    pub rank_pattern: Vec<(String, f64)>,
    pub alpha_pattern: Vec<(String, f64)>,
}

/// Configs of the UNet and the text encoder, when the file has them.
#[derive(Debug, Default, Clone, PartialEq)]
pub(crate) struct PeftMeta {
    pub unet: Option<PeftConfig>,
    pub text_encoder: Option<PeftConfig>,
}

impl PeftMeta {
    pub fn for_component(&self, c: Component) -> Option<&PeftConfig> {
        match c {
            Component::Unet => self.unet.as_ref(),
            Component::TextEncoder => self.text_encoder.as_ref(),
            Component::Vae => None,
        }
    }
}

fn bad(msg: String) -> Error {
    Error::BadMetadata(format!("lora_adapter_metadata: {msg}"))
}

fn number(v: &Value, what: &str) -> Result<f64, Error> {
    v.as_f64().filter(|x| x.is_finite()).ok_or_else(|| bad(format!("`{what}` is not a finite number")))
}

fn pattern(v: &Value, what: &str) -> Result<Vec<(String, f64)>, Error> {
    let obj = v.as_object().ok_or_else(|| bad(format!("`{what}` is not an object")))?;
    obj.iter().map(|(k, v)| Ok((k.clone(), number(v, what)?))).collect()
}

/// Reads one component's config from its field map (keys without the component prefix).
fn config(fields: &Map<String, Value>, prefix: &str) -> Result<Option<PeftConfig>, Error> {
    if fields.is_empty() {
        return Ok(None);
    }
    let mut c = PeftConfig::default();
    for (k, v) in fields {
        let what = format!("{prefix}.{k}");
        match k.as_str() {
            "r" => c.r = Some(number(v, &what)?),
            "lora_alpha" => c.alpha = Some(number(v, &what)?),
            "use_rslora" => c.rslora = v.as_bool().ok_or_else(|| bad(format!("`{what}` is not a boolean")))?,
            "rank_pattern" => c.rank_pattern = pattern(v, &what)?,
            "alpha_pattern" => c.alpha_pattern = pattern(v, &what)?,
            _ => {}
        }
    }
    Ok(Some(c))
}

/// Parses the header metadata; `Ok(default)` when the file has no `lora_adapter_metadata`.
pub(crate) fn parse(meta: &BTreeMap<String, String>) -> Result<PeftMeta, Error> {
    let Some(raw) = meta.get("lora_adapter_metadata") else {
        return Ok(PeftMeta::default());
    };
    let v: Value = serde_json::from_str(raw).map_err(|e| bad(format!("not JSON ({e})")))?;
    let obj = v.as_object().ok_or_else(|| bad("not a JSON object".into()))?;
    let mut out = PeftMeta::default();
    for (prefix, slot) in [("unet", &mut out.unet), ("text_encoder", &mut out.text_encoder)] {
        let mut fields = Map::new();
        if let Some(nested) = obj.get(prefix).and_then(Value::as_object) {
            fields.extend(nested.iter().map(|(k, v)| (k.clone(), v.clone())));
        }
        let dotted = format!("{prefix}.");
        for (k, v) in obj {
            if let Some(field) = k.strip_prefix(&dotted) {
                fields.insert(field.to_string(), v.clone());
            }
        }
        *slot = config(&fields, prefix)?;
    }
    Ok(out)
}

/// The pattern value for `path`: exact match first, else the longest `.`-aligned suffix match.
fn lookup(patterns: &[(String, f64)], path: &str) -> Option<f64> {
    if let Some((_, v)) = patterns.iter().find(|(p, _)| p == path) {
        return Some(*v);
    }
    patterns
        .iter()
        .filter(|(p, _)| !p.is_empty() && path.strip_suffix(p.as_str()).is_some_and(|head| head.ends_with('.')))
        .max_by_key(|(p, _)| p.len())
        .map(|(_, v)| *v)
}

impl PeftConfig {
    /// `(r, alpha)` the config declares for a module path (either may be absent).
    pub fn resolve(&self, path: &str) -> (Option<f64>, Option<f64>) {
        let r = lookup(&self.rank_pattern, path).or(self.r);
        let alpha = lookup(&self.alpha_pattern, path).or(self.alpha);
        (r, alpha)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(json: &str) -> BTreeMap<String, String> {
        BTreeMap::from([("lora_adapter_metadata".to_string(), json.to_string())])
    }

    #[test]
    fn flat_keys_as_diffusers_writes_them() {
        let m = parse(&meta(r#"{"unet.r": 4, "unet.lora_alpha": 8.0, "text_encoder.r": 2, "unet.target_modules": ["to_q"]}"#)).unwrap();
        let u = m.unet.unwrap();
        assert_eq!((u.r, u.alpha, u.rslora), (Some(4.0), Some(8.0), false));
        assert_eq!(m.text_encoder.unwrap().resolve("text_model.encoder.layers.0.self_attn.q_proj"), (Some(2.0), None));
    }

    #[test]
    fn patterns_and_rslora() {
        let m = parse(&meta(
            r#"{"unet": {"r": 4, "lora_alpha": 4, "use_rslora": true,
                "rank_pattern": {"attn1.to_q": 8, "down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q": 16},
                "alpha_pattern": {"to_q": 2}}}"#,
        ))
        .unwrap();
        let u = m.unet.unwrap();
        assert!(u.rslora);
        assert_eq!(u.resolve("down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q"), (Some(16.0), Some(2.0)));
        assert_eq!(u.resolve("mid_block.attentions.0.transformer_blocks.0.attn1.to_q"), (Some(8.0), Some(2.0)));
        assert_eq!(u.resolve("mid_block.attentions.0.transformer_blocks.0.attn2.to_q"), (Some(4.0), Some(2.0)));
        assert_eq!(u.resolve("mid_block.attentions.0.transformer_blocks.0.attn1.xto_q"), (Some(4.0), Some(4.0)));
    }

    #[test]
    fn malformed_is_a_typed_error() {
        assert!(matches!(parse(&meta("{")), Err(Error::BadMetadata(_))));
        assert!(matches!(parse(&meta(r#"{"unet.r": "four"}"#)), Err(Error::BadMetadata(_))));
        assert!(matches!(parse(&meta("[1]")), Err(Error::BadMetadata(_))));
        assert_eq!(parse(&BTreeMap::new()).unwrap(), PeftMeta::default());
    }
}
