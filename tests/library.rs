//! The integration tests that call the library, as one test binary (Cargo.toml's [[test]] `library`):
//! each file stays where it was and is a module here, so its tests are named `file::test_name`
//! (`cargo test --release --test library bf16::` runs one file's). A new test file of this kind gets
//! a line here.

// Several files declare `mod common;` (tests/common/), each as in its own binary before: each gets
// its copy, as it did then, so that the files stay unchanged.
#![allow(clippy::duplicate_mod)]

#[path = "bf16.rs"]
mod bf16;
#[path = "files.rs"]
mod files;
#[path = "hf.rs"]
mod hf;
#[path = "mutation.rs"]
mod mutation;
#[path = "nan_guard.rs"]
mod nan_guard;
#[path = "pytorch_parity.rs"]
mod pytorch_parity;
#[path = "sample.rs"]
mod sample;
#[path = "serve.rs"]
mod serve;
#[path = "tokenizer.rs"]
mod tokenizer;
#[path = "train_loop.rs"]
mod train_loop;
#[path = "training.rs"]
mod training;
#[path = "twins.rs"]
mod twins;
