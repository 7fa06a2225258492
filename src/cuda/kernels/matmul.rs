//! Launch code for `kernels/matmul.cu` (version 1, naive; version 2, tiled; and the bias kernels
//! around cuBLAS); the CPU twin is `src/cpu/matmul.rs`.

use super::{grid, int};
use crate::cuda::context::{Dev, Gpu, Matmul};
use crate::cuda::storage::Storage;
use crate::precision::Precision;
use anyhow::{anyhow, Context, Result};
use cudarc::cublas::sys::cublasOperation_t;
use cudarc::driver::LaunchConfig;

/// Threads per block of the naive kernels (version 1) and of `matmul_add_bias`: one thread per output.
pub const MATMUL_NAIVE_BLOCK: u32 = 256;
/// Rows and columns of the output tile of one block of the tiled kernels (version 2): `BM` and `BN`
/// of `kernels/matmul.cu`, which must say the same.
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
                // SAFETY: lengths checked above; the kernel guards every row >= BT and column >= OC.
                unsafe {
                    launch!(
                        self,
                        &T::kernel("matmul_forward2"),
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
        let (dinp, dweight, dout, inp, weight) = (dinp.ptr(), dweight.ptr(), dout.ptr(), inp.ptr(), weight.ptr());
        let (bt_i, c_i, oc_i) = (int(bt, "BT")?, int(c, "C")?, int(oc, "OC")?);
        match self.matmul {
            Matmul::Naive => {
                // SAFETY (the three launches): lengths checked above; one thread per number of dinp
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
            }
            Matmul::Handwritten => {
                // SAFETY (both launches): lengths checked above; the kernel guards rows and columns
                // outside dinp (BT, C) and dweight (OC, C), and reads K = OC or BT within dout, weight, inp.
                unsafe {
                    launch!(
                        self,
                        &T::kernel("matmul_backward_dinp2"),
                        tiled_grid(bt, c),
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
                        &T::kernel("matmul_backward_dweight2"),
                        tiled_grid(oc, c),
                        dweight,
                        dout,
                        inp,
                        bt_i,
                        c_i,
                        oc_i
                    )
                }?;
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

/// cuBLAS SGEMM multiplies fp32 matrices: bf16 runs the hand-written kernels (cuBLASLt's bf16 GEMMs
/// with fused epilogues are the next step, issue 12).
fn cublas_is_fp32<T: Storage>() -> Result<()> {
    if T::PRECISION == Precision::Bf16 {
        anyhow::bail!("--matmul cublas is fp32 only (SGEMM); --precision bf16 runs --matmul handwritten or naive");
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
