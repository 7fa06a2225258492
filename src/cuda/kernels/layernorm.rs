//! Launch code for `kernels/layernorm.cu`; the CPU twin is `src/cpu/layernorm.rs`.

use super::{grid, int, WARP_SIZE};
use crate::cuda::context::{Dev, Gpu};
use crate::cuda::storage::Storage;
use anyhow::{bail, Result};
use cudarc::driver::LaunchConfig;

/// Threads per block of `layernorm_forward`: one warp per row, so 8 rows per block. A multiple of 32.
pub const LAYERNORM_FORWARD_BLOCK: u32 = 256;
/// Threads per block of `layernorm_backward`: 8 warps striding over the rows. A multiple of 32.
pub const LAYERNORM_BACKWARD_BLOCK: u32 = 256;
/// `layernorm_backward` launches at most this many blocks per SM (each adds its partial sums once).
pub const LAYERNORM_BACKWARD_BLOCKS_PER_SM: u32 = 4;
/// The most dynamic shared memory a block may have without opting in: bounds the 2*C floats of
/// `layernorm_backward`, so C <= 6144.
pub const LAYERNORM_BACKWARD_MAX_SHARED_BYTES: u32 = 48 * 1024;

impl Gpu {
    /// out (BT, C), mean (BT), rstd (BT) from inp (BT, C), weight (C), bias (C); `T` is the storage of
    /// out, inp, weight and bias (mean and rstd are fp32 in both precisions).
    #[allow(clippy::too_many_arguments)]
    pub fn layernorm_forward<T: Storage>(
        &self,
        out: Dev<T>,
        mean: Dev<f32>,
        rstd: Dev<f32>,
        inp: Dev<T>,
        weight: Dev<T>,
        bias: Dev<T>,
        bt: usize,
        c: usize,
    ) -> Result<()> {
        assert!(out.len() == bt * c && inp.len() == bt * c && mean.len() == bt && rstd.len() == bt);
        assert!(weight.len() == c && bias.len() == c);
        // one warp per row, LAYERNORM_FORWARD_BLOCK / WARP_SIZE rows per block
        let cfg = grid(bt * WARP_SIZE as usize, LAYERNORM_FORWARD_BLOCK);
        let (out, mean, rstd, inp, weight, bias) =
            (out.ptr(), mean.ptr(), rstd.ptr(), inp.ptr(), weight.ptr(), bias.ptr());
        let (bt, c) = (int(bt, "BT")?, int(c, "C")?);
        // SAFETY: the lengths are checked above; the kernel reads and writes rows < BT of C numbers.
        unsafe { launch!(self, &T::kernel("layernorm_forward"), cfg, out, mean, rstd, inp, weight, bias, bt, c) }
    }

    /// Backward of `layernorm_forward`: accumulates (+=) into dinp (BT, C), dweight (C), dbias (C).
    #[allow(clippy::too_many_arguments)]
    pub fn layernorm_backward<T: Storage>(
        &self,
        dinp: Dev<T>,
        dweight: Dev<f32>,
        dbias: Dev<f32>,
        dout: Dev<T>,
        inp: Dev<T>,
        weight: Dev<T>,
        mean: Dev<f32>,
        rstd: Dev<f32>,
        bt: usize,
        c: usize,
    ) -> Result<()> {
        assert!(dinp.len() == bt * c && dout.len() == bt * c && inp.len() == bt * c);
        assert!(dweight.len() == c && dbias.len() == c && weight.len() == c && mean.len() == bt && rstd.len() == bt);
        // the warps of at most LAYERNORM_BACKWARD_BLOCKS_PER_SM blocks per SM stride over the rows, and
        // each block adds its partial dweight and dbias (2*C floats of shared memory) once
        let shared = 2 * c * std::mem::size_of::<f32>();
        if shared > LAYERNORM_BACKWARD_MAX_SHARED_BYTES as usize {
            bail!("layernorm_backward keeps 2*C floats in shared memory; C = {c} is too wide");
        }
        let warps_per_block = (LAYERNORM_BACKWARD_BLOCK / WARP_SIZE) as usize;
        let blocks =
            bt.div_ceil(warps_per_block).min((LAYERNORM_BACKWARD_BLOCKS_PER_SM * self.num_sms) as usize).max(1);
        let cfg = LaunchConfig {
            grid_dim: (blocks as u32, 1, 1),
            block_dim: (LAYERNORM_BACKWARD_BLOCK, 1, 1),
            shared_mem_bytes: shared as u32,
        };
        let (dinp, dweight, dbias, dout, inp) = (dinp.ptr(), dweight.ptr(), dbias.ptr(), dout.ptr(), inp.ptr());
        let (weight, mean, rstd) = (weight.ptr(), mean.ptr(), rstd.ptr());
        let (bt, c) = (int(bt, "BT")?, int(c, "C")?);
        // SAFETY: the lengths are checked above and the dynamic shared memory holds the 2*C floats the kernel uses.
        unsafe {
            launch!(
                self,
                &T::kernel("layernorm_backward"),
                cfg,
                dinp,
                dweight,
                dbias,
                dout,
                inp,
                weight,
                mean,
                rstd,
                bt,
                c
            )
        }
    }
}
