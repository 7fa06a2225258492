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
pub mod tokenizer;
pub mod train;
