//! The cuBLASLt handle a `Gpu` owns, with its workspace and bias-gradient scratch: made by
//! `context.rs` when the GPU opens with `--matmul cublas`, used by the GEMMs of
//! `kernels/cublaslt.rs`. Below both, so that neither imports the other.

use super::buffer::DeviceBuffer;
use anyhow::{anyhow, bail, Result};
use cudarc::cublaslt::{result as lt, sys};

/// Bytes of workspace cuBLASLt may use per GEMM: NVIDIA's recommendation for Hopper (32 MiB), as
/// llm.c and cudarc use. Allocated once, with the handle; not part of `src/memory.rs`'s plan (the
/// model's buffers), like cuBLAS's own workspace: `GPU_MEMORY_RESERVE` leaves room for it.
pub const CUBLASLT_WORKSPACE_BYTES: usize = 32 * 1024 * 1024;

/// fp32 numbers of the bias-gradient scratch: BGRADB writes (=) the bias gradient of this
/// micro-batch there, and `cublaslt_matmul_backward` adds it into dbias, which accumulates (+=)
/// over micro-batches. The longest bias of GPT-2 is fcb, 4C (6400 at C = 1600, the largest preset).
pub const CUBLASLT_DBIAS_SCRATCH: usize = 64 * 1024;

/// The cuBLASLt handle of a `Gpu`, its workspace and the bias-gradient scratch.
pub struct CublasLt {
    pub(crate) handle: sys::cublasLtHandle_t,
    pub(crate) workspace: DeviceBuffer<u8>,
    pub(crate) dbias_scratch: DeviceBuffer<f32>,
}

// SAFETY: a cuBLASLt handle may be used from any thread (cuBLASLt keeps no thread-local state in
// it), and every call we make on it goes to the Gpu's one stream, in order (cudarc's own
// CudaBlasLT is Send and Sync for the same reason).
unsafe impl Send for CublasLt {}
unsafe impl Sync for CublasLt {}

impl CublasLt {
    /// A handle, with `workspace` (`CUBLASLT_WORKSPACE_BYTES`) and `dbias_scratch`
    /// (`CUBLASLT_DBIAS_SCRATCH` floats) allocated by the caller on the same device. The caller has
    /// checked that libcublasLt is there (cudarc panics otherwise).
    pub fn new(workspace: DeviceBuffer<u8>, dbias_scratch: DeviceBuffer<f32>) -> Result<CublasLt> {
        if workspace.len() < CUBLASLT_WORKSPACE_BYTES || dbias_scratch.len() < CUBLASLT_DBIAS_SCRATCH {
            bail!("cuBLASLt needs a workspace of {CUBLASLT_WORKSPACE_BYTES} bytes and {CUBLASLT_DBIAS_SCRATCH} floats of scratch");
        }
        let handle = lt::create_handle().map_err(|e| anyhow!("cannot create a cuBLASLt handle: {e}"))?;
        Ok(CublasLt { handle, workspace, dbias_scratch })
    }
}

impl Drop for CublasLt {
    fn drop(&mut self) {
        // SAFETY: the handle was created in `new` and is destroyed once, here; nothing queued on it
        // can outlive the Gpu, whose stream is synchronized when the context goes.
        let _ = unsafe { lt::destroy_handle(self.handle) };
    }
}
