//! LoRA adapters for SD1.5: parse kohya/A1111 LoRA + LoCon, LyCORIS LoHa/LoKr and diffusers/PEFT
//! files from bytes, resolve their keys by lookup in the SD1.5 module table, and compute the exact
//! weight deltas and merges. Math and naming: `shared/reference/NOTES.md` §5.3 (checked against
//! diffusers `fuse_lora` and `lycoris.functional`), kohya-ss `networks/lora.py`, LyCORIS, peft.
//!
//! # Use
//! ```no_run
//! # fn demo(bytes: &[u8], base_q: &[f32]) -> Result<(), stylus_lora::Error> {
//! use stylus_lora::{compose, merged, LoraFile, ModuleKey, ModuleTable};
//! use stylus_sd::{Component, SdConfig};
//! let table = ModuleTable::new(&SdConfig::v1_5())?;
//! let lora = LoraFile::parse(bytes, &table)?;        // refuses SDXL/SD2, NaN, bad shapes, …
//! let sum = compose(&[(&lora, 0.8)])?;               // Σ wᵢ·ΔWᵢ per module
//! let key = ModuleKey::new(Component::Unet, "mid_block.attentions.0.transformer_blocks.0.attn1.to_q");
//! if let Some(d) = sum.get(&key) {
//!     let w = merged(base_q, &d.shape, d)?;          // base + Σ, base left untouched
//! #   let _ = w;
//! }
//! # Ok(()) }
//! ```
//!
//! # Restoring the base: keep it pristine
//! `merged − Σ` does not give the base back bit for bit in f32, so this crate never asks for it.
//! The engine keeps the pristine base weights and either
//! * re-merges from the pristine base whenever the adapter set changes (`merged(base, …)` or
//!   [`add_in_place`] on a scratch copy), streaming module by module with [`delta_for`] /
//!   [`touched_modules`] so that at most one module's delta is materialised at a time; or
//! * applies adapters at run time without touching weights, per sample / per mask:
//!   `y = W x + Σᵢ wᵢ · scaleᵢ · upᵢ (downᵢ x)` with the factors of [`LoraFile::low_rank`]
//!   (LoRA / LoCon; LoHa, LoKr and Tucker LoCon have no such factors: use [`LoraFile::delta`]).

mod adapter;
mod compose;
mod delta;
mod family;
mod file;
mod hash;
mod inspect;
mod keys;
mod meta;
mod peft;
mod table;
mod tensor;

pub use adapter::{AdapterKind, LowRank, ModuleAdapter};
pub use compose::{add_in_place, compose, delta_for, merged, touched_modules};
pub use family::{BaseFamily, BaseGuess};
pub use file::{Format, LoraFile, Summary, Unmatched};
pub use hash::{sha256_hex, verify_sha256};
pub use inspect::{inspect, Inspection};
pub use meta::{kohya_meta, KohyaMeta};
pub use table::{ModuleInfo, ModuleKey, ModuleTable};
pub use tensor::Tensor;

/// Largest LoRA file accepted (real SD1.5 LoRAs are 4–300 MB).
pub const MAX_FILE_BYTES: u64 = 1 << 30;
/// Largest safetensors JSON header accepted (kohya metadata with tag frequencies is well below).
pub const MAX_HEADER_BYTES: u64 = 32 << 20;
/// Most tensors in one file (a LoKr on every SD1.5 module has about 2,500).
pub const MAX_TENSORS: usize = 10_000;
/// Largest rank accepted for any factorised side.
pub const MAX_RANK: usize = 1024;

/// Every failure of this crate, each with a message a user can act on.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{what} is {size}, over the limit of {limit}")]
    TooLarge { what: &'static str, size: u64, limit: u64 },
    #[error("pickled files (.ckpt/.pt/.bin) are refused because loading them can run arbitrary code; use the .safetensors download")]
    PickleRefused,
    #[error("not a valid safetensors file: {0}")]
    Safetensors(String),
    #[error("tensor `{key}` has dtype {dtype}; only F32, F16 and BF16 are supported")]
    UnsupportedDtype { key: String, dtype: String },
    #[error("tensor `{key}` contains NaN or infinite values; the file is corrupt")]
    NonFinite { key: String },
    #[error("this LoRA was made for {family}, not this SD1.5 model: {reason}")]
    WrongBaseModel { family: BaseFamily, reason: String },
    #[error("module `{module}`: {detail}")]
    ShapeMismatch { module: String, detail: String },
    #[error("module `{module}`: rank {rank} is outside 1..={limit}", limit = MAX_RANK)]
    BadRank { module: String, rank: usize },
    #[error("module `{module}`: {detail}")]
    IncompleteModule { module: String, detail: String },
    #[error("module `{module}` is given twice (keys {keys:?}); the file mixes spellings")]
    ConflictingKeys { module: String, keys: Vec<String> },
    #[error("`{key}`: {feature} is not supported")]
    Unsupported { key: String, feature: &'static str },
    #[error("invalid adapter metadata: {0}")]
    BadMetadata(String),
    #[error("no tensor of this file matches an SD1.5 module ({count} keys, e.g. {first:?})")]
    NoModules { count: usize, first: Vec<String> },
    #[error("module table: kohya name `{name}` would name both `{a}` and `{b}`")]
    NameCollision { name: String, a: String, b: String },
    #[error("adapter weight {0} is not a finite number")]
    BadWeight(f32),
    #[error("expected sha256 `{0}` is not 64 hex digits")]
    BadHash(String),
    #[error("sha256 mismatch: expected {expected}, file has {actual}")]
    HashMismatch { expected: String, actual: String },
}
