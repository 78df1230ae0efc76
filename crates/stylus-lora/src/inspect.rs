//! The report behind `stylus lora inspect`: container facts, format, base-model guess with the
//! evidence, kohya metadata and — when the file fits the model — the parsed summary; a refused file
//! still gets a report, with the refusal as `error` (rules: NOTES §5.3, `family.rs`).

use std::collections::BTreeSet;

use serde::Serialize;

use crate::family::{metadata_hint, BaseFamily, BaseGuess};
use crate::file::{open, Format, LoraFile, Summary};
use crate::keys::{classify, KeyClass, Naming, Part};
use crate::meta::{kohya_meta, KohyaMeta};
use crate::table::ModuleTable;
use crate::tensor::{checked_numel, dtype_name};
use crate::Error;

/// What `inspect` found.
#[derive(Debug, Clone, Serialize)]
pub struct Inspection {
    pub bytes: usize,
    pub tensors: usize,
    pub dtypes: Vec<String>,
    /// Main format (from the parse, else from the key spellings); `None` if no key looks like one.
    pub format: Option<Format>,
    pub base: BaseGuess,
    pub kohya: Option<KohyaMeta>,
    /// The parsed summary when the file fits the model.
    pub summary: Option<Summary>,
    /// Why the file does not fit the model, if it does not.
    pub error: Option<String>,
}

/// Format guessed from key spellings alone (for files the parse refuses).
fn format_from_keys<'a>(keys: impl Iterator<Item = (&'a str, &'a [usize])>) -> Option<Format> {
    let mut seen = BTreeSet::new();
    for (key, shape) in keys {
        let KeyClass::Part { naming, part, .. } = classify(key) else { continue };
        let f = match (naming, part) {
            (_, Part::HadaW1A | Part::HadaW1B | Part::HadaW2A | Part::HadaW2B | Part::HadaT1 | Part::HadaT2) => Format::LoHa,
            (_, Part::LokrW1 | Part::LokrW1A | Part::LokrW1B | Part::LokrW2 | Part::LokrW2A | Part::LokrW2B | Part::LokrT2) => {
                Format::LoKr
            }
            (Naming::Kohya, Part::Down) if shape.get(2..).is_some_and(|k| checked_numel(k).is_none_or(|n| n > 1)) => Format::LoCon,
            (Naming::Kohya, _) => Format::Kohya,
            (Naming::Peft, _) => Format::Peft,
            (Naming::DiffusersLegacy, _) => Format::DiffusersLegacy,
            (Naming::AttnProcessor, _) => Format::AttnProcessor,
            (Naming::DottedAlpha, _) => continue,
        };
        seen.insert(f);
    }
    seen.first().copied()
}

/// Inspects a LoRA file against `table`. Fails only when the container itself is unreadable
/// (not safetensors, pickled, over the size limits).
pub fn inspect(bytes: &[u8], table: &ModuleTable) -> Result<Inspection, Error> {
    let c = open(bytes)?;
    let dtypes: BTreeSet<String> = c.tensors.iter().map(|(_, v)| dtype_name(v.dtype())).collect();
    let key_format = format_from_keys(c.tensors.iter().map(|(k, v)| (k.as_str(), v.shape())));
    let kohya = kohya_meta(&c.metadata, 15);
    let hint = metadata_hint(&c.metadata);
    let (summary, error, base) = match LoraFile::parse(bytes, table) {
        Ok(f) => {
            let s = f.summary();
            let mut reason = format!(
                "all {} adapted modules are in this model's SD1.x module table with fitting shapes",
                s.unet_modules + s.text_encoder_modules
            );
            if let Some((fam, why)) = hint.filter(|(fam, _)| *fam != BaseFamily::Sd1) {
                reason.push_str(&format!(" (metadata says {fam}: {why})"));
            }
            (Some(s), None, BaseGuess { family: BaseFamily::Sd1, reason })
        }
        Err(Error::WrongBaseModel { family, reason }) => {
            let msg = Error::WrongBaseModel { family, reason: reason.clone() }.to_string();
            (None, Some(msg), BaseGuess { family, reason })
        }
        Err(e) => {
            let base = match hint {
                Some((family, reason)) => BaseGuess { family, reason: format!("metadata only: {reason}") },
                None => BaseGuess { family: BaseFamily::Unknown, reason: "no tell-tale keys, shapes or metadata".into() },
            };
            (None, Some(e.to_string()), base)
        }
    };
    Ok(Inspection {
        bytes: bytes.len(),
        tensors: c.tensors.len(),
        dtypes: dtypes.into_iter().collect(),
        format: summary.as_ref().map(|s| s.format).or(key_format),
        base,
        kohya,
        summary,
        error,
    })
}
