//! Stable Diffusion 1.5 engine: configs (`SdConfig::v1_5()`), the checkpoint remap table
//! (`layout`), loading of single-file and diffusers checkpoints from bytes (`checkpoint`) and the
//! CLIP tokenizer (`tokenizer`), and the sharded f32/f16/q8 format of converted models
//! (`convert`). Libraries take bytes; binaries do the I/O.

pub mod checkpoint;
pub mod config;
pub mod convert;
pub mod layout;
pub mod schedulers;
pub mod tokenizer;

pub use config::{ClipConfig, SdConfig, UNetConfig, VaeConfig};
pub use layout::{sd_params, Component, ParamSpec};
pub use schedulers::{Scheduler, SchedulerKind};
pub use tokenizer::{ClipTokenizer, TokenWindow};

/// Every failure of this crate, each with a message a user can act on.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "pickled checkpoints (.ckpt/.pt) are refused because loading them can run arbitrary code; \
         convert once with `python -c \"import torch,safetensors.torch as s; \
         s.save_file(torch.load('in.ckpt',weights_only=True)['state_dict'],'out.safetensors')\"` \
         or diffusers' conversion scripts, then load the .safetensors file"
    )]
    PickleRefused,
    #[error("not a valid safetensors file: {0}")]
    Safetensors(String),
    #[error("not a Stable Diffusion 1.5 checkpoint: looks like {0}")]
    NotSd15(String),
    #[error("{component}: {count} expected tensors are missing (first: {first:?}); is this an SD1.5 checkpoint?")]
    MissingTensors { component: String, count: usize, first: Vec<String> },
    #[error("tensor `{key}` has shape {found:?}, SD1.5 expects {expected:?} ({hint})")]
    ShapeMismatch { key: String, expected: Vec<usize>, found: Vec<usize>, hint: String },
    #[error("tensor `{key}` has dtype {dtype}; only F32, F16 and BF16 weights are supported")]
    UnsupportedDtype { key: String, dtype: String },
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    #[error("invalid config: {0}")]
    Config(String),
    /// A converted model's manifest is unreadable, inconsistent or of another format version.
    #[error("converted model manifest: {0}")]
    Manifest(String),
    /// Bad input to the converter (shard limit, duplicate tensor, values q8 cannot hold, …).
    #[error("convert: {0}")]
    Convert(String),
    #[error(
        "tensor `{key}` holds {value}, beyond f16's range (±65504): it cannot be stored as f16 without \
         changing the model; convert with dtype f32"
    )]
    F16Overflow { key: String, value: f32 },
    #[error("shard `{file}` is corrupt or not this manifest's: {reason}")]
    ShardCorrupt { file: String, reason: String },
    /// The caller's shard read/write callback failed.
    #[error("shard `{file}`: {message}")]
    ShardIo { file: String, message: String },
}
