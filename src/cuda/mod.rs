//! The CUDA path: the model of `src/cpu/` on one NVIDIA GPU. Twin: `src/cpu/`.
//!
//! - `kernels/`: the sources of `kernels/*.cu` (embedded in the binary) and their NVRTC compilation
//!   (`mod.rs`), then one file per layer, named like its `.cu` and CPU twin, with the launch wrappers
//!   (the CPU twin's signature) and their launch settings as `pub const`s.
//! - `context.rs`: the device, its stream, device buffers, copies, and the compiled kernels.
//! - `gpt2.rs`: GPT-2 on the device, composing the kernels exactly as `src/cpu/gpt2.rs` composes the layers.
//! - `backend.rs`: `CudaBackend`, the `Backend` the training loop drives.
//!
//! Nothing here needs CUDA at build time: libcuda, libnvrtc and libcublas are opened when first used.
//! cudarc panics when a library is missing, so `availability` checks for them before anything else.
//!
//! How this is checked: on a GPU, `tests/cuda.rs` runs every kernel against its CPU twin and whole
//! training steps against the CPU path (`GPT_REQUIRE_CUDA=1` makes a missing GPU a failure). Without
//! one, `tests/kernels_compile.rs` compiles every kernel with NVRTC (libnvrtc from a pip wheel, see
//! `.ci/install-nvrtc.sh`), `dev/cuda_emu` runs the kernels on the CPU in a small emulator, and
//! `dev/cuda_mock` runs `gpt2.rs` on host-memory stand-ins against the CPU path.

pub mod backend;
pub mod context;
pub mod gpt2;
pub mod kernels;

pub use backend::CudaBackend;
pub use context::{Dev, DeviceBuffer, Gpu, Matmul};
pub use gpt2::CudaGpt2;

/// Whether CUDA can be used here: `Ok(n)` with the number of devices, or why not. Checks that libcuda
/// and libnvrtc can be loaded before making any other cudarc call, because cudarc panics (rather
/// than returning an error) when a library is missing.
pub fn availability() -> Result<usize, String> {
    // SAFETY: these only try to dlopen the library under its usual names; nothing is called.
    if !unsafe { cudarc::driver::sys::is_culib_present() } {
        return Err("no NVIDIA driver library (libcuda.so) found".into());
    }
    // SAFETY: as above.
    if !unsafe { cudarc::nvrtc::sys::is_culib_present() } {
        return Err("libnvrtc.so (CUDA's runtime compiler, needed to compile the kernels) not found: \
                    add CUDA's lib64 folder to LD_LIBRARY_PATH"
            .into());
    }
    match cudarc::driver::CudaContext::device_count() {
        Ok(0) => Err("the NVIDIA driver is present but sees no GPU".into()),
        Ok(n) => Ok(n as usize),
        Err(e) => Err(format!("the NVIDIA driver could not be initialized: {e}")),
    }
}

/// Free and total memory of GPU `ordinal`, in bytes. Call `availability()` first.
pub fn free_memory(ordinal: usize) -> anyhow::Result<(usize, usize)> {
    use anyhow::Context;
    let ctx =
        cudarc::driver::CudaContext::new(ordinal).with_context(|| format!("cannot open CUDA device {ordinal}"))?;
    ctx.mem_get_info().context("cannot read the free GPU memory")
}

/// Whether libnvrtc can be loaded (all that compiling the kernels needs; no GPU or driver required).
pub fn nvrtc_available() -> bool {
    // SAFETY: only tries to dlopen the library.
    unsafe { cudarc::nvrtc::sys::is_culib_present() }
}

/// A card's peak throughput, for MFU.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PeakFlops {
    /// The card as named in the table.
    pub card: &'static str,
    /// Dense bf16 tensor-core FLOP/s.
    pub bf16_dense: f64,
    /// fp32 FLOP/s without tensor cores: the peak our fp32 kernels (and cuBLAS SGEMM) are measured against.
    pub fp32: f64,
}

/// The peak FLOP/s of a card, found from its name string (`CudaContext::name`), from NVIDIA's data
/// sheets. The PCIe H100 is checked first since its name also contains "H100".
pub fn peak_flops(device_name: &str) -> Option<PeakFlops> {
    let name = device_name.to_uppercase();
    let table = [
        ("H100 PCIE", PeakFlops { card: "H100 PCIe", bf16_dense: 756e12, fp32: 51e12 }),
        ("H100", PeakFlops { card: "H100 SXM", bf16_dense: 989e12, fp32: 67e12 }),
        ("H200", PeakFlops { card: "H200", bf16_dense: 989e12, fp32: 67e12 }),
    ];
    table.iter().find(|(key, _)| key.split(' ').all(|word| name.contains(word))).map(|&(_, peak)| peak)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peak_flops_are_found_from_the_card_name() {
        assert_eq!(peak_flops("NVIDIA H100 80GB HBM3").unwrap().card, "H100 SXM");
        assert_eq!(peak_flops("NVIDIA H100 PCIe").unwrap().fp32, 51e12);
        assert_eq!(peak_flops("NVIDIA H200").unwrap().bf16_dense, 989e12);
        assert!(peak_flops("NVIDIA GeForce RTX 4090").is_none());
    }
}
