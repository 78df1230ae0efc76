//! Converted models: an SD1.5 checkpoint re-encoded as a JSON manifest plus shards of at most
//! 64 MiB in f32, f16 or q8, written ([`Writer`]) and read ([`ShardReader`]) tensor by tensor, so
//! neither side holds the whole model in memory: the writer keeps one shard buffer, the reader one
//! shard plus the tensor it is assembling. The browser downloads `manifest.json`, then the shards
//! one by one (each checked against its sha256, [`verify_shard`]) and loads the model from them;
//! `stylus convert` writes them natively.
//!
//! ## Format `stylus-sd-shards`, version 1
//!
//! `manifest.json` ([`Manifest`]): the format name and version, the config preset name (`sd15`,
//! `tiny`) and the full [`SdConfig`], the dtype policy, the shard limit, the shards
//! `{file, bytes, sha256}` and the tensors `{component, path, shape, dtype, bytes, pieces, q8}`.
//! `path` is the diffusers path [`crate::sd_params`] names (the one the loader asks for); `pieces`
//! are `{shard, offset, len}` byte ranges whose concatenation is the tensor's encoding.
//!
//! Shards are encoded tensors back to back, in the order they were written (`stylus convert`:
//! `sd_params` order, UNet → VAE → text encoder), each starting at a 16-byte aligned offset of its
//! shard (zero padding between tensors). A tensor whose encoding fits the limit is never split: it
//! starts a new shard when the current one lacks room. A larger tensor (SD1.5's CLIP token
//! embedding, 49408×768, is 76 MB in f16, 38 MB in q8) fills the rest of the current shard and continues in the
//! next ones, one piece per shard. Every shard is ≤ the limit; the output is a function of the
//! input tensors, their order, the policy and the limit (no time stamps, no maps).
//!
//! ## Encodings (little endian, row-major, the checkpoint's torch layout: Linear `[out, in]`)
//!
//! * `f32`: IEEE binary32, exact for F32/F16/BF16 sources.
//! * `f16`: IEEE binary16. F16 sources are copied; F32 and BF16 values are rounded to nearest even.
//!   A finite value beyond f16's range (|x| ≥ 65520, which would round to ±∞) is an error
//!   ([`crate::Error::F16Overflow`]) rather than clamped: clamping silently changes the model, and
//!   SD1.5's weights lie far inside the range (its official fp16 files are this very rounding).
//!   ±∞ and NaN are stored as such.
//! * `q8` (policy `q8`): symmetric int8 per output row for weights with 2 or 4 dimensions and at
//!   least [`Q8_MIN_ELEMENTS`] elements (the writer's default; [`Writer::q8_min_elements`] changes it
//!   and the manifest records it), except position embeddings (`*position_embedding.weight`:
//!   77×768, added to every token, kept f16). CLIP's token embedding (49408×768) is q8 with one
//!   scale per token row — 38 MB instead of 76 MB in f16, each row within 1/254 of its own
//!   largest value, the same bound as every other q8 row. Rows are the first
//!   dimension (output features/channels), columns the product of the others. Row `r` has
//!   `scale_r = max|w_r| / 127` (f32) and values `q = round(w / scale_r)` in `[-127, 127]`; the bytes
//!   are the `rows` f32 scales followed by the `rows × cols` int8 values. Decoding is `q · scale_r`,
//!   within `scale_r / 2 = max|w_r| / 254` of the original. Non-finite values in such a tensor are an
//!   error. Every other tensor (biases, norms, the position embedding, tensors under the size) is stored as `f16`
//!   under the rule above.
//!
//! `q8` is this crate's own layout, not burn's quantized tensors: burn 0.22's `QuantScheme` tensors
//! (per-tensor or per-block scales, values packed in u32 words) are a device representation whose
//! kernels differ per backend and whose serialization is burn's record format. The networks run in
//! f32 today and the loader dequantizes on the host before uploading, so what matters is a small
//! layout that any reader (the browser, Python) can decode without burn; running int8 on the device
//! would be a later, separate step.

mod reader;
mod writer;

#[cfg(test)]
mod tests;

use serde::{Deserialize, Serialize};

use crate::config::SdConfig;
use crate::layout::Component;
use crate::Error;

pub use reader::{decode, verify_shard, ShardReader};
pub use writer::{Source, Writer};

/// `format` of the manifest.
pub const FORMAT: &str = "stylus-sd-shards";
/// The manifest version this crate writes and reads.
pub const VERSION: u32 = 1;
/// Default shard limit: 64 MiB.
pub const DEFAULT_SHARD_BYTES: u64 = 64 << 20;
/// The smallest accepted shard limit (tests use KB-level limits).
pub const MIN_SHARD_BYTES: u64 = 1024;
/// Tensor start offsets (and so the shard limit) are multiples of this.
pub const ALIGN: u64 = 16;
/// Weights with fewer elements stay f16 under the `q8` policy (default threshold).
pub const Q8_MIN_ELEMENTS: usize = 4096;

/// How weights are stored: every tensor f32, every tensor f16, or q8 where the rule allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DtypePolicy {
    F32,
    F16,
    Q8,
}

impl std::str::FromStr for DtypePolicy {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        match s {
            "f32" => Ok(DtypePolicy::F32),
            "f16" => Ok(DtypePolicy::F16),
            "q8" => Ok(DtypePolicy::Q8),
            other => Err(Error::Convert(format!("unknown dtype `{other}` (expected f16, q8 or f32)"))),
        }
    }
}

/// The encoding of one stored tensor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Encoding {
    F32,
    F16,
    Q8,
}

/// q8 layout of one tensor: `rows` f32 scales, then `rows × cols` int8 values, row-major.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Q8Layout {
    pub rows: usize,
    pub cols: usize,
}

/// One byte range of a tensor's encoding in a shard.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Piece {
    pub shard: usize,
    pub offset: u64,
    pub len: u64,
}

/// One shard file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardInfo {
    /// File name next to the manifest (`shard-00000.bin`).
    pub file: String,
    pub bytes: u64,
    /// Lowercase hex sha256 of the shard.
    pub sha256: String,
    /// A gzip copy of the shard next to it, for transfer (`stylus convert --gzip`; the browser
    /// downloads it, checks its sha256, decompresses and checks `sha256` again). Readers of the raw
    /// shards ignore it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gzip: Option<EncodedFile>,
}

/// A transfer encoding of a shard: file name next to the manifest, size and sha256 of its bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EncodedFile {
    pub file: String,
    pub bytes: u64,
    pub sha256: String,
}

/// Whether a tensor belongs to the VAE's encoder half (`encoder.*`, `quant_conv.*`), which only
/// image-to-image needs: text-to-image conversions may leave it out ([`Manifest::vae_encoder`]).
pub fn is_vae_encoder(component: Component, path: &str) -> bool {
    component == Component::Vae && (path.starts_with("encoder.") || path.starts_with("quant_conv."))
}

fn yes() -> bool {
    true
}

fn is_true(b: &bool) -> bool {
    *b
}

/// One stored tensor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TensorInfo {
    pub component: Component,
    /// Diffusers path, as `sd_params` names it.
    pub path: String,
    /// Shape in the model (diffusers convention).
    pub shape: Vec<usize>,
    pub dtype: Encoding,
    /// Length of the encoding (sum of the pieces).
    pub bytes: u64,
    pub pieces: Vec<Piece>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub q8: Option<Q8Layout>,
}

impl TensorInfo {
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }
}

/// `manifest.json` of a converted model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: String,
    pub version: u32,
    /// Preset name of the config (`sd15`, `tiny`).
    pub config: String,
    /// The architecture the tensors are for.
    pub sd_config: SdConfig,
    pub dtype: DtypePolicy,
    /// Every shard is at most this many bytes.
    pub shard_limit: u64,
    /// The q8 size rule's threshold (default [`Q8_MIN_ELEMENTS`]).
    pub q8_min_elements: usize,
    /// Sum of the shards' bytes.
    pub total_bytes: u64,
    pub shards: Vec<ShardInfo>,
    pub tensors: Vec<TensorInfo>,
    /// False when the VAE encoder was left out ([`is_vae_encoder`]; `stylus convert
    /// --no-vae-encoder`): the model generates from text, and image-to-image is refused.
    #[serde(default = "yes", skip_serializing_if = "is_true")]
    pub vae_encoder: bool,
}

/// The encoding `policy` gives the tensor at `path` with `shape` (see the module docs), with the
/// q8 size threshold `q8_min_elements`.
pub fn encoding_for(policy: DtypePolicy, path: &str, shape: &[usize], q8_min_elements: usize) -> Encoding {
    match policy {
        DtypePolicy::F32 => Encoding::F32,
        DtypePolicy::F16 => Encoding::F16,
        DtypePolicy::Q8 => {
            let numel: usize = shape.iter().product();
            let matrix = shape.len() == 2 || shape.len() == 4;
            if matrix && numel >= q8_min_elements && path.ends_with(".weight") && !path.ends_with("position_embedding.weight") {
                Encoding::Q8
            } else {
                Encoding::F16
            }
        }
    }
}

/// Bytes of a tensor of `shape` in `encoding`.
pub fn encoded_len(encoding: Encoding, shape: &[usize]) -> u64 {
    let n: u64 = shape.iter().map(|&d| d as u64).product();
    match encoding {
        Encoding::F32 => 4 * n,
        Encoding::F16 => 2 * n,
        Encoding::Q8 => 4 * shape.first().copied().unwrap_or(1) as u64 + n,
    }
}

/// The q8 row layout of `shape` (rows = first dimension).
fn q8_layout(shape: &[usize]) -> Q8Layout {
    let rows = shape.first().copied().unwrap_or(1);
    Q8Layout { rows, cols: shape.iter().skip(1).product() }
}

/// Lowercase hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn bad(msg: String) -> Error {
    Error::Manifest(msg)
}

/// A shard file name is a plain name (no directories): it is joined to the manifest's folder/URL.
fn plain_file_name(name: &str) -> bool {
    !name.is_empty() && name != "." && name != ".." && !name.contains(['/', '\\', '\0']) && !name.contains(':')
}

impl Manifest {
    /// Parses and validates a manifest (see [`Manifest::validate`]).
    pub fn from_json(bytes: &[u8]) -> Result<Self, Error> {
        let m: Manifest = serde_json::from_slice(bytes).map_err(|e| bad(format!("not a converted-model manifest: {e}")))?;
        m.validate()?;
        Ok(m)
    }

    /// Compact JSON (deterministic: fields in declaration order; ≈ 0.1 KB per tensor).
    pub fn to_json(&self) -> Vec<u8> {
        let mut v = serde_json::to_vec(self).unwrap_or_default();
        v.push(b'\n');
        v
    }

    /// Checks the format and version, file names, and that every tensor's pieces lie inside their
    /// shards and add up to its encoding's length (so reading can never index out of bounds).
    pub fn validate(&self) -> Result<(), Error> {
        if self.format != FORMAT {
            return Err(bad(format!("format `{}`, expected `{FORMAT}`", self.format)));
        }
        if self.version != VERSION {
            return Err(bad(format!("version {} is not supported (this build reads version {VERSION})", self.version)));
        }
        let mut total = 0u64;
        for s in &self.shards {
            if s.bytes > self.shard_limit {
                return Err(bad(format!("shard `{}` has {} bytes, over the limit {}", s.file, s.bytes, self.shard_limit)));
            }
            for (file, sha) in std::iter::once((&s.file, &s.sha256)).chain(s.gzip.as_ref().map(|g| (&g.file, &g.sha256))) {
                if !plain_file_name(file) {
                    return Err(bad(format!("shard file name `{file}` is not a plain file name")));
                }
                if sha.len() != 64 || !sha.bytes().all(|c| c.is_ascii_hexdigit()) {
                    return Err(bad(format!("shard `{file}`: sha256 `{sha}` is not 64 hex digits")));
                }
            }
            total += s.bytes;
        }
        if total != self.total_bytes {
            return Err(bad(format!("total_bytes {} but the shards add up to {total}", self.total_bytes)));
        }
        for t in &self.tensors {
            let name = &t.path;
            if !self.vae_encoder && is_vae_encoder(t.component, name) {
                return Err(bad(format!("tensor `{name}` of the VAE encoder in a model marked as converted without it")));
            }
            let want = encoded_len(t.dtype, &t.shape);
            if t.bytes != want {
                return Err(bad(format!("tensor `{name}`: {} bytes, a {:?} tensor of shape {:?} has {want}", t.bytes, t.dtype, t.shape)));
            }
            match (t.dtype, t.q8) {
                (Encoding::Q8, Some(l)) if l == q8_layout(&t.shape) => {}
                (Encoding::Q8, _) => return Err(bad(format!("tensor `{name}`: q8 without the row layout of shape {:?}", t.shape))),
                (_, Some(_)) => return Err(bad(format!("tensor `{name}`: q8 layout on a {:?} tensor", t.dtype))),
                _ => {}
            }
            let mut sum = 0u64;
            for p in &t.pieces {
                let shard = self.shards.get(p.shard).ok_or_else(|| bad(format!("tensor `{name}`: shard {} does not exist", p.shard)))?;
                if p.offset.checked_add(p.len).is_none_or(|end| end > shard.bytes) {
                    return Err(bad(format!("tensor `{name}`: bytes {}+{} lie outside shard `{}` ({} bytes)", p.offset, p.len, shard.file, shard.bytes)));
                }
                sum += p.len;
            }
            if sum != t.bytes {
                return Err(bad(format!("tensor `{name}`: pieces hold {sum} bytes, the encoding has {}", t.bytes)));
            }
        }
        Ok(())
    }

    /// Errors unless the tensors were converted for `cfg`.
    pub fn check_config(&self, cfg: &SdConfig) -> Result<(), Error> {
        if &self.sd_config != cfg {
            return Err(bad(format!("this model was converted for config `{}`, a different architecture than the one requested", self.config)));
        }
        Ok(())
    }
}
