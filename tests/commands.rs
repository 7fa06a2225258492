//! The integration tests that run the `gpt2` binary as a child process, as one test binary
//! (Cargo.toml's [[test]] `commands`): each file stays where it was and is a module here, so its tests
//! are named `file::test_name` (`cargo test --release --test commands cli::` runs one file's). A new
//! test file of this kind gets a line here.

#![allow(clippy::duplicate_mod)] // several files each load tests/common/parquet.rs as their own module

#[path = "checksum.rs"]
mod checksum;
#[path = "cli.rs"]
mod cli;
#[path = "eval.rs"]
mod eval;
#[path = "plot.rs"]
mod plot;
#[path = "prepare_cli.rs"]
mod prepare_cli;
#[path = "prepare_lock.rs"]
mod prepare_lock;
#[path = "prepare_parquet.rs"]
mod prepare_parquet;
#[path = "tokenizer_train.rs"]
mod tokenizer_train;
