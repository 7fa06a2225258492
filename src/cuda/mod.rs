//! The CUDA path: the model of `src/cpu/` on one NVIDIA GPU. Twin: `src/cpu/`.
//!
//! - `kernels/`: the sources of `kernels/*.cu` (embedded in the binary) and their NVRTC compilation
//!   (`mod.rs`), then one file per layer, named like its `.cu` and CPU twin, with the launch wrappers
//!   (the CPU twin's signature) and their launch settings as `pub const`s.
//! - `context.rs`: the device, its stream, device buffers, copies, and the compiled kernels.
//! - `storage.rs`: how a number is stored on the device, `f32` or `Bf16` (`src/precision.rs`), the
//!   type the launch wrappers and the model are generic over.
//! - `gpt2.rs`: GPT-2 on the device, composing the kernels exactly as `src/cpu/gpt2.rs` composes the layers.
//! - `backend.rs`: `CudaBackend`, the `Backend` the training loop drives.
//!
//! - `libs.rs`: finding libcuda, libnvrtc and libcublas where CUDA installs them (no LD_LIBRARY_PATH).
//!
//! Nothing here needs CUDA at build time: libcuda, libnvrtc and libcublas are opened when first used.
//! cudarc panics when a library is missing, so `availability` finds them (`libs::load`) before anything else.
//!
//! How this is checked: on a GPU, `tests/cuda.rs` runs every kernel against its CPU twin and whole
//! training steps against the CPU path (`GPT_REQUIRE_CUDA=1` makes a missing GPU a failure). Without
//! one, `tests/kernels_compile.rs` compiles every kernel with NVRTC (libnvrtc from a pip wheel, see
//! `.ci/install-nvrtc.sh`), `dev/cuda_emu` runs the kernels on the CPU in a small emulator, and
//! `dev/cuda_mock` runs `gpt2.rs` on host-memory stand-ins against the CPU path.

pub mod backend;
pub mod buffer;
#[cfg(not(gpt2_cuda_mock))]
pub mod context;
pub mod cublaslt_handle;
pub mod gpt2;
#[cfg(not(gpt2_cuda_mock))]
pub mod kernels;
pub mod libs;
pub mod peak;
pub mod storage;

pub use crate::backend::{sum_by_name, KernelTime};
// dev/cuda_mock/run.sh builds with `--cfg gpt2_cuda_mock`: its stand-ins of context.rs and of the
// kernels (host memory, each launch calling the CPU twin) replace the real ones, so that gpt2.rs and
// backend.rs run on the CPU (they are laid out as a table, one wrapper a line: rustfmt::skip)
#[cfg(gpt2_cuda_mock)]
#[path = "../../dev/cuda_mock/context.rs"]
#[rustfmt::skip]
pub mod context;
#[cfg(gpt2_cuda_mock)]
#[path = "../../dev/cuda_mock/kernels.rs"]
#[rustfmt::skip]
pub mod kernels;

pub use backend::CudaBackend;
pub use context::{Dev, DeviceBuffer, Gpu, Matmul};
pub use gpt2::CudaGpt2;
pub use storage::{Bf16, Storage};

// Here rather than beside the enum in context.rs, because dev/cuda_mock swaps context.rs for its
// stand-in (with its own Matmul) and the names must be the same for both.
impl crate::choice::Choice for Matmul {
    const WHAT: &'static str = "matmul";
    const CHOICES: &'static [(Self, &'static str, &'static str)] = &[
        (
            Matmul::Handwritten,
            "handwritten",
            "kernels/matmul.cu version 3: shared-memory tiles, 8x8 register blocks, wide loads, double \
             buffering, split-K weight gradient",
        ),
        (Matmul::Naive, "naive", "kernels/matmul.cu version 1: one thread per output (slow; the GPU's reference)"),
        (
            Matmul::Cublas,
            "cublas",
            "cuBLAS: SGEMM in fp32; in bf16 cuBLASLt with the bias, GELU and bias gradient fused",
        ),
    ];
}

/// Whether CUDA can be used here: `Ok(n)` with the number of devices, or why not. Finds and opens
/// libcuda and libnvrtc (`libs::load`: where CUDA installs them, no LD_LIBRARY_PATH needed) before
/// any other cudarc call, because cudarc panics (rather than returning an error) when a library is
/// missing. A missing library's error names it and every place looked in (`libs::NotFound`).
pub fn availability() -> Result<usize, String> {
    why_unavailable().map_err(|e| e.to_string())
}

/// Why CUDA cannot be used here, as `availability`, but keeping a missing library's details:
/// `--device auto` prints `NotFound::short`, `--device cuda` the whole list.
pub fn why_unavailable() -> Result<usize, Unavailable> {
    if cfg!(gpt2_cuda_mock) {
        return Ok(1); // dev/cuda_mock's stand-in GPU is always there
    }
    libs::load(libs::CudaLib::Driver).map_err(Unavailable::Missing)?;
    libs::load(libs::CudaLib::Nvrtc).map_err(Unavailable::Missing)?;
    match cudarc::driver::CudaContext::device_count() {
        Ok(0) => Err(Unavailable::Other("the NVIDIA driver is present but sees no GPU".into())),
        Ok(n) => Ok(n as usize),
        Err(e) => Err(Unavailable::Other(format!("the NVIDIA driver could not be initialized: {e}"))),
    }
}

/// Why there is no usable GPU.
#[derive(Debug)]
pub enum Unavailable {
    /// A library was not found (the places looked in are listed).
    Missing(libs::NotFound),
    /// The libraries are there, but the driver has no device or fails.
    Other(String),
}

impl Unavailable {
    /// One line, for `--device auto` falling back to the CPU.
    pub fn short(&self) -> String {
        match self {
            Unavailable::Missing(e) => e.short(),
            Unavailable::Other(why) => why.clone(),
        }
    }
}

impl std::fmt::Display for Unavailable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Unavailable::Missing(e) => write!(f, "{e}"),
            Unavailable::Other(why) => write!(f, "{why}"),
        }
    }
}

/// Free and total memory of GPU `ordinal`, in bytes. Call `availability()` first.
pub fn free_memory(ordinal: usize) -> anyhow::Result<(usize, usize)> {
    use anyhow::Context;
    if cfg!(gpt2_cuda_mock) {
        return Ok((80 << 30, 80 << 30)); // dev/cuda_mock's stand-in: an 80 GiB card
    }
    let ctx =
        cudarc::driver::CudaContext::new(ordinal).with_context(|| format!("cannot open CUDA device {ordinal}"))?;
    ctx.mem_get_info().context("cannot read the free GPU memory")
}

/// The compute capability (major, minor) of GPU `ordinal`, e.g. (9, 0) for an H100, read before
/// anything is compiled (it picks the default precision). Call `availability()` first.
pub fn compute_capability(ordinal: usize) -> anyhow::Result<(i32, i32)> {
    use anyhow::Context;
    let ctx =
        cudarc::driver::CudaContext::new(ordinal).with_context(|| format!("cannot open CUDA device {ordinal}"))?;
    ctx.compute_capability().context("cannot read the compute capability")
}

/// Whether libnvrtc can be found and opened (all that compiling the kernels needs; no GPU or driver
/// required), looking where `libs::load` looks.
pub fn nvrtc_available() -> bool {
    libs::load(libs::CudaLib::Nvrtc).is_ok()
}

#[cfg(test)]
mod tests {
    #[test]
    fn kernel_times_are_summed_by_name_in_launch_order() {
        let rows = super::sum_by_name([("b".to_string(), 1.0), ("a".to_string(), 2.0), ("b".to_string(), 0.5)]);
        assert_eq!(rows.len(), 2);
        assert_eq!((rows[0].name.as_str(), rows[0].calls, rows[0].ms), ("b", 2, 1.5));
        assert_eq!((rows[1].name.as_str(), rows[1].calls, rows[1].ms), ("a", 1, 2.0));
    }
}
