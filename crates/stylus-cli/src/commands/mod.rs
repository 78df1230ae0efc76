//! One module per `stylus` subcommand.

pub mod compose;
pub mod generate;
pub mod index;
pub mod inspect;
pub mod lora;
pub mod tokenize;
