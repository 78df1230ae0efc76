//! Resolves checkpoint files (given as bytes) against the SD1.5 parameter table: original single
//! files (`model.diffusion_model.*`, `first_stage_model.*`, `cond_stage_model.transformer.*`) and
//! diffusers folders (`unet/`, `vae/`, `text_encoder/`), with SD1.5 checks and clear refusals.

use std::collections::{BTreeMap, HashSet};

use safetensors::{Dtype, SafeTensors};

use crate::config::SdConfig;
use crate::layout::{sd_params, Component, ParamSpec};
use crate::Error;

/// Top-level buffers that real SD1.x single files carry besides weights (DDPM schedule).
const LDM_BUFFERS: &[&str] = &[
    "betas",
    "alphas_cumprod",
    "alphas_cumprod_prev",
    "sqrt_alphas_cumprod",
    "sqrt_one_minus_alphas_cumprod",
    "log_one_minus_alphas_cumprod",
    "sqrt_recip_alphas_cumprod",
    "sqrt_recipm1_alphas_cumprod",
    "posterior_variance",
    "posterior_log_variance_clipped",
    "posterior_mean_coef1",
    "posterior_mean_coef2",
    "logvar",
    "model_ema.decay",
    "model_ema.num_updates",
];

/// Is this key a known non-weight entry (buffers, EMA copies) that loading ignores?
fn ignorable(key: &str) -> bool {
    LDM_BUFFERS.contains(&key)
        || key.ends_with("embeddings.position_ids")
        || key.starts_with("model_ema.")
        || key.starts_with("cond_stage_model.transformer.text_model.embeddings.position_ids")
}

/// Refuses formats we never parse (pickle) before any other work.
pub fn check_not_pickle(bytes: &[u8]) -> Result<(), Error> {
    let zip = bytes.starts_with(b"PK\x03\x04");
    let pickle = bytes.first() == Some(&0x80) && bytes.get(1).is_some_and(|v| (2..=5).contains(v));
    if zip || pickle {
        return Err(Error::PickleRefused);
    }
    Ok(())
}

/// Parses a safetensors file from bytes, refusing pickled checkpoints with a conversion hint.
/// The pickle sniff runs only when the bytes are not valid safetensors: a header length such as
/// 640 (`80 02 …`) starts like a pickle but is a valid file.
pub fn parse(bytes: &[u8]) -> Result<SafeTensors<'_>, Error> {
    SafeTensors::deserialize(bytes).or_else(|e| {
        check_not_pickle(bytes)?;
        Err(Error::Safetensors(e.to_string()))
    })
}

/// Detects checkpoints of other model families by their tell-tale keys.
fn detect_other_family(names: &HashSet<&str>) -> Option<&'static str> {
    let any = |p: &str| names.iter().any(|k| k.starts_with(p));
    if any("conditioner.embedders.") {
        Some("an SDXL checkpoint (has `conditioner.embedders.*`)")
    } else if any("cond_stage_model.model.") {
        Some("an SD2.x checkpoint (OpenCLIP text encoder `cond_stage_model.model.*`)")
    } else if any("model.diffusion_model.label_emb.") {
        Some("a class-conditioned UNet (SDXL/refiner style `label_emb`)")
    } else {
        None
    }
}

/// A parameter resolved to a tensor of a file.
#[derive(Debug, Clone)]
pub struct Resolved<'a> {
    pub spec: ParamSpec,
    /// Key of the tensor in its file.
    pub key: String,
    pub view: safetensors::tensor::TensorView<'a>,
}

/// The result of matching files against the parameter table.
#[derive(Debug)]
pub struct Resolution<'a> {
    pub params: Vec<Resolved<'a>>,
    /// Keys present in the files that are neither parameters nor known buffers.
    pub unexpected: Vec<String>,
}

fn check_shape(spec: &ParamSpec, key: &str, found: &[usize], expect: &[usize]) -> Result<(), Error> {
    if found != expect {
        return Err(Error::ShapeMismatch {
            key: key.to_string(),
            expected: expect.to_vec(),
            found: found.to_vec(),
            hint: mismatch_hint(spec, found),
        });
    }
    Ok(())
}

/// Names the likely model family from a mismatched shape (cross-attention width is the tell).
fn mismatch_hint(spec: &ParamSpec, found: &[usize]) -> String {
    if spec.path.contains("attn2.to_k") {
        match found.get(1) {
            Some(1024) => return "cross-attention width 1024: an SD2.x model, not SD1.5".into(),
            Some(2048) => return "cross-attention width 2048: an SDXL model, not SD1.5".into(),
            _ => {}
        }
    }
    "this is not the SD1.5 architecture the config describes".into()
}

fn dtype_ok(key: &str, dtype: Dtype) -> Result<(), Error> {
    match dtype {
        Dtype::F32 | Dtype::F16 | Dtype::BF16 => Ok(()),
        other => Err(Error::UnsupportedDtype { key: key.to_string(), dtype: format!("{other:?}") }),
    }
}

fn missing_error(component: Option<Component>, missing: Vec<String>) -> Error {
    Error::MissingTensors {
        component: component.map_or("single file", Component::dir).to_string(),
        count: missing.len(),
        first: missing.into_iter().take(5).collect(),
    }
}

/// Resolves an original single-file checkpoint (ldm key names).
pub fn resolve_single_file<'a>(st: &SafeTensors<'a>, cfg: &SdConfig) -> Result<Resolution<'a>, Error> {
    let names: HashSet<&str> = st.names().into_iter().collect();
    if let Some(family) = detect_other_family(&names) {
        return Err(Error::NotSd15(family.to_string()));
    }
    let mut params = Vec::new();
    let mut missing = Vec::new();
    let mut used = HashSet::new();
    for spec in sd_params(cfg) {
        let Ok(view) = st.tensor(&spec.ldm_key) else {
            missing.push(spec.ldm_key.clone());
            continue;
        };
        let expect = spec.ldm_shape.as_ref().unwrap_or(&spec.shape);
        check_shape(&spec, &spec.ldm_key, view.shape(), expect)?;
        dtype_ok(&spec.ldm_key, view.dtype())?;
        used.insert(spec.ldm_key.clone());
        params.push(Resolved { key: spec.ldm_key.clone(), spec, view });
    }
    if !missing.is_empty() {
        return Err(missing_error(None, missing));
    }
    let mut unexpected: Vec<String> =
        names.iter().filter(|k| !used.contains(**k) && !ignorable(k)).map(|k| k.to_string()).collect();
    unexpected.sort();
    Ok(Resolution { params, unexpected })
}

/// Resolves one diffusers component file (`unet/diffusion_pytorch_model.safetensors`, …).
/// Text encoders are accepted with or without the `text_model.` prefix (transformers 5 drops it).
pub fn resolve_diffusers<'a>(
    component: Component,
    st: &SafeTensors<'a>,
    cfg: &SdConfig,
) -> Result<Resolution<'a>, Error> {
    let names: HashSet<&str> = st.names().into_iter().collect();
    let mut params = Vec::new();
    let mut missing = Vec::new();
    let mut used = HashSet::new();
    for spec in sd_params(cfg).into_iter().filter(|p| p.component == component) {
        let alt = spec.path.strip_prefix("text_model.").filter(|_| component == Component::TextEncoder);
        let key = if names.contains(spec.path.as_str()) {
            spec.path.clone()
        } else if let Some(a) = alt.filter(|a| names.contains(a)) {
            a.to_string()
        } else {
            missing.push(spec.path.clone());
            continue;
        };
        let view = st.tensor(&key).map_err(|e| Error::Safetensors(e.to_string()))?;
        check_shape(&spec, &key, view.shape(), &spec.shape)?;
        dtype_ok(&key, view.dtype())?;
        used.insert(key.clone());
        params.push(Resolved { spec, key, view });
    }
    if !missing.is_empty() {
        return Err(missing_error(Some(component), missing));
    }
    let mut unexpected: Vec<String> =
        names.iter().filter(|k| !used.contains(**k) && !ignorable(k)).map(|k| k.to_string()).collect();
    unexpected.sort();
    Ok(Resolution { params, unexpected })
}

/// Converts a tensor view (F32, F16 or BF16, little endian) to f32 values.
pub fn to_f32(view: &safetensors::tensor::TensorView<'_>) -> Result<Vec<f32>, Error> {
    let b = view.data();
    Ok(match view.dtype() {
        Dtype::F32 => b.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect(),
        Dtype::F16 => b.chunks_exact(2).map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32()).collect(),
        Dtype::BF16 => b.chunks_exact(2).map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32()).collect(),
        other => return Err(Error::UnsupportedDtype { key: String::new(), dtype: format!("{other:?}") }),
    })
}

/// Sizes per component, for reports (`stylus inspect`).
pub fn summarize(res: &Resolution<'_>) -> BTreeMap<&'static str, (usize, usize)> {
    let mut m = BTreeMap::new();
    for r in &res.params {
        let e = m.entry(r.spec.component.dir()).or_insert((0usize, 0usize));
        e.0 += 1;
        e.1 += r.spec.numel();
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pickle_and_zip_are_refused() {
        assert!(matches!(check_not_pickle(b"PK\x03\x04rest"), Err(Error::PickleRefused)));
        assert!(matches!(check_not_pickle(&[0x80, 0x02, 0x7d]), Err(Error::PickleRefused)));
        assert!(check_not_pickle(b"\x08\x00\x00\x00\x00\x00\x00\x00{}").is_ok());
    }

    #[test]
    fn a_header_length_that_looks_like_pickle_is_still_safetensors() {
        // header of exactly 640 bytes: the file starts with 0x80 0x02, like a pickle protocol 2
        let mut json = String::from("{\"__metadata__\":{\"pad\":\"");
        let fill = 640 - json.len() - 3;
        json.push_str(&"x".repeat(fill));
        json.push_str("\"}}");
        assert_eq!(json.len(), 640);
        let mut bytes = (json.len() as u64).to_le_bytes().to_vec();
        bytes.extend_from_slice(json.as_bytes());
        assert_eq!(&bytes[..2], &[0x80, 0x02]);
        assert!(parse(&bytes).is_ok());
    }

    #[test]
    fn garbage_is_a_typed_error() {
        assert!(matches!(parse(b"not a safetensors file at all"), Err(Error::Safetensors(_))));
        assert!(matches!(parse(b""), Err(Error::Safetensors(_))));
    }
}
