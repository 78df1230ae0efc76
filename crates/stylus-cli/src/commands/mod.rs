//! One module per `stylus` subcommand.

pub mod catalog;
pub mod compose;
pub mod convert;
pub mod embed;
pub mod embedder;
pub mod generate;
pub mod index;
pub mod inspect;
pub mod lora;
pub mod synth;
pub mod tokenize;
