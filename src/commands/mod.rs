//! The CLI's subcommands, one module each; `src/main.rs` only parses arguments and dispatches.

pub mod bench;
pub mod eval;
pub mod export;
pub mod memory;
pub mod plot;
pub mod prepare;
pub mod sample;
pub mod serve;
pub mod tokenize;
pub mod train;

/// The command line's parser for a library enum: the names and help of its `CHOICES` (listed in
/// `--help`), parsed with its `FromStr`. So the library's types need no clap.
pub fn choice<T>(choices: &'static [(&'static str, &'static str)]) -> impl clap::builder::TypedValueParser<Value = T>
where
    T: std::str::FromStr<Err = String> + Clone + Send + Sync + 'static,
{
    use clap::builder::TypedValueParser;
    let values = choices.iter().map(|&(name, help)| clap::builder::PossibleValue::new(name).help(help));
    clap::builder::PossibleValuesParser::new(values).try_map(|s| s.parse::<T>())
}
