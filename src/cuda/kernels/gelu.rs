//! Launch code for `kernels/gelu.cu`; the CPU twin is `src/cpu/gelu.rs`.

use super::grid;
use crate::cuda::context::{Dev, Gpu};
use crate::cuda::storage::Storage;
use anyhow::Result;

/// Threads per block of `gelu_forward` and `gelu_backward`: one thread per number.
pub const GELU_BLOCK: u32 = 256;

impl Gpu {
    /// out (N) = gelu(inp (N)).
    pub fn gelu_forward<T: Storage>(&self, out: Dev<T>, inp: Dev<T>) -> Result<()> {
        assert_eq!(out.len(), inp.len());
        let cfg = grid(out.len(), GELU_BLOCK);
        let n = out.len() as i64;
        let (out, inp) = (out.ptr(), inp.ptr());
        // SAFETY: both hold N numbers; one thread per index < N.
        unsafe { launch!(self, &T::kernel("gelu_forward"), cfg, out, inp, n) }
    }

    /// dinp (N) += gelu'(inp) * dout.
    pub fn gelu_backward<T: Storage>(&self, dinp: Dev<T>, inp: Dev<T>, dout: Dev<T>) -> Result<()> {
        assert!(dinp.len() == inp.len() && dout.len() == inp.len());
        let cfg = grid(dinp.len(), GELU_BLOCK);
        let n = dinp.len() as i64;
        let (dinp, inp, dout) = (dinp.ptr(), inp.ptr(), dout.ptr());
        // SAFETY: all three hold N numbers; one thread per index < N.
        unsafe { launch!(self, &T::kernel("gelu_backward"), cfg, dinp, inp, dout, n) }
    }
}
