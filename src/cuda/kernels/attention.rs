//! Launch code for `kernels/attention.cu` (flash attention: tiles in shared memory, online softmax,
//! one log-sum-exp per row kept, scores recomputed in the backward); the CPU twin is
//! `src/cpu/attention.rs`.

use super::{int, WARP_SIZE};
use crate::cuda::context::{Dev, Gpu};
use crate::cuda::storage::Storage;
use anyhow::{bail, Result};
use cudarc::driver::LaunchConfig;

/// Keys (or queries) per tile in shared memory: one per lane of a warp (`ATT_TILE` in the `.cu`).
pub const ATTENTION_TILE: u32 = 32;
/// Warps per block, each owning one query row (forward, dq) or one key (dk, dv): the rows of a block
/// share each tile loaded into shared memory (`ATT_WARPS` in the `.cu`).
pub const ATTENTION_WARPS: u32 = 8;
/// Threads per block of every attention kernel: ATTENTION_WARPS whole warps.
pub const ATTENTION_BLOCK: u32 = 8 * 32;
const _: () = assert!(ATTENTION_BLOCK == ATTENTION_WARPS * WARP_SIZE && ATTENTION_TILE == WARP_SIZE);
/// The largest head size C/NH the kernels handle (`MAX_HS` in the `.cu`): the shared-memory tiles
/// are sized for it (at most 41 KiB a block), and each lane keeps MAX_HS/32 channels per vector.
pub const ATTENTION_MAX_HS: u32 = 128;

/// Grid (ceil(T / ATTENTION_WARPS), B*NH): one block per ATTENTION_WARPS rows (or keys) of one head.
fn rows_grid(b: usize, t: usize, nh: usize) -> Result<LaunchConfig> {
    let bh = u32::try_from(b * nh).ok().filter(|&n| n <= 65535);
    let Some(bh) = bh else { bail!("attention: B*NH = {} exceeds the grid's 65535 blocks in y", b * nh) };
    Ok(LaunchConfig {
        grid_dim: (t.div_ceil(ATTENTION_WARPS as usize).max(1) as u32, bh, 1),
        block_dim: (ATTENTION_BLOCK, 1, 1),
        shared_mem_bytes: 0,
    })
}

impl Gpu {
    /// out (B, T, C) and lse (B, NH, T), the log-sum-exp of each row's scores, from inp (B, T, 3C).
    #[allow(clippy::too_many_arguments)]
    pub fn attention_forward<T: Storage>(
        &self,
        out: Dev<T>,
        lse: Dev<f32>,
        inp: Dev<T>,
        b: usize,
        t: usize,
        c: usize,
        nh: usize,
    ) -> Result<()> {
        assert!(out.len() == b * t * c && inp.len() == b * t * 3 * c && lse.len() == b * nh * t);
        check_head_size(c, nh)?;
        let cfg = rows_grid(b, t, nh)?;
        let (out, lse, inp) = (out.ptr(), lse.ptr(), inp.ptr());
        let (b, t, c, nh) = (int(b, "B")?, int(t, "T")?, int(c, "C")?, int(nh, "NH")?);
        // SAFETY: lengths checked above; block (x, y) reads head y's q, k, v and writes its rows
        // x*ATTENTION_WARPS.. of out and lse, guarded against T.
        unsafe { launch!(self, &T::kernel("attention_forward"), cfg, out, lse, inp, b, t, c, nh) }
    }

    /// Backward of `attention_forward`. Accumulates (+=) into dinp (B, T, 3C) from dout (B, T, C),
    /// given inp (B, T, 3C), out (B, T, C) and lse (B, NH, T); delta (B, NH, T) is scratch that this
    /// overwrites. Three kernels: delta = rowsum(dout * out), then dk and dv, then dq.
    #[allow(clippy::too_many_arguments)]
    pub fn attention_backward<T: Storage>(
        &self,
        dinp: Dev<T>,
        delta: Dev<f32>,
        dout: Dev<T>,
        inp: Dev<T>,
        out: Dev<T>,
        lse: Dev<f32>,
        b: usize,
        t: usize,
        c: usize,
        nh: usize,
    ) -> Result<()> {
        assert!(dinp.len() == b * t * 3 * c && inp.len() == b * t * 3 * c);
        assert!(dout.len() == b * t * c && out.len() == b * t * c);
        assert!(lse.len() == b * nh * t && delta.len() == b * nh * t);
        check_head_size(c, nh)?;
        let rows = rows_grid(b, t, nh)?;
        // one warp per row (b, h, t) of delta
        let delta_cfg = LaunchConfig {
            grid_dim: ((b * nh * t).div_ceil(ATTENTION_WARPS as usize).max(1) as u32, 1, 1),
            block_dim: (ATTENTION_BLOCK, 1, 1),
            shared_mem_bytes: 0,
        };
        let (dinp, delta, dout, inp, out, lse) = (dinp.ptr(), delta.ptr(), dout.ptr(), inp.ptr(), out.ptr(), lse.ptr());
        let (b, t, c, nh) = (int(b, "B")?, int(t, "T")?, int(c, "C")?, int(nh, "NH")?);
        // SAFETY (the three launches): lengths checked above, every index guarded against T; each
        // warp writes only its own row of delta, or its own key's k and v, or its own query's q in dinp.
        unsafe { launch!(self, &T::kernel("attention_backward_delta"), delta_cfg, delta, dout, out, b, t, c, nh) }?;
        unsafe { launch!(self, &T::kernel("attention_backward_dkv"), rows, dinp, delta, dout, inp, lse, b, t, c, nh) }?;
        unsafe { launch!(self, &T::kernel("attention_backward_dq"), rows, dinp, delta, dout, inp, lse, b, t, c, nh) }
    }
}

/// The kernels need whole heads (C a multiple of NH) of at most MAX_HS channels.
fn check_head_size(c: usize, nh: usize) -> Result<()> {
    if nh == 0 || !c.is_multiple_of(nh) {
        bail!("attention: C = {c} is not a multiple of NH = {nh}");
    }
    if c / nh > ATTENTION_MAX_HS as usize {
        bail!("the attention kernels handle heads of at most {ATTENTION_MAX_HS} channels; C/NH = {}", c / nh);
    }
    Ok(())
}
