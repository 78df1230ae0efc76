//! One module per `stylus` subcommand.

pub mod compose;
pub mod index;
pub mod inspect;
pub mod tokenize;
