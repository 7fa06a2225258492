//! The CPU reference: one file per layer, forward and backward side by side, then `gpt2.rs`
//! composing them. Every CUDA kernel in `kernels/` is checked against these functions.

pub mod fast;
pub mod matmul;
