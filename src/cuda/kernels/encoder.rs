//! Launch code for `kernels/encoder.cu`; the CPU twin is `src/cpu/encoder.rs`.

use super::{grid, int};
use crate::cuda::context::{Dev, Gpu};
use crate::cuda::storage::Storage;
use anyhow::Result;

/// Threads per block of `encoder_forward` and `encoder_backward`: one thread per number of out (B, T, C).
pub const ENCODER_BLOCK: u32 = 256;

impl Gpu {
    /// out (B, T, C) = wte[inp[b, t]] + wpe[t], for tokens inp (B, T), wte (Vp, C), wpe (maxT, C).
    ///
    /// # Safety
    /// Every token in `inp` must be below wte's number of rows: the kernel reads wte at them, and the
    /// tokens live on the device where this function cannot check them.
    pub unsafe fn encoder_forward<T: Storage>(
        &self,
        out: Dev<T>,
        inp: Dev<u32>,
        wte: Dev<T>,
        wpe: Dev<T>,
        b: usize,
        t: usize,
        c: usize,
    ) -> Result<()> {
        assert!(out.len() == b * t * c && inp.len() == b * t && wte.len().is_multiple_of(c) && wpe.len() >= t * c);
        let cfg = grid(b * t * c, ENCODER_BLOCK);
        let (out, inp, wte, wpe) = (out.ptr(), inp.ptr(), wte.ptr(), wpe.ptr());
        let (b, t, c) = (int(b, "B")?, int(t, "T")?, int(c, "C")?);
        // SAFETY: out holds B*T*C floats, inp B*T tokens (checked above); the tokens index rows of wte
        // (checked by the caller) and positions t < T index rows of wpe (wpe has at least T rows).
        unsafe { launch!(self, &T::kernel("encoder_forward"), cfg, out, inp, wte, wpe, b, t, c) }
    }

    /// Backward of `encoder_forward`: accumulates (+=) dout's rows into dwte and dwpe (fp32 parameter gradients).
    ///
    /// # Safety
    /// As for `encoder_forward`: every token must be below dwte's number of rows (the kernel writes there).
    pub unsafe fn encoder_backward<T: Storage>(
        &self,
        dwte: Dev<f32>,
        dwpe: Dev<f32>,
        dout: Dev<T>,
        inp: Dev<u32>,
        b: usize,
        t: usize,
        c: usize,
    ) -> Result<()> {
        assert!(dout.len() == b * t * c && inp.len() == b * t && dwte.len().is_multiple_of(c) && dwpe.len() >= t * c);
        let cfg = grid(b * t * c, ENCODER_BLOCK);
        let (dwte, dwpe, dout, inp) = (dwte.ptr(), dwpe.ptr(), dout.ptr(), inp.ptr());
        let (b, t, c) = (int(b, "B")?, int(t, "T")?, int(c, "C")?);
        // SAFETY: as in encoder_forward: every index is within dout, inp, dwte and dwpe.
        unsafe { launch!(self, &T::kernel("encoder_backward"), cfg, dwte, dwpe, dout, inp, b, t, c) }
    }
}
