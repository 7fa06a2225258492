//! Launch code for `kernels/matmul.cu` (version 1, naive; version 3, tiled with wide loads, double
//! buffering and split-K; and the bias kernels around cuBLAS); the CPU twin is `src/cpu/matmul.rs`.
//! Version 2, the plain tiled kernel, is the lesson's middle step and runs in `dev/cuda_emu` only.

use super::{grid, int};
use crate::cuda::context::{Dev, Gpu, Matmul};
use crate::cuda::storage::Storage;
use crate::precision::Precision;
use anyhow::{anyhow, Context, Result};
use cudarc::cublas::sys::cublasOperation_t;
use cudarc::driver::LaunchConfig;

/// Threads per block of the naive kernels (version 1) and of `matmul_add_bias`: one thread per output.
pub const MATMUL_NAIVE_BLOCK: u32 = 256;
/// Rows and columns of the output tile of one block of the tiled kernels (versions 2 and 3): `BM` and
/// `BN` of `kernels/matmul.cu`, which must say the same.
pub const MATMUL_TILE: u32 = 128;
/// Threads per block of the tiled kernels: `MATMUL_THREADS` = (BM / TM) * (BN / TN) of `kernels/matmul.cu`.
pub const MATMUL_TILED_BLOCK: u32 = 256;
/// `matmul_backward_dbias2`: columns of dbias per block (threadIdx.x) ...
pub const MATMUL_DBIAS_BLOCK_X: u32 = 32;
/// ... and threads striding down the rows of each column (threadIdx.y) ...
pub const MATMUL_DBIAS_BLOCK_Y: u32 = 8;
/// ... with one row of blocks (blockIdx.y) per this many rows of dout ...
pub const MATMUL_DBIAS_ROWS_PER_GROUP: u32 = 256;
/// ... and at most this many rows of blocks.
pub const MATMUL_DBIAS_MAX_GROUPS: u32 = 64;
/// Split-K of `matmul_backward_dweight3` (`matmul_splitk_slices`): the grid should hold about this
/// many blocks per SM (more than one, so that an SM has another block's warps to run while one waits) ...
pub const MATMUL_SPLITK_BLOCKS_PER_SM: u32 = 2;
/// ... each slice sums at least this many rows of K = B*T (so that a block's products, 128 x 128 per
/// row, stay many times the 128 x 128 partial sums it writes and the reduction reads back) ...
pub const MATMUL_SPLITK_MIN_ROWS: u32 = 512;
/// ... and K is cut into at most this many slices.
pub const MATMUL_SPLITK_MAX_SLICES: u32 = 16;
/// Threads per block of `matmul_splitk_reduce`: one thread per number of dweight.
pub const MATMUL_SPLITK_REDUCE_BLOCK: u32 = 256;

/// How many slices split-K cuts the K = BT rows of dweight (OC, C) += dout^T @ inp into, on a GPU of
/// `num_sms` SMs with `scratch` floats for the partial results: as many as fill the GPU with
/// MATMUL_SPLITK_BLOCKS_PER_SM blocks an SM (the (OC, C) tiles times the slices), but no more than
/// MATMUL_SPLITK_MAX_SLICES, than leave MATMUL_SPLITK_MIN_ROWS rows a slice, or than the scratch
/// holds (S * OC * C floats); 1 (no split) when any of these allows no more. GPT-2 small on 132 SMs
/// (B*T >= 4096, `MemoryPlan`'s scratch of 8 C^2): attproj's (768, 768) is 36 tiles and gets 7
/// slices, qkv's (2304, 768) 108 tiles and 2; fc's and fcproj's 144 tiles are enough without.
/// `dev/cuda_emu/test.cpp` restates this function.
pub fn matmul_splitk_slices(num_sms: u32, bt: usize, c: usize, oc: usize, scratch: usize) -> usize {
    let tile = MATMUL_TILE as usize;
    let tiles = oc.div_ceil(tile) * c.div_ceil(tile);
    if tiles == 0 {
        return 1;
    }
    let fill = (MATMUL_SPLITK_BLOCKS_PER_SM * num_sms) as usize / tiles;
    let by_rows = bt / MATMUL_SPLITK_MIN_ROWS as usize;
    let by_scratch = scratch / (oc * c);
    fill.min(MATMUL_SPLITK_MAX_SLICES as usize).min(by_rows).min(by_scratch).max(1)
}

impl Gpu {
    /// out (BT, OC) = inp (BT, C) @ weight (OC, C)^T + bias (OC), with the kernels `self.matmul` names;
    /// `T` is the storage of all four (fp32 sums either way; bf16 runs the hand-written kernels only).
    #[allow(clippy::too_many_arguments)]
    pub fn matmul_forward<T: Storage>(
        &self,
        out: Dev<T>,
        inp: Dev<T>,
        weight: Dev<T>,
        bias: Option<Dev<T>>,
        bt: usize,
        c: usize,
        oc: usize,
    ) -> Result<()> {
        assert!(out.len() == bt * oc && inp.len() == bt * c && weight.len() == oc * c);
        assert!(bias.is_none_or(|b| b.len() == oc));
        if self.matmul == Matmul::Cublas && T::PRECISION == Precision::Bf16 {
            // cuBLAS's SGEMM multiplies fp32 matrices: in bf16, --matmul cublas is cuBLASLt
            return self.cublaslt_matmul_forward(out, inp, weight, bias, bt, c, oc);
        }
        let bias_ptr = bias.map_or(0u64, |b| b.ptr());
        let (out_ptr, inp_ptr, weight_ptr) = (out.ptr(), inp.ptr(), weight.ptr());
        let (bt_i, c_i, oc_i) = (int(bt, "BT")?, int(c, "C")?, int(oc, "OC")?);
        match self.matmul {
            Matmul::Naive => {
                let cfg = grid(bt * oc, MATMUL_NAIVE_BLOCK);
                // SAFETY: lengths checked above; one thread per output of out (BT*OC); bias is null or OC floats.
                unsafe {
                    launch!(
                        self,
                        &T::kernel("matmul_forward1"),
                        cfg,
                        out_ptr,
                        inp_ptr,
                        weight_ptr,
                        bias_ptr,
                        bt_i,
                        c_i,
                        oc_i
                    )
                }
            }
            Matmul::Handwritten => {
                let cfg = tiled_grid(bt, oc);
                // SAFETY: lengths checked above; the kernel guards every row >= BT and column >= OC,
                // and loads 4 numbers at once only at addresses it checked are aligned for it.
                unsafe {
                    launch!(
                        self,
                        &T::kernel("matmul_forward3"),
                        cfg,
                        out_ptr,
                        inp_ptr,
                        weight_ptr,
                        bias_ptr,
                        bt_i,
                        c_i,
                        oc_i
                    )
                }
            }
            Matmul::Cublas => {
                cublas_is_fp32::<T>()?;
                // row-major out (BT, OC) is column-major out^T (OC, BT) = weight (OC, C) @ inp^T (C, BT)
                let (op_t, op_n) = (cublasOperation_t::CUBLAS_OP_T, cublasOperation_t::CUBLAS_OP_N);
                self.sgemm(op_t, op_n, oc_i, bt_i, c_i, weight_ptr, c_i, inp_ptr, c_i, 0.0, out_ptr, oc_i)?;
                if let Some(bias) = bias {
                    let bias = bias.ptr();
                    let cfg = grid(bt * oc, MATMUL_NAIVE_BLOCK);
                    // SAFETY: out holds BT*OC floats and bias OC (checked above).
                    unsafe { launch!(self, "matmul_add_bias", cfg, out_ptr, bias, bt_i, oc_i) }?;
                }
                Ok(())
            }
        }
    }

    /// pre_gelu (BT, OC) = inp (BT, C) @ weight (OC, C)^T + bias (OC), then out (BT, OC) =
    /// gelu(pre_gelu): the MLP's first matmul and its GELU. With `--matmul cublas` in bf16 this is one
    /// cuBLASLt call with the GELU fused (its GELU reads the fp32 sum, not the rounded pre_gelu: see
    /// `cublaslt_matmul_gelu_forward`); otherwise `matmul_forward`, then `gelu_forward`.
    #[allow(clippy::too_many_arguments)]
    pub fn matmul_gelu_forward<T: Storage>(
        &self,
        pre_gelu: Dev<T>,
        out: Dev<T>,
        inp: Dev<T>,
        weight: Dev<T>,
        bias: Option<Dev<T>>,
        bt: usize,
        c: usize,
        oc: usize,
    ) -> Result<()> {
        if self.matmul == Matmul::Cublas && T::PRECISION == Precision::Bf16 {
            return self.cublaslt_matmul_gelu_forward(pre_gelu, out, inp, weight, bias, bt, c, oc);
        }
        self.matmul_forward(pre_gelu, inp, weight, bias, bt, c, oc)?;
        self.gelu_forward(out, pre_gelu)
    }

    /// Backward of `matmul_forward`. Accumulates (+=) into dinp (BT, C), dweight (OC, C) and dbias (OC),
    /// given dout (BT, OC):
    ///   dinp    += dout @ weight
    ///   dweight += dout^T @ inp
    ///   dbias   += sum over rows of dout
    /// dweight and dbias are fp32 parameter gradients; the rest is stored as `T`.
    #[allow(clippy::too_many_arguments)]
    pub fn matmul_backward<T: Storage>(
        &self,
        dinp: Dev<T>,
        dweight: Dev<f32>,
        dbias: Option<Dev<f32>>,
        dout: Dev<T>,
        inp: Dev<T>,
        weight: Dev<T>,
        bt: usize,
        c: usize,
        oc: usize,
    ) -> Result<()> {
        assert!(dinp.len() == bt * c && dweight.len() == oc * c && dout.len() == bt * oc);
        assert!(inp.len() == bt * c && weight.len() == oc * c && dbias.is_none_or(|b| b.len() == oc));
        if self.matmul == Matmul::Cublas && T::PRECISION == Precision::Bf16 {
            return self.cublaslt_matmul_backward(dinp, dweight, dbias, dout, inp, weight, bt, c, oc);
        }
        let (dinp, dweight, dout, inp, weight) = (dinp.ptr(), dweight.ptr(), dout.ptr(), inp.ptr(), weight.ptr());
        let (bt_i, c_i, oc_i) = (int(bt, "BT")?, int(c, "C")?, int(oc, "OC")?);
        match self.matmul {
            Matmul::Naive => self.matmul_backward_naive::<T>(dinp, dweight, dbias, dout, inp, weight, bt, c, oc)?,
            Matmul::Handwritten => {
                // SAFETY: lengths checked above; the kernel guards rows and columns outside dinp
                // (BT, C), reads K = OC within dout and weight, and loads 4 numbers at once only at
                // addresses it checked are aligned for it.
                unsafe {
                    launch!(
                        self,
                        &T::kernel("matmul_backward_dinp3"),
                        tiled_grid(bt, c),
                        dinp,
                        dout,
                        weight,
                        bt_i,
                        c_i,
                        oc_i
                    )
                }?;
                self.dweight3::<T>(dweight, dout, inp, bt, c, oc)?;
                if let Some(dbias) = dbias {
                    self.dbias2::<T>(dbias, dout, bt, oc)?;
                }
            }
            Matmul::Cublas => {
                cublas_is_fp32::<T>()?;
                let (op_t, op_n) = (cublasOperation_t::CUBLAS_OP_T, cublasOperation_t::CUBLAS_OP_N);
                // column-major dinp^T (C, BT) += weight^T (C, OC) @ dout^T (OC, BT)
                self.sgemm(op_n, op_n, c_i, bt_i, oc_i, weight, c_i, dout, oc_i, 1.0, dinp, c_i)?;
                // column-major dweight^T (C, OC) += inp^T (C, BT) @ dout (BT, OC)
                self.sgemm(op_n, op_t, c_i, oc_i, bt_i, inp, c_i, dout, oc_i, 1.0, dweight, c_i)?;
                if let Some(dbias) = dbias {
                    self.dbias2::<T>(dbias, dout, bt, oc)?;
                }
            }
        }
        Ok(())
    }

    /// `matmul_backward` on the naive kernels (the first rung): one thread per number of dinp, of
    /// dweight and per column of dbias.
    #[allow(clippy::too_many_arguments)]
    fn matmul_backward_naive<T: Storage>(
        &self,
        dinp: u64,
        dweight: u64,
        dbias: Option<Dev<f32>>,
        dout: u64,
        inp: u64,
        weight: u64,
        bt: usize,
        c: usize,
        oc: usize,
    ) -> Result<()> {
        let (bt_i, c_i, oc_i) = (int(bt, "BT")?, int(c, "C")?, int(oc, "OC")?);
        // SAFETY (the three launches): lengths checked by matmul_backward; one thread per number of dinp
        // (BT*C), of dweight (OC*C), and per column of dbias (OC).
        unsafe {
            launch!(
                self,
                &T::kernel("matmul_backward_dinp1"),
                grid(bt * c, MATMUL_NAIVE_BLOCK),
                dinp,
                dout,
                weight,
                bt_i,
                c_i,
                oc_i
            )
        }?;
        unsafe {
            launch!(
                self,
                &T::kernel("matmul_backward_dweight1"),
                grid(oc * c, MATMUL_NAIVE_BLOCK),
                dweight,
                dout,
                inp,
                bt_i,
                c_i,
                oc_i
            )
        }?;
        if let Some(dbias) = dbias {
            let dbias = dbias.ptr();
            unsafe {
                launch!(
                    self,
                    &T::kernel("matmul_backward_dbias1"),
                    grid(oc, MATMUL_NAIVE_BLOCK),
                    dbias,
                    dout,
                    bt_i,
                    oc_i
                )
            }?;
        }
        Ok(())
    }

    /// The number of slices the hand-written matmul_backward cuts the K = BT rows of dweight (OC, C)
    /// into on this GPU, with its matmul scratch (`matmul_splitk_slices`; 1 without scratch).
    pub fn matmul_dweight_slices(&self, bt: usize, c: usize, oc: usize) -> usize {
        let scratch = self.matmul_scratch.as_ref().map_or(0, |s| s.len());
        matmul_splitk_slices(self.num_sms, bt, c, oc, scratch)
    }

    /// dweight (OC, C) += dout (BT, OC)^T @ inp (BT, C) (dout and inp stored as `T`), with
    /// `matmul_backward_dweight3` split into `matmul_splitk_slices` slices of K = BT (grid z) and, when
    /// there is more than one, `matmul_splitk_reduce` adding their partial results (in the matmul
    /// scratch, `reserve_matmul_scratch`) into dweight in a fixed order.
    fn dweight3<T: Storage>(&self, dweight: u64, dout: u64, inp: u64, bt: usize, c: usize, oc: usize) -> Result<()> {
        let slices = self.matmul_dweight_slices(bt, c, oc);
        let partials = match &self.matmul_scratch {
            Some(s) if slices > 1 => s.all().ptr(),
            _ => 0,
        };
        let mut cfg = tiled_grid(oc, c);
        cfg.grid_dim.2 = slices as u32;
        let (bt_i, c_i, oc_i) = (int(bt, "BT")?, int(c, "C")?, int(oc, "OC")?);
        // SAFETY: dweight holds OC*C floats, dout BT*OC and inp BT*C numbers (checked by the caller);
        // the kernel guards rows and columns outside dweight (OC, C) and reads rows < BT only; with
        // more than one slice it writes slices * OC * C floats of partials, which
        // matmul_splitk_slices keeps within the scratch's length.
        unsafe {
            launch!(self, &T::kernel("matmul_backward_dweight3"), cfg, dweight, partials, dout, inp, bt_i, c_i, oc_i)
        }?;
        if slices > 1 {
            let n = oc * c;
            let (s, n_i) = (int(slices, "split-K slices")?, n as i64);
            // SAFETY: partials holds slices * n floats (above) and dweight n; one thread per number, i < n.
            unsafe {
                launch!(self, "matmul_splitk_reduce", grid(n, MATMUL_SPLITK_REDUCE_BLOCK), dweight, partials, s, n_i)
            }?;
        }
        Ok(())
    }

    /// dbias (OC) += column sums of dout (BT, OC, stored as `T`), `matmul_backward_dbias2`.
    fn dbias2<T: Storage>(&self, dbias: Dev<f32>, dout: u64, bt: usize, oc: usize) -> Result<()> {
        let row_groups = bt.div_ceil(MATMUL_DBIAS_ROWS_PER_GROUP as usize).clamp(1, MATMUL_DBIAS_MAX_GROUPS as usize);
        let cfg = LaunchConfig {
            grid_dim: (oc.div_ceil(MATMUL_DBIAS_BLOCK_X as usize) as u32, row_groups as u32, 1),
            block_dim: (MATMUL_DBIAS_BLOCK_X, MATMUL_DBIAS_BLOCK_Y, 1),
            shared_mem_bytes: 0,
        };
        let dbias = dbias.ptr();
        let (bt, oc) = (int(bt, "BT")?, int(oc, "OC")?);
        // SAFETY: dbias holds OC floats and dout BT*OC (checked by the caller); columns >= OC are skipped.
        unsafe { launch!(self, &T::kernel("matmul_backward_dbias2"), cfg, dbias, dout, bt, oc) }
    }

    /// C = A op B [+ C], column-major, with cuBLAS: C (m, n) = alpha op(A) (m, k) op(B) (k, n) + beta C.
    #[allow(clippy::too_many_arguments)]
    fn sgemm(
        &self,
        transa: cublasOperation_t,
        transb: cublasOperation_t,
        m: i32,
        n: i32,
        k: i32,
        a: u64,
        lda: i32,
        b: u64,
        ldb: i32,
        beta: f32,
        c: u64,
        ldc: i32,
    ) -> Result<()> {
        let blas = self.blas.as_ref().context("--matmul cublas: the GPU was opened without a cuBLAS handle")?;
        self.ctx.bind_to_thread()?;
        let alpha = 1.0f32;
        // SAFETY: the callers pass views whose lengths were checked against m, n, k and the leading
        // dimensions; the handle runs on self.stream, so the GEMM is ordered with the kernels.
        self.timed("cublas_sgemm", || unsafe {
            cudarc::cublas::result::sgemm(
                *blas.handle(),
                transa,
                transb,
                m,
                n,
                k,
                &alpha,
                a as *const f32,
                lda,
                b as *const f32,
                ldb,
                &beta,
                c as *mut f32,
                ldc,
            )
            .map_err(|e| anyhow!("cuBLAS SGEMM failed: {e}"))
        })
    }
}

/// cuBLAS SGEMM multiplies fp32 matrices; bf16 with --matmul cublas went to cuBLASLt above, so this
/// only stops a future caller from handing SGEMM bf16 words.
fn cublas_is_fp32<T: Storage>() -> Result<()> {
    if T::PRECISION == Precision::Bf16 {
        anyhow::bail!("internal error: cuBLAS SGEMM called on bf16 storage (bf16 goes through cuBLASLt)");
    }
    Ok(())
}

/// The grid of the tiled matmul for an (M, N) output: one block of MATMUL_TILED_BLOCK threads per
/// MATMUL_TILE x MATMUL_TILE tile.
fn tiled_grid(m: usize, n: usize) -> LaunchConfig {
    let tile = MATMUL_TILE as usize;
    LaunchConfig {
        grid_dim: (n.div_ceil(tile).max(1) as u32, m.div_ceil(tile).max(1) as u32, 1),
        block_dim: (MATMUL_TILED_BLOCK, 1, 1),
        shared_mem_bytes: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_k_fills_the_gpu_for_gpt2_small_weight_gradients() {
        // GPT-2 small on 132 SMs (an H100 SXM, an H200) at B*T = 8 * 1024, with MemoryPlan's 8 C^2 scratch
        let (c, bt, sms) = (768, 8 * 1024, 132);
        let scratch = 8 * c * c;
        for (name, oc, ic, want) in
            [("qkv", 3 * c, c, 2), ("attproj", c, c, 7), ("fc", 4 * c, c, 1), ("fcproj", c, 4 * c, 1)]
        {
            let s = matmul_splitk_slices(sms, bt, ic, oc, scratch);
            let tiles = oc.div_ceil(128) * ic.div_ceil(128);
            println!("{name:>8} dweight ({oc}, {ic}): {tiles:>3} tiles x {s} slices = {} blocks", tiles * s);
            assert_eq!(s, want, "{name}");
        }
        // no split without scratch, with too few rows, or with a single SM's worth of blocks
        assert_eq!(matmul_splitk_slices(sms, bt, c, c, 0), 1);
        assert_eq!(matmul_splitk_slices(sms, 1000, c, c, scratch), 1);
        assert_eq!(matmul_splitk_slices(1, bt, c, c, scratch), 1);
        // the scratch and MATMUL_SPLITK_MAX_SLICES bound it; empty sizes do not divide by zero
        assert_eq!(matmul_splitk_slices(sms, bt, c, c, 3 * c * c), 3);
        assert_eq!(matmul_splitk_slices(1000, 1 << 20, 64, 64, 1 << 20), MATMUL_SPLITK_MAX_SLICES as usize);
        assert_eq!(matmul_splitk_slices(sms, bt, 0, c, scratch), 1);
    }
}
