//! Fast CPU versions of the hot layers, with exactly the signatures and semantics of the readable
//! ones in `src/cpu/`. Each file here is tested against its readable twin (same name one directory up)
//! and benchmarked beside it in `benches/`.
//!
//! - `matmul/`: a cache-blocked, packed, register-tiled GEMM (the BLIS/GotoBLAS scheme) with
//!   AVX-512 / AVX2+FMA micro-kernels picked at run time and a portable fallback: the driver (the
//!   public functions, tiling and threads) in `mod.rs`, then `pack.rs`, `kernels.rs` and `tests.rs`.
//! - `attention.rs`: the readable algorithm, with a parallel backward and vectorized dot products.
//! - `gelu.rs`: GELU with a vectorizable polynomial tanh instead of a libm call per element.
//! - `softmax_crossentropy.rs`: the softmax with a vectorizable exp.
//! - `math.rs`: that exp and tanh, written so that LLVM vectorizes them.

pub mod attention;
pub mod gelu;
pub mod math;
pub mod matmul;
pub mod softmax_crossentropy;
