//! Launch code for `kernels/attention.cu`; the CPU twin is `src/cpu/attention.rs`.

use super::{grid, int};
use crate::cuda::context::{Dev, Gpu};
use anyhow::{bail, Result};

/// Threads per block of the attention kernels: one thread per row (b, h, t1) of B*NH*T.
pub const ATTENTION_BLOCK: u32 = 128;
/// The largest head size C/NH the kernels handle: `MAX_HS` of `kernels/attention.cu`, which must say the same.
pub const ATTENTION_MAX_HS: u32 = 128;

impl Gpu {
    /// out (B, T, C), preatt (B, NH, T, T), att (B, NH, T, T) from inp (B, T, 3C).
    #[allow(clippy::too_many_arguments)]
    pub fn attention_forward(
        &self,
        out: Dev<f32>,
        preatt: Dev<f32>,
        att: Dev<f32>,
        inp: Dev<f32>,
        b: usize,
        t: usize,
        c: usize,
        nh: usize,
    ) -> Result<()> {
        assert!(out.len() == b * t * c && inp.len() == b * t * 3 * c && c.is_multiple_of(nh));
        assert!(preatt.len() == b * nh * t * t && att.len() == b * nh * t * t);
        check_head_size(c / nh)?;
        let cfg = grid(b * nh * t, ATTENTION_BLOCK);
        let (out, preatt, att, inp) = (out.ptr(), preatt.ptr(), att.ptr(), inp.ptr());
        let (b, t, c, nh) = (int(b, "B")?, int(t, "T")?, int(c, "C")?, int(nh, "NH")?);
        // SAFETY: lengths checked above; one thread per row (b, h, t1) of B*NH*T, reading and writing within them.
        unsafe { launch!(self, "attention_forward", cfg, out, preatt, att, inp, b, t, c, nh) }
    }

    /// Backward of `attention_forward`. Accumulates (+=) into dinp (B, T, 3C); dpreatt and datt
    /// (B, NH, T, T) are scratch space that this overwrites. Three kernels (see `kernels/attention.cu`).
    #[allow(clippy::too_many_arguments)]
    pub fn attention_backward(
        &self,
        dinp: Dev<f32>,
        dpreatt: Dev<f32>,
        datt: Dev<f32>,
        dout: Dev<f32>,
        inp: Dev<f32>,
        att: Dev<f32>,
        b: usize,
        t: usize,
        c: usize,
        nh: usize,
    ) -> Result<()> {
        assert!(
            dinp.len() == b * t * 3 * c
                && inp.len() == b * t * 3 * c
                && dout.len() == b * t * c
                && c.is_multiple_of(nh)
        );
        assert!(dpreatt.len() == b * nh * t * t && datt.len() == b * nh * t * t && att.len() == b * nh * t * t);
        check_head_size(c / nh)?;
        let cfg = grid(b * nh * t, ATTENTION_BLOCK);
        let (dinp, dpreatt, datt, dout, inp, att) =
            (dinp.ptr(), dpreatt.ptr(), datt.ptr(), dout.ptr(), inp.ptr(), att.ptr());
        let (b, t, c, nh) = (int(b, "B")?, int(t, "T")?, int(c, "C")?, int(nh, "NH")?);
        // SAFETY (the three launches): lengths checked above; one thread per row of B*NH*T, each
        // writing only its own row of dpreatt and datt, or its own position's q, k or v in dinp.
        unsafe { launch!(self, "attention_backward_datt", cfg, dpreatt, datt, dout, inp, att, b, t, c, nh) }?;
        unsafe { launch!(self, "attention_backward_dq", cfg, dinp, dpreatt, inp, b, t, c, nh) }?;
        unsafe { launch!(self, "attention_backward_dkv", cfg, dinp, dpreatt, dout, inp, att, b, t, c, nh) }
    }
}

/// The attention kernels keep one head's vector per thread in a local array of MAX_HS floats.
fn check_head_size(hs: usize) -> Result<()> {
    if hs > ATTENTION_MAX_HS as usize {
        bail!("the attention kernels handle heads of at most {ATTENTION_MAX_HS} channels; C/NH = {hs}");
    }
    Ok(())
}
