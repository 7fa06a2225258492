//! Launch code for `kernels/softmax_crossentropy.cu` (the fused classifier); the CPU twin is
//! `src/cpu/softmax_crossentropy.rs`.

use super::int;
use crate::cuda::context::{Dev, Gpu};
use crate::cuda::storage::Storage;
use anyhow::Result;
use cudarc::driver::LaunchConfig;

/// Threads per block of `crossentropy_forward` and `crossentropy_softmax_backward`, one block per
/// row: a multiple of 32, at most 32 warps (the block reduction meets in 32 floats of shared memory).
pub const SOFTMAX_BLOCK: u32 = 512;

impl Gpu {
    /// losses (BT) = lse - logits[target] and lse (BT), the log-sum-exp of the first V logits of each
    /// row, from logits (BT, Vp) and targets (BT). The logits are stored as `T`; everything else, and
    /// all the arithmetic, is fp32.
    ///
    /// # Safety
    /// Every target must be below Vp: the kernel reads the logits at it, and the targets live on the
    /// device where this function cannot check them.
    #[allow(clippy::too_many_arguments)]
    pub unsafe fn crossentropy_forward<T: Storage>(
        &self,
        losses: Dev<f32>,
        lse: Dev<f32>,
        logits: Dev<T>,
        targets: Dev<u32>,
        bt: usize,
        v: usize,
        vp: usize,
    ) -> Result<()> {
        assert!(losses.len() == bt && lse.len() == bt && logits.len() == bt * vp && targets.len() == bt && v <= vp);
        let cfg = one_block_per_row(bt);
        let (losses, lse, logits, targets) = (losses.ptr(), lse.ptr(), logits.ptr(), targets.ptr());
        let (bt, v, vp) = (int(bt, "BT")?, int(v, "V")?, int(vp, "Vp")?);
        // SAFETY: lengths checked above; block `row` reads row `row` < BT of the logits (at its target,
        // below Vp by the caller's promise) and writes losses[row] and lse[row].
        unsafe { launch!(self, &T::kernel("crossentropy_forward"), cfg, losses, lse, logits, targets, bt, v, vp) }
    }

    /// Fused backward of softmax + cross-entropy, written over the logits (BT, Vp):
    /// dlogits = (softmax - one_hot(target)) * dlosses over the first V columns, 0 in the padding.
    #[allow(clippy::too_many_arguments)]
    pub fn crossentropy_softmax_backward<T: Storage>(
        &self,
        logits: Dev<T>,
        dlosses: Dev<f32>,
        lse: Dev<f32>,
        targets: Dev<u32>,
        bt: usize,
        v: usize,
        vp: usize,
    ) -> Result<()> {
        assert!(logits.len() == bt * vp && dlosses.len() == bt && lse.len() == bt && targets.len() == bt && v <= vp);
        let cfg = one_block_per_row(bt);
        let (logits, dlosses, lse, targets) = (logits.ptr(), dlosses.ptr(), lse.ptr(), targets.ptr());
        let (bt, v, vp) = (int(bt, "BT")?, int(v, "V")?, int(vp, "Vp")?);
        // SAFETY: lengths checked above; block `row` touches only row `row` < BT (the target is only
        // compared with column indices, never used as one).
        unsafe {
            launch!(self, &T::kernel("crossentropy_softmax_backward"), cfg, logits, dlosses, lse, targets, bt, v, vp)
        }
    }
}

/// One block of SOFTMAX_BLOCK threads per row of BT rows.
fn one_block_per_row(bt: usize) -> LaunchConfig {
    LaunchConfig { grid_dim: (bt.max(1) as u32, 1, 1), block_dim: (SOFTMAX_BLOCK, 1, 1), shared_mem_bytes: 0 }
}
