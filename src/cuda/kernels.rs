//! The kernels of `kernels/`: their sources, embedded in the binary, compiled at start-up with NVRTC
//! for the device's architecture, and one launch wrapper per layer with the CPU twin's signature
//! (`gpu.layernorm_forward(out, mean, rstd, inp, weight, bias, bt, c)` does on the device what
//! `layernorm_forward(out, mean, rstd, inp, weight, bias, bt, c)` in `src/cpu/layernorm.rs` does).
//!
//! The kernels are plain fp32 CUDA C++ and include no headers, so NVRTC needs nothing but libnvrtc;
//! `tests/kernels_compile.rs` compiles them all without a GPU.

use super::context::{Dev, Gpu, Matmul};
use anyhow::{anyhow, bail, Context, Result};
use cudarc::cublas::sys::cublasOperation_t;
use cudarc::driver::{LaunchConfig, PushKernelArg};
use cudarc::nvrtc::{compile_ptx_with_opts, CompileError, CompileOptions, Ptx};
use std::sync::Mutex;

/// One `.cu` file of `kernels/` and the `extern "C"` kernels it defines.
pub struct KernelSource {
    pub file: &'static str,
    pub source: &'static str,
    pub kernels: &'static [&'static str],
}

/// Every kernel the CUDA path uses, file by file.
pub const SOURCES: [KernelSource; 9] = [
    KernelSource {
        file: "encoder.cu",
        source: include_str!("../../kernels/encoder.cu"),
        kernels: &["encoder_forward", "encoder_backward"],
    },
    KernelSource {
        file: "layernorm.cu",
        source: include_str!("../../kernels/layernorm.cu"),
        kernels: &["layernorm_forward", "layernorm_backward"],
    },
    KernelSource {
        file: "matmul.cu",
        source: include_str!("../../kernels/matmul.cu"),
        kernels: &[
            "matmul_forward1",
            "matmul_backward_dinp1",
            "matmul_backward_dweight1",
            "matmul_backward_dbias1",
            "matmul_forward2",
            "matmul_backward_dinp2",
            "matmul_backward_dweight2",
            "matmul_backward_dbias2",
            "matmul_add_bias",
        ],
    },
    KernelSource {
        file: "attention.cu",
        source: include_str!("../../kernels/attention.cu"),
        kernels: &["attention_forward", "attention_backward_datt", "attention_backward_dq", "attention_backward_dkv"],
    },
    KernelSource {
        file: "gelu.cu",
        source: include_str!("../../kernels/gelu.cu"),
        kernels: &["gelu_forward", "gelu_backward"],
    },
    KernelSource {
        file: "residual.cu",
        source: include_str!("../../kernels/residual.cu"),
        kernels: &["residual_forward", "residual_backward"],
    },
    KernelSource {
        file: "softmax_crossentropy.cu",
        source: include_str!("../../kernels/softmax_crossentropy.cu"),
        kernels: &["softmax_forward", "crossentropy_forward", "crossentropy_softmax_backward"],
    },
    KernelSource { file: "adamw.cu", source: include_str!("../../kernels/adamw.cu"), kernels: &["adamw_update"] },
    KernelSource {
        file: "global_norm.cu",
        source: include_str!("../../kernels/global_norm.cu"),
        kernels: &["global_norm_squared"],
    },
];

/// `compile`, remembered for the life of the process: a second `Gpu` (the tests make many) loads the
/// same PTX without compiling again.
pub fn compile_cached(source: &KernelSource, arch: &str) -> Result<Ptx> {
    static CACHE: Mutex<Vec<(&'static str, String, Ptx)>> = Mutex::new(Vec::new());
    let mut cache = CACHE.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some((_, _, ptx)) = cache.iter().find(|(file, a, _)| *file == source.file && a == arch) {
        return Ok(ptx.clone());
    }
    let ptx = compile(source, arch)?;
    cache.push((source.file, arch.to_string(), ptx.clone()));
    Ok(ptx)
}

/// Compiles one kernel file to PTX for `arch` (e.g. "sm_90") with NVRTC. Needs only libnvrtc (no
/// driver, no GPU); a compile error carries NVRTC's log.
pub fn compile(source: &KernelSource, arch: &str) -> Result<Ptx> {
    let opts = CompileOptions {
        options: vec![format!("--gpu-architecture={arch}")],
        name: Some(source.file.to_string()),
        ..Default::default()
    };
    compile_ptx_with_opts(source.source, opts).map_err(|e| match e {
        CompileError::CompileError { log, options, .. } => anyhow!(
            "NVRTC could not compile kernels/{} for {arch} (options {options:?}):\n{}",
            source.file,
            log.to_string_lossy()
        ),
        other => anyhow!("NVRTC failed on kernels/{}: {other:?}", source.file),
    })
}

/// Launches kernel `$name` on the GPU's stream with the given config and arguments (local variables:
/// the builder keeps their addresses until the launch). Must be used inside `unsafe`, with a SAFETY
/// comment saying why the arguments are valid for that kernel.
macro_rules! launch {
    ($gpu:expr, $name:literal, $cfg:expr, $($arg:ident),+ $(,)?) => {{
        let mut builder = $gpu.stream.launch_builder($gpu.function($name));
        $( builder.arg(&$arg); )+
        builder.launch($cfg).map(|_| ()).with_context(|| format!("cannot launch {}", $name))
    }};
}

/// A size as the kernels' `int`.
fn int(n: usize, what: &str) -> Result<i32> {
    i32::try_from(n).map_err(|_| anyhow!("{what} = {n} does not fit the kernels' 32-bit int"))
}

/// The attention kernels keep one head's vector per thread in a local array of MAX_HS = 128 floats.
fn check_head_size(hs: usize) -> Result<()> {
    if hs > 128 {
        bail!("the attention kernels handle heads of at most 128 channels; C/NH = {hs}");
    }
    Ok(())
}

/// `threads` threads per block, enough blocks for `n` threads.
fn grid(n: usize, threads: u32) -> LaunchConfig {
    LaunchConfig {
        grid_dim: (n.div_ceil(threads as usize).max(1) as u32, 1, 1),
        block_dim: (threads, 1, 1),
        shared_mem_bytes: 0,
    }
}

impl Gpu {
    // ---------------------------------------------------------------------------------- encoder

    /// out (B, T, C) = wte[inp[b, t]] + wpe[t], for tokens inp (B, T), wte (Vp, C), wpe (maxT, C).
    ///
    /// # Safety
    /// Every token in `inp` must be below wte's number of rows: the kernel reads wte at them, and the
    /// tokens live on the device where this function cannot check them.
    pub unsafe fn encoder_forward(
        &self,
        out: Dev<f32>,
        inp: Dev<u32>,
        wte: Dev<f32>,
        wpe: Dev<f32>,
        b: usize,
        t: usize,
        c: usize,
    ) -> Result<()> {
        assert!(out.len() == b * t * c && inp.len() == b * t && wte.len().is_multiple_of(c) && wpe.len() >= t * c);
        let cfg = grid(b * t * c, 256);
        let (out, inp, wte, wpe) = (out.ptr(), inp.ptr(), wte.ptr(), wpe.ptr());
        let (b, t, c) = (int(b, "B")?, int(t, "T")?, int(c, "C")?);
        // SAFETY: out holds B*T*C floats, inp B*T tokens (checked above); the tokens index rows of wte
        // (checked by the caller) and positions t < T index rows of wpe (wpe has at least T rows).
        unsafe { launch!(self, "encoder_forward", cfg, out, inp, wte, wpe, b, t, c) }
    }

    /// Backward of `encoder_forward`: accumulates (+=) dout's rows into dwte and dwpe.
    ///
    /// # Safety
    /// As for `encoder_forward`: every token must be below dwte's number of rows (the kernel writes there).
    pub unsafe fn encoder_backward(
        &self,
        dwte: Dev<f32>,
        dwpe: Dev<f32>,
        dout: Dev<f32>,
        inp: Dev<u32>,
        b: usize,
        t: usize,
        c: usize,
    ) -> Result<()> {
        assert!(dout.len() == b * t * c && inp.len() == b * t && dwte.len().is_multiple_of(c) && dwpe.len() >= t * c);
        let cfg = grid(b * t * c, 256);
        let (dwte, dwpe, dout, inp) = (dwte.ptr(), dwpe.ptr(), dout.ptr(), inp.ptr());
        let (b, t, c) = (int(b, "B")?, int(t, "T")?, int(c, "C")?);
        // SAFETY: as in encoder_forward: every index is within dout, inp, dwte and dwpe.
        unsafe { launch!(self, "encoder_backward", cfg, dwte, dwpe, dout, inp, b, t, c) }
    }

    // -------------------------------------------------------------------------------- layernorm

    /// out (BT, C), mean (BT), rstd (BT) from inp (BT, C), weight (C), bias (C).
    #[allow(clippy::too_many_arguments)]
    pub fn layernorm_forward(
        &self,
        out: Dev<f32>,
        mean: Dev<f32>,
        rstd: Dev<f32>,
        inp: Dev<f32>,
        weight: Dev<f32>,
        bias: Dev<f32>,
        bt: usize,
        c: usize,
    ) -> Result<()> {
        assert!(out.len() == bt * c && inp.len() == bt * c && mean.len() == bt && rstd.len() == bt);
        assert!(weight.len() == c && bias.len() == c);
        // one warp (32 threads) per row, 8 rows per block
        let cfg = grid(bt * 32, 256);
        let (out, mean, rstd, inp, weight, bias) =
            (out.ptr(), mean.ptr(), rstd.ptr(), inp.ptr(), weight.ptr(), bias.ptr());
        let (bt, c) = (int(bt, "BT")?, int(c, "C")?);
        // SAFETY: the lengths are checked above; the kernel reads and writes rows < BT of C numbers.
        unsafe { launch!(self, "layernorm_forward", cfg, out, mean, rstd, inp, weight, bias, bt, c) }
    }

    /// Backward of `layernorm_forward`: accumulates (+=) into dinp (BT, C), dweight (C), dbias (C).
    #[allow(clippy::too_many_arguments)]
    pub fn layernorm_backward(
        &self,
        dinp: Dev<f32>,
        dweight: Dev<f32>,
        dbias: Dev<f32>,
        dout: Dev<f32>,
        inp: Dev<f32>,
        weight: Dev<f32>,
        mean: Dev<f32>,
        rstd: Dev<f32>,
        bt: usize,
        c: usize,
    ) -> Result<()> {
        assert!(dinp.len() == bt * c && dout.len() == bt * c && inp.len() == bt * c);
        assert!(dweight.len() == c && dbias.len() == c && weight.len() == c && mean.len() == bt && rstd.len() == bt);
        // 8 warps per block, at most 4 blocks per SM: the warps stride over the rows, and each block
        // adds its partial dweight and dbias (2*C floats of shared memory) once
        let shared = 2 * c * std::mem::size_of::<f32>();
        if shared > 48 * 1024 {
            bail!("layernorm_backward keeps 2*C floats in shared memory; C = {c} is too wide");
        }
        let blocks = bt.div_ceil(8).min(4 * self.num_sms as usize).max(1);
        let cfg =
            LaunchConfig { grid_dim: (blocks as u32, 1, 1), block_dim: (256, 1, 1), shared_mem_bytes: shared as u32 };
        let (dinp, dweight, dbias, dout, inp) = (dinp.ptr(), dweight.ptr(), dbias.ptr(), dout.ptr(), inp.ptr());
        let (weight, mean, rstd) = (weight.ptr(), mean.ptr(), rstd.ptr());
        let (bt, c) = (int(bt, "BT")?, int(c, "C")?);
        // SAFETY: the lengths are checked above and the dynamic shared memory holds the 2*C floats the kernel uses.
        unsafe { launch!(self, "layernorm_backward", cfg, dinp, dweight, dbias, dout, inp, weight, mean, rstd, bt, c) }
    }

    // ----------------------------------------------------------------------------------- matmul

    /// out (BT, OC) = inp (BT, C) @ weight (OC, C)^T + bias (OC), with the kernels `self.matmul` names.
    #[allow(clippy::too_many_arguments)]
    pub fn matmul_forward(
        &self,
        out: Dev<f32>,
        inp: Dev<f32>,
        weight: Dev<f32>,
        bias: Option<Dev<f32>>,
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
                let cfg = grid(bt * oc, 256);
                // SAFETY: lengths checked above; one thread per output of out (BT*OC); bias is null or OC floats.
                unsafe {
                    launch!(self, "matmul_forward1", cfg, out_ptr, inp_ptr, weight_ptr, bias_ptr, bt_i, c_i, oc_i)
                }
            }
            Matmul::Handwritten => {
                let cfg = tiled_grid(bt, oc);
                // SAFETY: lengths checked above; the kernel guards every row >= BT and column >= OC.
                unsafe {
                    launch!(self, "matmul_forward2", cfg, out_ptr, inp_ptr, weight_ptr, bias_ptr, bt_i, c_i, oc_i)
                }
            }
            Matmul::Cublas => {
                // row-major out (BT, OC) is column-major out^T (OC, BT) = weight (OC, C) @ inp^T (C, BT)
                let (op_t, op_n) = (cublasOperation_t::CUBLAS_OP_T, cublasOperation_t::CUBLAS_OP_N);
                self.sgemm(op_t, op_n, oc_i, bt_i, c_i, weight_ptr, c_i, inp_ptr, c_i, 0.0, out_ptr, oc_i)?;
                if let Some(bias) = bias {
                    let bias = bias.ptr();
                    let cfg = grid(bt * oc, 256);
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
    #[allow(clippy::too_many_arguments)]
    pub fn matmul_backward(
        &self,
        dinp: Dev<f32>,
        dweight: Dev<f32>,
        dbias: Option<Dev<f32>>,
        dout: Dev<f32>,
        inp: Dev<f32>,
        weight: Dev<f32>,
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
                    launch!(self, "matmul_backward_dinp1", grid(bt * c, 256), dinp, dout, weight, bt_i, c_i, oc_i)
                }?;
                unsafe {
                    launch!(self, "matmul_backward_dweight1", grid(oc * c, 256), dweight, dout, inp, bt_i, c_i, oc_i)
                }?;
                if let Some(dbias) = dbias {
                    let dbias = dbias.ptr();
                    unsafe { launch!(self, "matmul_backward_dbias1", grid(oc, 256), dbias, dout, bt_i, oc_i) }?;
                }
            }
            Matmul::Handwritten => {
                // SAFETY (both launches): lengths checked above; the kernel guards rows and columns
                // outside dinp (BT, C) and dweight (OC, C), and reads K = OC or BT within dout, weight, inp.
                unsafe {
                    launch!(self, "matmul_backward_dinp2", tiled_grid(bt, c), dinp, dout, weight, bt_i, c_i, oc_i)
                }?;
                unsafe {
                    launch!(self, "matmul_backward_dweight2", tiled_grid(oc, c), dweight, dout, inp, bt_i, c_i, oc_i)
                }?;
                if let Some(dbias) = dbias {
                    self.dbias2(dbias, dout, bt, oc)?;
                }
            }
            Matmul::Cublas => {
                let (op_t, op_n) = (cublasOperation_t::CUBLAS_OP_T, cublasOperation_t::CUBLAS_OP_N);
                // column-major dinp^T (C, BT) += weight^T (C, OC) @ dout^T (OC, BT)
                self.sgemm(op_n, op_n, c_i, bt_i, oc_i, weight, c_i, dout, oc_i, 1.0, dinp, c_i)?;
                // column-major dweight^T (C, OC) += inp^T (C, BT) @ dout (BT, OC)
                self.sgemm(op_n, op_t, c_i, oc_i, bt_i, inp, c_i, dout, oc_i, 1.0, dweight, c_i)?;
                if let Some(dbias) = dbias {
                    self.dbias2(dbias, dout, bt, oc)?;
                }
            }
        }
        Ok(())
    }

    /// dbias (OC) += column sums of dout (BT, OC), `matmul_backward_dbias2`.
    fn dbias2(&self, dbias: Dev<f32>, dout: u64, bt: usize, oc: usize) -> Result<()> {
        let row_groups = bt.div_ceil(256).clamp(1, 64);
        let cfg = LaunchConfig {
            grid_dim: (oc.div_ceil(32) as u32, row_groups as u32, 1),
            block_dim: (32, 8, 1),
            shared_mem_bytes: 0,
        };
        let dbias = dbias.ptr();
        let (bt, oc) = (int(bt, "BT")?, int(oc, "OC")?);
        // SAFETY: dbias holds OC floats and dout BT*OC (checked by the caller); columns >= OC are skipped.
        unsafe { launch!(self, "matmul_backward_dbias2", cfg, dbias, dout, bt, oc) }
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
        unsafe {
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
        }
        .map_err(|e| anyhow!("cuBLAS SGEMM failed: {e}"))
    }

    // -------------------------------------------------------------------------------- attention

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
        let cfg = grid(b * nh * t, 128);
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
        let cfg = grid(b * nh * t, 128);
        let (dinp, dpreatt, datt, dout, inp, att) =
            (dinp.ptr(), dpreatt.ptr(), datt.ptr(), dout.ptr(), inp.ptr(), att.ptr());
        let (b, t, c, nh) = (int(b, "B")?, int(t, "T")?, int(c, "C")?, int(nh, "NH")?);
        // SAFETY (the three launches): lengths checked above; one thread per row of B*NH*T, each
        // writing only its own row of dpreatt and datt, or its own position's q, k or v in dinp.
        unsafe { launch!(self, "attention_backward_datt", cfg, dpreatt, datt, dout, inp, att, b, t, c, nh) }?;
        unsafe { launch!(self, "attention_backward_dq", cfg, dinp, dpreatt, inp, b, t, c, nh) }?;
        unsafe { launch!(self, "attention_backward_dkv", cfg, dinp, dpreatt, dout, inp, att, b, t, c, nh) }
    }

    // ------------------------------------------------------------------------- gelu, residual

    /// out (N) = gelu(inp (N)).
    pub fn gelu_forward(&self, out: Dev<f32>, inp: Dev<f32>) -> Result<()> {
        assert_eq!(out.len(), inp.len());
        let cfg = grid(out.len(), 256);
        let n = out.len() as i64;
        let (out, inp) = (out.ptr(), inp.ptr());
        // SAFETY: both hold N floats; one thread per index < N.
        unsafe { launch!(self, "gelu_forward", cfg, out, inp, n) }
    }

    /// dinp (N) += gelu'(inp) * dout.
    pub fn gelu_backward(&self, dinp: Dev<f32>, inp: Dev<f32>, dout: Dev<f32>) -> Result<()> {
        assert!(dinp.len() == inp.len() && dout.len() == inp.len());
        let cfg = grid(dinp.len(), 256);
        let n = dinp.len() as i64;
        let (dinp, inp, dout) = (dinp.ptr(), inp.ptr(), dout.ptr());
        // SAFETY: all three hold N floats; one thread per index < N.
        unsafe { launch!(self, "gelu_backward", cfg, dinp, inp, dout, n) }
    }

    /// out (N) = inp1 (N) + inp2 (N).
    pub fn residual_forward(&self, out: Dev<f32>, inp1: Dev<f32>, inp2: Dev<f32>) -> Result<()> {
        assert!(out.len() == inp1.len() && out.len() == inp2.len());
        let cfg = grid(out.len(), 256);
        let n = out.len() as i64;
        let (out, inp1, inp2) = (out.ptr(), inp1.ptr(), inp2.ptr());
        // SAFETY: all three hold N floats; one thread per index < N.
        unsafe { launch!(self, "residual_forward", cfg, out, inp1, inp2, n) }
    }

    /// dinp1 (N) += dout, dinp2 (N) += dout.
    pub fn residual_backward(&self, dinp1: Dev<f32>, dinp2: Dev<f32>, dout: Dev<f32>) -> Result<()> {
        assert!(dinp1.len() == dout.len() && dinp2.len() == dout.len());
        let cfg = grid(dout.len(), 256);
        let n = dout.len() as i64;
        let (dinp1, dinp2, dout) = (dinp1.ptr(), dinp2.ptr(), dout.ptr());
        // SAFETY: all three hold N floats; one thread per index < N.
        unsafe { launch!(self, "residual_backward", cfg, dinp1, dinp2, dout, n) }
    }

    // ------------------------------------------------------------------ softmax, cross-entropy

    /// probs (BT, Vp) = softmax over the first V columns of logits (BT, Vp); columns V..Vp get 0.
    pub fn softmax_forward(&self, probs: Dev<f32>, logits: Dev<f32>, bt: usize, v: usize, vp: usize) -> Result<()> {
        assert!(probs.len() == bt * vp && logits.len() == bt * vp && v <= vp);
        // one block of 512 threads per row
        let cfg = LaunchConfig { grid_dim: (bt.max(1) as u32, 1, 1), block_dim: (512, 1, 1), shared_mem_bytes: 0 };
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
        let cfg = grid(bt, 256);
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
        let cfg = LaunchConfig { grid_dim: (bt.max(1) as u32, 1, 1), block_dim: (512, 1, 1), shared_mem_bytes: 0 };
        let (dlogits, dlosses, probs, targets) = (dlogits.ptr(), dlosses.ptr(), probs.ptr(), targets.ptr());
        let (bt, v, vp) = (int(bt, "BT")?, int(v, "V")?, int(vp, "Vp")?);
        // SAFETY: lengths checked above; block `row` touches only row `row` < BT.
        unsafe { launch!(self, "crossentropy_softmax_backward", cfg, dlogits, dlosses, probs, targets, bt, v, vp) }
    }

    // ------------------------------------------------------------------------ AdamW, global norm

    /// One AdamW update of the parameters of one tensor (params, grads, m and v views of the same
    /// length), gradients first multiplied by `grad_scale`; see `adamw_update` in `src/optim.rs`.
    #[allow(clippy::too_many_arguments)]
    pub fn adamw_update(
        &self,
        params: Dev<f32>,
        grads: Dev<f32>,
        m: Dev<f32>,
        v: Dev<f32>,
        lr: f32,
        beta1: f32,
        beta2: f32,
        beta1_correction: f32,
        beta2_correction: f32,
        eps: f32,
        weight_decay: f32,
        grad_scale: f32,
    ) -> Result<()> {
        let n = params.len();
        assert!(grads.len() == n && m.len() == n && v.len() == n);
        let cfg = grid(n, 256);
        let num_parameters = n as i64;
        let (params, grads, m, v) = (params.ptr(), grads.ptr(), m.ptr(), v.ptr());
        // SAFETY: all four hold num_parameters floats; one thread per index below it.
        unsafe {
            launch!(
                self,
                "adamw_update",
                cfg,
                params,
                grads,
                m,
                v,
                num_parameters,
                lr,
                beta1,
                beta2,
                beta1_correction,
                beta2_correction,
                eps,
                weight_decay,
                grad_scale
            )
        }
    }

    /// The L2 norm of all of `grads`, the squares summed in f64 (waits for the result).
    pub fn global_norm(&self, grads: Dev<f32>) -> Result<f32> {
        let out = self.norm_scratch.all();
        self.zero(out)?;
        let blocks = grads.len().div_ceil(512).clamp(1, 2 * self.num_sms as usize);
        let cfg = LaunchConfig { grid_dim: (blocks as u32, 1, 1), block_dim: (512, 1, 1), shared_mem_bytes: 0 };
        let n = grads.len() as i64;
        let (out_ptr, grads_ptr) = (out.ptr(), grads.ptr());
        // SAFETY: out is one double, grads holds N floats, read with a grid-stride loop below N.
        unsafe { launch!(self, "global_norm_squared", cfg, out_ptr, grads_ptr, n) }?;
        let squares = self.download(out)?;
        Ok(squares[0].sqrt() as f32)
    }
}

/// The grid of the tiled matmul for an (M, N) output: one block of 256 threads per 128x128 tile.
fn tiled_grid(m: usize, n: usize) -> LaunchConfig {
    LaunchConfig {
        grid_dim: (n.div_ceil(128).max(1) as u32, m.div_ceil(128).max(1) as u32, 1),
        block_dim: (256, 1, 1),
        shared_mem_bytes: 0,
    }
}
