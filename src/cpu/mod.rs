//! The CPU reference: one file per layer, forward and backward side by side, then `gpt2.rs`
//! composing them. Every CUDA kernel in `kernels/` is checked against these functions.

pub mod attention;
pub mod backend;
pub mod bf16;
pub mod decode;
pub mod encoder;
pub mod fast;
pub mod gelu;
pub mod gpt2;
pub mod kernels;
pub mod layernorm;
pub mod layers;
pub mod matmul;
pub mod residual;
pub mod softmax_crossentropy;
