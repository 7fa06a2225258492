//! Launch code for `kernels/global_norm.cu`; the CPU twin is `global_norm` in `src/optim.rs`.

use crate::cuda::context::{Dev, Gpu};
use anyhow::Result;
use cudarc::driver::LaunchConfig;

/// Threads per block of `global_norm_squared`: a multiple of 32, at most 32 warps (the warps' sums
/// meet in 32 doubles of shared memory).
pub const GLOBAL_NORM_BLOCK: u32 = 512;
/// At most this many blocks per SM; the grid strides over the gradients.
pub const GLOBAL_NORM_BLOCKS_PER_SM: u32 = 2;

impl Gpu {
    /// The L2 norm of all of `grads`, the squares summed in f64 (waits for the result).
    pub fn global_norm(&self, grads: Dev<f32>) -> Result<f32> {
        let out = self.norm_scratch.all();
        self.zero(out)?;
        let max_blocks = (GLOBAL_NORM_BLOCKS_PER_SM * self.num_sms) as usize;
        let blocks = grads.len().div_ceil(GLOBAL_NORM_BLOCK as usize).clamp(1, max_blocks);
        let cfg =
            LaunchConfig { grid_dim: (blocks as u32, 1, 1), block_dim: (GLOBAL_NORM_BLOCK, 1, 1), shared_mem_bytes: 0 };
        let n = grads.len() as i64;
        let (out_ptr, grads_ptr) = (out.ptr(), grads.ptr());
        // SAFETY: out is one double, grads holds N floats, read with a grid-stride loop below N.
        unsafe { launch!(self, "global_norm_squared", cfg, out_ptr, grads_ptr, n) }?;
        let squares = self.download(out)?;
        Ok(squares[0].sqrt() as f32)
    }
}
