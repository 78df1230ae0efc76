//! Weight loading: the one remap table from checkpoint keys (HF transformers `BertModel`
//! `state_dict`, as `model.safetensors` holds it) to the module paths of [`crate::bert`].
//!
//! The model's struct fields are named after the key segments (`embeddings.word_embeddings`,
//! `encoder.layer.N.attention.self.query`, `attention.output.LayerNorm`, `intermediate.dense`,
//! `output.dense`, `output.LayerNorm`, …), so the module path of a parameter *is* its canonical key.
//! [`remap_key`] is the whole table; it applies, in order:
//!
//! | checkpoint key | module path / action |
//! |---|---|
//! | `bert.{rest}` (BertFor* checkpoints) | `{rest}`, then the rules below |
//! | `{…}.LayerNorm.gamma` / `.beta` (TF-converted BERT) | `{…}.LayerNorm.weight` / `.bias` |
//! | `embeddings.position_ids` | ignored: a registered buffer, always `0..max_position_embeddings` |
//! | `pooler.dense.weight` / `.bias` | ignored: the `[CLS]` pooler head; mean pooling does not use it |
//! | anything else | itself |
//!
//! [`bert_params`] lists every parameter the model takes (path and shape, from the config); a unit
//! test walks the model in dry-run mode and checks it asks for exactly that list. [`Weights`] checks
//! a file against the list before anything is uploaded: a key that maps outside it is
//! [`Error::UnknownKey`], a parameter no key provides is [`Error::MissingKey`], two keys for one
//! parameter (`weight` and `gamma`) are [`Error::DuplicateKey`], a shape that differs is
//! [`Error::Shape`], a dtype other than F32/F16/BF16 is [`Error::Dtype`]. Linear weights are
//! transposed from torch's `[out, in]` to burn's `[in, out]` by the layer that takes them.

use std::collections::HashMap;

use burn::tensor::{Device, Tensor, TensorData};
use safetensors::tensor::TensorView;
use safetensors::{Dtype, SafeTensors};

use crate::config::BertConfig;
use crate::Error;

/// What one checkpoint key is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mapped {
    /// The parameter at this module path.
    Param(String),
    /// Not a parameter of the encoder; the reason is documented in the table above.
    Ignored(&'static str),
}

/// Optional key prefixes (checked in order; at most one is stripped).
pub const PREFIXES: &[&str] = &["bert."];

/// Keys that are present in BERT checkpoints but are not encoder parameters.
pub const IGNORED: &[(&str, &str)] = &[
    ("embeddings.position_ids", "position-id buffer (always 0..max_position_embeddings)"),
    ("pooler.dense.weight", "[CLS] pooler head, unused by mean pooling"),
    ("pooler.dense.bias", "[CLS] pooler head, unused by mean pooling"),
];

/// Maps one checkpoint key to a module path (or marks it ignored); see the module docs.
pub fn remap_key(key: &str) -> Mapped {
    let key = PREFIXES.iter().find_map(|p| key.strip_prefix(p)).unwrap_or(key);
    if let Some((_, why)) = IGNORED.iter().find(|(k, _)| *k == key) {
        return Mapped::Ignored(why);
    }
    let path = if let Some(stem) = key.strip_suffix(".LayerNorm.gamma") {
        format!("{stem}.LayerNorm.weight")
    } else if let Some(stem) = key.strip_suffix(".LayerNorm.beta") {
        format!("{stem}.LayerNorm.bias")
    } else {
        key.to_string()
    };
    Mapped::Param(path)
}

/// One parameter of the encoder: module path and torch shape.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct ParamSpec {
    pub path: String,
    pub shape: Vec<usize>,
}

/// Every parameter the encoder for `cfg` takes, in load order.
pub fn bert_params(cfg: &BertConfig) -> Vec<ParamSpec> {
    let (h, i) = (cfg.hidden_size, cfg.intermediate_size);
    let mut v = Vec::new();
    let mut add = |path: String, shape: Vec<usize>| v.push(ParamSpec { path, shape });
    add("embeddings.word_embeddings.weight".into(), vec![cfg.vocab_size, h]);
    add("embeddings.position_embeddings.weight".into(), vec![cfg.max_position_embeddings, h]);
    add("embeddings.token_type_embeddings.weight".into(), vec![cfg.type_vocab_size, h]);
    let mut layers = vec![("embeddings.LayerNorm".to_string(), None)];
    for n in 0..cfg.num_hidden_layers {
        let l = format!("encoder.layer.{n}");
        for q in ["query", "key", "value"] {
            layers.push((format!("{l}.attention.self.{q}"), Some((h, h))));
        }
        layers.push((format!("{l}.attention.output.dense"), Some((h, h))));
        layers.push((format!("{l}.attention.output.LayerNorm"), None));
        layers.push((format!("{l}.intermediate.dense"), Some((h, i))));
        layers.push((format!("{l}.output.dense"), Some((i, h))));
        layers.push((format!("{l}.output.LayerNorm"), None));
    }
    // Linear: weight [out, in] + bias [out]; LayerNorm (None): weight + bias [hidden].
    for (path, dims) in layers {
        let (w, b) = match dims {
            Some((d_in, d_out)) => (vec![d_out, d_in], vec![d_out]),
            None => (vec![h], vec![h]),
        };
        add(format!("{path}.weight"), w);
        add(format!("{path}.bias"), b);
    }
    v
}

enum Slot<'a> {
    View(TensorView<'a>),
    Values(Vec<f32>),
}

struct Entry<'a> {
    /// The key in the file (for messages).
    key: String,
    slot: Slot<'a>,
}

/// Checked checkpoint tensors by module path; the model takes each once (shape-checked again).
pub struct Weights<'a> {
    device: Device,
    entries: HashMap<String, Entry<'a>>,
    /// Keys the table ignores, as found in the file.
    ignored: Vec<String>,
    /// Dry run: hand out placeholders and record requests.
    dry_run: bool,
    requested: Vec<ParamSpec>,
}

impl<'a> Weights<'a> {
    fn check<T>(cfg: &BertConfig, device: &Device, items: Vec<(String, Vec<usize>, T)>, slot: impl Fn(T) -> Slot<'a>) -> Result<Self, Error> {
        let specs: HashMap<String, Vec<usize>> = bert_params(cfg).into_iter().map(|p| (p.path, p.shape)).collect();
        let mut entries: HashMap<String, Entry<'a>> = HashMap::new();
        let mut ignored = Vec::new();
        for (key, shape, data) in items {
            let path = match remap_key(&key) {
                Mapped::Ignored(_) => {
                    ignored.push(key);
                    continue;
                }
                Mapped::Param(path) => path,
            };
            let Some(want) = specs.get(&path) else {
                return Err(Error::UnknownKey { key, path });
            };
            if *want != shape {
                return Err(Error::Shape { key, expected: want.clone(), found: shape });
            }
            if let Some(prev) = entries.get(&path) {
                return Err(Error::DuplicateKey { first: prev.key.clone(), second: key, path });
            }
            entries.insert(path, Entry { key, slot: slot(data) });
        }
        if let Some(missing) = bert_params(cfg).into_iter().find(|p| !entries.contains_key(&p.path)) {
            return Err(Error::MissingKey(missing.path));
        }
        ignored.sort();
        Ok(Weights { device: device.clone(), entries, ignored, dry_run: false, requested: Vec::new() })
    }

    /// Parses `model.safetensors` bytes and checks every tensor against [`bert_params`] (zero-copy:
    /// tensors are converted and uploaded when the model takes them).
    pub fn from_safetensors(cfg: &BertConfig, bytes: &'a [u8], device: &Device) -> Result<Self, Error> {
        let st = SafeTensors::deserialize(bytes).map_err(|e| Error::Safetensors(e.to_string()))?;
        let mut items = Vec::new();
        for (key, view) in st.tensors() {
            let is_param = matches!(remap_key(&key), Mapped::Param(_));
            if is_param && !matches!(view.dtype(), Dtype::F32 | Dtype::F16 | Dtype::BF16) {
                return Err(Error::Dtype { key, dtype: format!("{:?}", view.dtype()) });
            }
            items.push((key, view.shape().to_vec(), view));
        }
        Self::check(cfg, device, items, Slot::View)
    }

    /// Host f32 values keyed like a checkpoint (each with its torch shape); the same checks.
    pub fn from_values(cfg: &BertConfig, values: Vec<(String, Vec<usize>, Vec<f32>)>, device: &Device) -> Result<Self, Error> {
        for (key, shape, v) in &values {
            if shape.iter().product::<usize>() != v.len() {
                return Err(Error::Input(format!("`{key}`: {} values for shape {shape:?}", v.len())));
            }
        }
        Self::check(cfg, device, values, Slot::Values)
    }

    /// A loader that records what the model asks for and hands out placeholders (mapping tests).
    pub fn dry_run(device: &Device) -> Self {
        Weights { device: device.clone(), entries: HashMap::new(), ignored: Vec::new(), dry_run: true, requested: Vec::new() }
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Keys of the file that the table ignores (`position_ids`, pooler).
    pub fn ignored(&self) -> &[String] {
        &self.ignored
    }

    /// Every (path, shape) the model asked for, in order.
    pub fn requested(&self) -> &[ParamSpec] {
        &self.requested
    }

    /// Takes the parameter at module path `path`, which must have torch shape `shape`.
    pub fn take<const D: usize>(&mut self, path: &str, shape: [usize; D]) -> Result<Tensor<D>, Error> {
        let values = self.take_values(path, &shape)?;
        if self.dry_run {
            return Ok(Tensor::zeros([1; D], &self.device));
        }
        Ok(Tensor::from_data(TensorData::new(values, shape), &self.device))
    }

    /// Takes a torch `nn.Linear` weight `[out, in]` and uploads it transposed, `[in, out]` contiguous
    /// (burn's `linear` layout; a contiguous right-hand side keeps the matmul from re-striding it).
    pub fn take_linear_weight(&mut self, path: &str, d_in: usize, d_out: usize) -> Result<Tensor<2>, Error> {
        let v = self.take_values(path, &[d_out, d_in])?;
        if self.dry_run {
            return Ok(Tensor::zeros([1, 1], &self.device));
        }
        let mut t = vec![0f32; v.len()];
        for (o, row) in v.chunks_exact(d_in).enumerate() {
            for (i, x) in row.iter().enumerate() {
                t[i * d_out + o] = *x;
            }
        }
        Ok(Tensor::from_data(TensorData::new(t, [d_in, d_out]), &self.device))
    }

    /// Records the request and returns the host values of `path` (checked against `shape`).
    fn take_values(&mut self, path: &str, shape: &[usize]) -> Result<Vec<f32>, Error> {
        self.requested.push(ParamSpec { path: path.to_string(), shape: shape.to_vec() });
        if self.dry_run {
            return Ok(Vec::new());
        }
        let entry = self.entries.remove(path).ok_or_else(|| Error::MissingKey(path.to_string()))?;
        let values = match entry.slot {
            Slot::Values(v) => v,
            Slot::View(view) => to_f32(&entry.key, &view)?,
        };
        if values.len() != shape.iter().product::<usize>() {
            return Err(Error::Shape { key: entry.key, expected: shape.to_vec(), found: vec![values.len()] });
        }
        Ok(values)
    }

    /// Errors when a checked parameter was never taken (the model and [`bert_params`] disagree).
    pub fn finish(&self) -> Result<(), Error> {
        let mut left: Vec<&String> = self.entries.values().map(|e| &e.key).collect();
        left.sort();
        match left.first() {
            None => Ok(()),
            Some(k) => Err(Error::UnknownKey { key: k.to_string(), path: format!("(not used by the model; {} left)", left.len()) }),
        }
    }
}

/// Widens a little-endian F32/F16/BF16 tensor to f32 values.
fn to_f32(key: &str, view: &TensorView<'_>) -> Result<Vec<f32>, Error> {
    let b = view.data();
    let v = match view.dtype() {
        Dtype::F32 => b.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect(),
        Dtype::F16 => b.chunks_exact(2).map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32()).collect(),
        Dtype::BF16 => b.chunks_exact(2).map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32()).collect(),
        other => return Err(Error::Dtype { key: key.to_string(), dtype: format!("{other:?}") }),
    };
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::BertModel;

    fn param(p: &str) -> Mapped {
        Mapped::Param(p.to_string())
    }

    /// The table, row by row: no prefix and `bert.`, LayerNorm `gamma`/`beta`, ignored keys.
    #[test]
    fn remap_table() {
        let w = "encoder.layer.3.attention.self.query.weight";
        assert_eq!(remap_key(w), param(w));
        assert_eq!(remap_key(&format!("bert.{w}")), param(w));
        assert_eq!(remap_key("embeddings.LayerNorm.gamma"), param("embeddings.LayerNorm.weight"));
        assert_eq!(remap_key("bert.encoder.layer.0.output.LayerNorm.beta"), param("encoder.layer.0.output.LayerNorm.bias"));
        assert_eq!(remap_key("encoder.layer.0.attention.output.LayerNorm.weight"), param("encoder.layer.0.attention.output.LayerNorm.weight"));
        for k in ["embeddings.position_ids", "bert.embeddings.position_ids", "pooler.dense.weight", "bert.pooler.dense.bias"] {
            assert!(matches!(remap_key(k), Mapped::Ignored(_)), "{k}");
        }
        // Only one prefix is stripped, and only at the start; other names pass through (and are then
        // refused by `Weights` because they are not in `bert_params`).
        assert_eq!(remap_key("bert.bert.embeddings.word_embeddings.weight"), param("bert.embeddings.word_embeddings.weight"));
        assert_eq!(remap_key("cls.predictions.bias"), param("cls.predictions.bias"));
        assert_eq!(remap_key("gamma"), param("gamma"));
    }

    /// all-MiniLM-L6-v2's parameter list: 3 embeddings + LayerNorm + 6 × 16 tensors, 22.6 M values (without the pooler).
    #[test]
    fn minilm_param_table() {
        let p = bert_params(&BertConfig::minilm_l6_h384());
        assert_eq!(p.len(), 5 + 6 * 16);
        let total: usize = p.iter().map(|s| s.shape.iter().product::<usize>()).sum();
        assert_eq!(total, 22_565_376);
        let find = |path: &str| p.iter().find(|s| s.path == path).map(|s| s.shape.clone());
        assert_eq!(find("encoder.layer.5.intermediate.dense.weight"), Some(vec![1536, 384]));
        assert_eq!(find("encoder.layer.5.output.dense.weight"), Some(vec![384, 1536]));
        assert_eq!(find("embeddings.word_embeddings.weight"), Some(vec![30522, 384]));
        let mut paths: Vec<_> = p.iter().map(|s| &s.path).collect();
        paths.sort();
        paths.dedup();
        assert_eq!(paths.len(), p.len(), "paths are unique");
    }

    /// The model asks for exactly `bert_params`, path and shape: the struct walk and the table are
    /// one mapping.
    #[test]
    fn model_walk_equals_param_table() {
        let cfg = BertConfig::minilm_l6_h384();
        let mut w = Weights::dry_run(&crate::cpu_device());
        BertModel::load(&cfg, &mut w).unwrap();
        assert_eq!(w.requested(), bert_params(&cfg).as_slice());
    }
}
