//! A parsed LoRA file: size-capped, bounds-checked safetensors container, every key classified
//! (`keys.rs`) and resolved by lookup in the module table (`table.rs`), per-module adapters
//! validated (`adapter.rs`), unmatched keys kept by name, other base models refused (`family.rs`).
//! Formats and rules: NOTES §5.3 (kohya-ss, LyCORIS, diffusers/PEFT).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use safetensors::tensor::TensorView;
use safetensors::SafeTensors;

use crate::adapter::{build, Ctx, LowRank, ModuleAdapter, Parts};
use crate::family::unmatched_name_telltale;
use crate::keys::{classify, KeyClass, Naming, Target};
use crate::table::{ModuleKey, ModuleTable};
use crate::tensor::{dtype_name, to_f32, Tensor};
use crate::{peft, AdapterKind, Error, MAX_FILE_BYTES, MAX_HEADER_BYTES, MAX_TENSORS};

/// The spelling/algorithm family of (part of) a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
pub enum Format {
    LoKr,
    LoHa,
    LoCon,
    Kohya,
    Peft,
    DiffusersLegacy,
    AttnProcessor,
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Format::Kohya => "kohya LoRA",
            Format::LoCon => "kohya LoCon",
            Format::LoHa => "LyCORIS LoHa",
            Format::LoKr => "LyCORIS LoKr",
            Format::Peft => "diffusers/PEFT",
            Format::DiffusersLegacy => "diffusers legacy (lora.down/up, lora_linear_layer)",
            Format::AttnProcessor => "diffusers attention processors (<= 0.14)",
        })
    }
}

/// A key that no module of the model takes, with the reason.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Unmatched {
    pub key: String,
    pub reason: String,
}

/// Counts and values for reports (`stylus lora inspect`).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Summary {
    pub format: Format,
    pub formats: Vec<Format>,
    pub unet_modules: usize,
    pub text_encoder_modules: usize,
    /// Modules whose target is a conv (1×1 or k×k).
    pub conv_modules: usize,
    /// Modules whose target is a k×k conv with k > 1.
    pub conv3x3_modules: usize,
    pub tucker_modules: usize,
    pub ranks: Vec<usize>,
    /// Distinct effective alphas (alpha = r where the file has none; LoKr modules with both sides
    /// full use scale 1 and are left out).
    pub alphas: Vec<f32>,
    pub dtypes: Vec<String>,
    pub tensors: usize,
    pub bytes: usize,
    pub unmatched: Vec<Unmatched>,
}

/// The checked container: tensors sorted by name, header metadata.
pub(crate) struct Container<'a> {
    pub tensors: Vec<(String, TensorView<'a>)>,
    pub metadata: BTreeMap<String, String>,
}

/// Opens a safetensors file with this crate's limits; every slice is bounds-checked. The pickle
/// signature is only consulted once the bytes fail to parse as safetensors: a valid header length
/// such as 640 (`80 02 00 …`) starts like a protocol-2 pickle.
pub(crate) fn open(bytes: &[u8]) -> Result<Container<'_>, Error> {
    let too_large = |what, size: u64, limit: u64| Error::TooLarge { what, size, limit };
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(too_large("file size", bytes.len() as u64, MAX_FILE_BYTES));
    }
    let not_st = |msg: String| {
        if stylus_sd::checkpoint::check_not_pickle(bytes).is_err() {
            Error::PickleRefused
        } else {
            Error::Safetensors(msg)
        }
    };
    let n = bytes.get(..8).and_then(|b| <[u8; 8]>::try_from(b).ok()).map(u64::from_le_bytes);
    let n = n.ok_or_else(|| not_st("shorter than the 8-byte header length".into()))?;
    if n > (bytes.len() as u64).saturating_sub(8) {
        return Err(not_st(format!("header length {n} runs past the end of the {}-byte file", bytes.len())));
    }
    if n > MAX_HEADER_BYTES {
        return Err(too_large("safetensors header length", n, MAX_HEADER_BYTES));
    }
    let (n, meta) = SafeTensors::read_metadata(bytes).map_err(|e| not_st(e.to_string()))?;
    let names = meta.offset_keys();
    if names.len() > MAX_TENSORS {
        return Err(too_large("tensor count", names.len() as u64, MAX_TENSORS as u64));
    }
    let data = n.checked_add(8).and_then(|start| bytes.get(start..)).unwrap_or(&[]);
    let mut tensors = Vec::with_capacity(names.len());
    for name in names {
        let info = meta.info(&name).ok_or_else(|| Error::Safetensors(format!("tensor `{name}` vanished")))?;
        let (s, e) = info.data_offsets;
        let slice = data.get(s..e).ok_or_else(|| Error::Safetensors(format!("tensor `{name}` is out of bounds")))?;
        let view = TensorView::new(info.dtype, info.shape.clone(), slice)
            .map_err(|e| Error::Safetensors(format!("tensor `{name}`: {e}")))?;
        tensors.push((name, view));
    }
    tensors.sort_by(|a, b| a.0.cmp(&b.0));
    let metadata = meta.metadata().iter().flatten().map(|(k, v)| (k.clone(), v.clone())).collect();
    Ok(Container { tensors, metadata })
}

/// A LoRA file resolved against a model's module table.
#[derive(Debug, Clone)]
pub struct LoraFile {
    modules: BTreeMap<ModuleKey, ModuleAdapter>,
    unmatched: Vec<Unmatched>,
    metadata: BTreeMap<String, String>,
    formats: BTreeSet<Format>,
    dtypes: BTreeSet<String>,
    tensors: usize,
    bytes: usize,
}

/// Tensors of one module while grouping, with the spellings seen.
#[derive(Default)]
struct Group {
    parts: Parts,
    namings: BTreeSet<Naming>,
}

impl LoraFile {
    /// Parses a LoRA file (bytes of a `.safetensors`) against `table`. Refuses other base models,
    /// corrupt or oversized files, non-finite weights and shapes that do not fit; keys that name
    /// no module are kept in [`LoraFile::unmatched`].
    pub fn parse(bytes: &[u8], table: &ModuleTable) -> Result<LoraFile, Error> {
        let c = open(bytes)?;
        let peft = peft::parse(&c.metadata)?;
        let mut unmatched = Vec::new();
        let mut groups: BTreeMap<ModuleKey, Group> = BTreeMap::new();
        let mut dtypes = BTreeSet::new();
        for (key, view) in &c.tensors {
            dtypes.insert(dtype_name(view.dtype()));
            let (naming, part, target) = match classify(key) {
                KeyClass::Part { naming, part, target } => (naming, part, target),
                KeyClass::Family(family, reason) => return Err(Error::WrongBaseModel { family, reason }),
                KeyClass::Refused(feature) => return Err(Error::Unsupported { key: key.clone(), feature }),
                KeyClass::Unknown(reason) | KeyClass::Unsupported(reason) => {
                    unmatched.push(Unmatched { key: key.clone(), reason: reason.to_string() });
                    continue;
                }
            };
            let (module, name) = match &target {
                Target::Kohya(name) => (table.by_kohya(name).cloned(), name.to_string()),
                Target::Dotted(comp, path) => (table.by_path(*comp, path), path.clone()),
            };
            let Some(module) = module else {
                if let Some((family, reason)) = unmatched_name_telltale(&name) {
                    return Err(Error::WrongBaseModel { family, reason });
                }
                unmatched.push(Unmatched { key: key.clone(), reason: "no such module in the model".into() });
                continue;
            };
            let tensor = to_f32(key, view)?;
            let g = groups.entry(module.clone()).or_default();
            if let Some((prev, _)) = g.parts.get(&part) {
                return Err(Error::ConflictingKeys { module: module.to_string(), keys: vec![prev.clone(), key.clone()] });
            }
            g.parts.insert(part, (key.clone(), tensor));
            if naming != Naming::DottedAlpha {
                g.namings.insert(naming);
            }
        }
        let mut modules = BTreeMap::new();
        let mut formats = BTreeSet::new();
        for (module, g) in groups {
            if g.namings.len() > 1 {
                let keys = g.parts.values().map(|(k, _)| k.clone()).collect();
                return Err(Error::ConflictingKeys { module: module.to_string(), keys });
            }
            let naming = g.namings.first().copied().unwrap_or(Naming::DottedAlpha);
            let Some(info) = table.get(&module) else { continue };
            let peft_cfg = if naming == Naming::Kohya { None } else { peft.for_component(module.component) };
            let ctx = Ctx { table, module: &module, target: &info.shape, peft: peft_cfg };
            let alpha_keys: Vec<String> = g.parts.values().map(|(k, _)| k.clone()).collect();
            match build(&ctx, g.parts)? {
                Some(adapter) => {
                    formats.insert(format_of(naming, adapter.kind));
                    modules.insert(module, adapter);
                }
                None => unmatched.extend(
                    alpha_keys.into_iter().map(|key| Unmatched { key, reason: "alpha without adapter weights".into() }),
                ),
            }
        }
        unmatched.sort_by(|a, b| a.key.cmp(&b.key));
        if modules.is_empty() {
            let first = unmatched.iter().take(5).map(|u| u.key.clone()).collect();
            return Err(Error::NoModules { count: unmatched.len(), first });
        }
        let tensors = c.tensors.len();
        Ok(LoraFile { modules, unmatched, metadata: c.metadata, formats, dtypes, tensors, bytes: bytes.len() })
    }

    /// The adapted modules, in path order.
    pub fn modules(&self) -> impl Iterator<Item = (&ModuleKey, &ModuleAdapter)> {
        self.modules.iter()
    }
    /// The adapter of one module.
    pub fn module(&self, key: &ModuleKey) -> Option<&ModuleAdapter> {
        self.modules.get(key)
    }
    /// Number of adapted modules.
    pub fn len(&self) -> usize {
        self.modules.len()
    }
    pub fn is_empty(&self) -> bool {
        self.modules.is_empty()
    }
    /// `scale · ΔW` of one module at adapter weight 1, shaped like the target weight.
    pub fn delta(&self, key: &ModuleKey) -> Option<Tensor> {
        self.modules.get(key).map(|a| a.delta(1.0))
    }
    /// Low-rank factors of one module (plain LoRA / LoCon), for run-time application.
    pub fn low_rank(&self, key: &ModuleKey) -> Option<LowRank> {
        self.modules.get(key).and_then(ModuleAdapter::low_rank)
    }
    /// Keys that matched no module, with reasons.
    pub fn unmatched(&self) -> &[Unmatched] {
        &self.unmatched
    }
    /// The safetensors header's `__metadata__`.
    pub fn metadata(&self) -> &BTreeMap<String, String> {
        &self.metadata
    }
    /// Every format seen, most specific first.
    pub fn formats(&self) -> Vec<Format> {
        self.formats.iter().copied().collect()
    }
    /// The main format (LoKr > LoHa > LoCon > kohya > PEFT > legacy spellings).
    pub fn format(&self) -> Format {
        self.formats.first().copied().unwrap_or(Format::Kohya)
    }
    /// Counts and values for reports.
    pub fn summary(&self) -> Summary {
        let count = |f: &dyn Fn(&ModuleKey, &ModuleAdapter) -> bool| self.modules.iter().filter(|(k, a)| f(k, a)).count();
        let ranks: BTreeSet<usize> = self.modules.values().filter_map(|a| a.rank).collect();
        let mut alphas: Vec<f32> =
            self.modules.values().filter_map(|a| a.rank.map(|r| a.alpha.unwrap_or(r as f32))).collect();
        alphas.sort_by(f32::total_cmp);
        alphas.dedup();
        Summary {
            format: self.format(),
            formats: self.formats(),
            unet_modules: count(&|k, _| k.component == stylus_sd::Component::Unet),
            text_encoder_modules: count(&|k, _| k.component == stylus_sd::Component::TextEncoder),
            conv_modules: count(&|_, a| a.target_shape.len() == 4),
            conv3x3_modules: count(&|_, a| a.target_shape.get(2..).is_some_and(|k| k.iter().product::<usize>() > 1)),
            tucker_modules: count(&|_, a| a.tucker),
            ranks: ranks.into_iter().collect(),
            alphas,
            dtypes: self.dtypes.iter().cloned().collect(),
            tensors: self.tensors,
            bytes: self.bytes,
            unmatched: self.unmatched.clone(),
        }
    }
}

fn format_of(naming: Naming, kind: AdapterKind) -> Format {
    match (kind, naming) {
        (AdapterKind::LoHa, _) => Format::LoHa,
        (AdapterKind::LoKr, _) => Format::LoKr,
        (_, Naming::Peft | Naming::DottedAlpha) => Format::Peft,
        (_, Naming::DiffusersLegacy) => Format::DiffusersLegacy,
        (_, Naming::AttnProcessor) => Format::AttnProcessor,
        (AdapterKind::LoCon, Naming::Kohya) => Format::LoCon,
        (_, Naming::Kohya) => Format::Kohya,
    }
}
