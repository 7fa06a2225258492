//! The CLI's subcommands, one module each; `src/main.rs` only parses arguments and dispatches.

use gpt2::choice::Choice;

pub mod bench;
pub mod eval;
pub mod export;
pub mod memory;
pub mod plot;
pub mod prepare;
pub mod sample;
pub mod serve;
pub mod tokenize;
pub mod tokenizer;
pub mod train;

/// The command line's parser for a library enum (`gpt2::choice::Choice`): its names and help,
/// listed in `--help`, parsed with `Choice::parse`. So the library's types need no clap.
pub fn choice<T: Choice + Send + Sync>() -> impl clap::builder::TypedValueParser<Value = T> {
    use clap::builder::TypedValueParser;
    let values = T::CHOICES.iter().map(|&(_, name, help)| clap::builder::PossibleValue::new(name).help(help));
    clap::builder::PossibleValuesParser::new(values).try_map(|s| T::parse(&s))
}
