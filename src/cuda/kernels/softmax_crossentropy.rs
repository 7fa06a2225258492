//! Launch code for `kernels/softmax_crossentropy.cu`; the CPU twin is `src/cpu/softmax_crossentropy.rs`.

use super::{grid, int};
use crate::cuda::context::{Dev, Gpu};
use anyhow::Result;
use cudarc::driver::LaunchConfig;

/// Threads per block of `softmax_forward` and `crossentropy_softmax_backward`, one block per row: a
/// multiple of 32, at most 32 warps (the block reduction meets in 32 floats of shared memory).
pub const SOFTMAX_BLOCK: u32 = 512;
/// Threads per block of `crossentropy_forward`: one thread per row.
pub const CROSSENTROPY_BLOCK: u32 = 256;

impl Gpu {
    /// probs (BT, Vp) = softmax over the first V columns of logits (BT, Vp); columns V..Vp get 0.
    pub fn softmax_forward(&self, probs: Dev<f32>, logits: Dev<f32>, bt: usize, v: usize, vp: usize) -> Result<()> {
        assert!(probs.len() == bt * vp && logits.len() == bt * vp && v <= vp);
        // one block per row
        let cfg = one_block_per_row(bt);
        let (probs, logits) = (probs.ptr(), logits.ptr());
        let (bt, v, vp) = (int(bt, "BT")?, int(v, "V")?, int(vp, "Vp")?);
        // SAFETY: lengths checked above; block `row` touches only row `row` < BT of Vp numbers.
        unsafe { launch!(self, "softmax_forward", cfg, probs, logits, bt, v, vp) }
    }

    /// losses (BT) = -log(probs[target]), with targets (BT).
    ///
    /// # Safety
    /// Every target must be below Vp: the kernel reads probs at it, and the targets live on the device
    /// where this function cannot check them.
    pub unsafe fn crossentropy_forward(
        &self,
        losses: Dev<f32>,
        probs: Dev<f32>,
        targets: Dev<u32>,
        bt: usize,
        vp: usize,
    ) -> Result<()> {
        assert!(losses.len() == bt && probs.len() == bt * vp && targets.len() == bt);
        let cfg = grid(bt, CROSSENTROPY_BLOCK);
        let (losses, probs, targets) = (losses.ptr(), probs.ptr(), targets.ptr());
        let (bt, vp) = (int(bt, "BT")?, int(vp, "Vp")?);
        // SAFETY: lengths checked above, and each target indexes within its row of probs.
        unsafe { launch!(self, "crossentropy_forward", cfg, losses, probs, targets, bt, vp) }
    }

    /// dlogits (BT, Vp) += (probs - one_hot(target)) * dlosses, over the first V columns.
    #[allow(clippy::too_many_arguments)]
    pub fn crossentropy_softmax_backward(
        &self,
        dlogits: Dev<f32>,
        dlosses: Dev<f32>,
        probs: Dev<f32>,
        targets: Dev<u32>,
        bt: usize,
        v: usize,
        vp: usize,
    ) -> Result<()> {
        assert!(dlogits.len() == bt * vp && probs.len() == bt * vp && dlosses.len() == bt && targets.len() == bt);
        let cfg = one_block_per_row(bt);
        let (dlogits, dlosses, probs, targets) = (dlogits.ptr(), dlosses.ptr(), probs.ptr(), targets.ptr());
        let (bt, v, vp) = (int(bt, "BT")?, int(v, "V")?, int(vp, "Vp")?);
        // SAFETY: lengths checked above; block `row` touches only row `row` < BT.
        unsafe { launch!(self, "crossentropy_softmax_backward", cfg, dlogits, dlosses, probs, targets, bt, v, vp) }
    }
}

/// One block of SOFTMAX_BLOCK threads per row of BT rows.
fn one_block_per_row(bt: usize) -> LaunchConfig {
    LaunchConfig { grid_dim: (bt.max(1) as u32, 1, 1), block_dim: (SOFTMAX_BLOCK, 1, 1), shared_mem_bytes: 0 }
}
