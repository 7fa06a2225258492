//! The CPU reference: one file per layer, forward and backward side by side, then `gpt2.rs`
//! composing them (training) and `decode.rs` composing them again for new tokens with a KV cache
//! (`sample` and `serve`). `kernels.rs` names the two implementations (readable, `fast/`) and the
//! type of each layer function; `layers.rs` binds them by precision. Every CUDA kernel in
//! `kernels/` is checked against these functions.

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
