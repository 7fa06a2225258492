//! Launch code for `kernels/residual.cu`; the CPU twin is `src/cpu/residual.rs`.

use super::grid;
use crate::cuda::context::{Dev, Gpu};
use crate::cuda::storage::Storage;
use anyhow::Result;

/// Threads per block of `residual_forward` and `residual_backward`: one thread per number.
pub const RESIDUAL_BLOCK: u32 = 256;

impl Gpu {
    /// out (N) = inp1 (N) + inp2 (N).
    pub fn residual_forward<T: Storage>(&self, out: Dev<T>, inp1: Dev<T>, inp2: Dev<T>) -> Result<()> {
        assert!(out.len() == inp1.len() && out.len() == inp2.len());
        let cfg = grid(out.len(), RESIDUAL_BLOCK);
        let n = out.len() as i64;
        let (out, inp1, inp2) = (out.ptr(), inp1.ptr(), inp2.ptr());
        // SAFETY: all three hold N numbers; one thread per index < N.
        unsafe { launch!(self, &T::kernel("residual_forward"), cfg, out, inp1, inp2, n) }
    }

    /// dinp1 (N) += dout, dinp2 (N) += dout.
    pub fn residual_backward<T: Storage>(&self, dinp1: Dev<T>, dinp2: Dev<T>, dout: Dev<T>) -> Result<()> {
        assert!(dinp1.len() == dout.len() && dinp2.len() == dout.len());
        let cfg = grid(dout.len(), RESIDUAL_BLOCK);
        let n = dout.len() as i64;
        let (dinp1, dinp2, dout) = (dinp1.ptr(), dinp2.ptr(), dout.ptr());
        // SAFETY: all three hold N numbers; one thread per index < N.
        unsafe { launch!(self, &T::kernel("residual_backward"), cfg, dinp1, dinp2, dout, n) }
    }
}
