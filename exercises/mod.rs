//! Exercises: write a backward pass (or AdamW) yourself and let the gradient check judge it.
//! See EXERCISES.md at the top of the repository for the order, the commands and what success
//! looks like.
//!
//! Each file here holds a blank with the signature and shapes of one reference function, hints, and
//! a `todo!()`. Nothing in it is compiled unless you ask: `cargo test --features exercise-layernorm`
//! (for example) swaps `src/cpu/layernorm.rs`'s `layernorm_backward` for the one in
//! `exercises/layernorm.rs` everywhere in the crate, so the gradient checks (and the whole model
//! with `--kernels reference`) run your code. Drop the feature to get the reference back;
//! `git checkout exercises/` gives you the blanks back.

// the blanks do not use their arguments yet
#![allow(unused_variables, unused_mut, clippy::too_many_arguments)]

pub mod adamw;
pub mod attention;
pub mod bpe_merge;
pub mod encoder;
pub mod gelu;
pub mod layernorm;
pub mod matmul;
pub mod residual;
pub mod softmax_crossentropy;
