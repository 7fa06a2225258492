//! The matmuls through cuBLASLt (`--matmul cublas` in bf16), with the work around each GEMM fused
//! into it as cuBLASLt's epilogues, as llm.c's `matmul_cublaslt` (llmc/matmul.cuh) does:
//!
//! | call                           | GEMM (row-major)                     | epilogue                          |
//! |--------------------------------|--------------------------------------|-----------------------------------|
//! | `cublaslt_matmul_forward`      | out = inp @ weight^T (+ bias)        | BIAS (or DEFAULT without a bias)  |
//! | `cublaslt_matmul_gelu_forward` | pre = inp @ weight^T + bias, gelu    | GELU_AUX_BIAS: out = gelu(pre), aux = pre |
//! | `cublaslt_matmul_backward`     | dinp += dout @ weight                | DEFAULT, beta = 1                 |
//! |                                | dweight += dout^T @ inp, dbias       | BGRADB into scratch, beta = 1     |
//!
//! The CPU twins are `src/cpu/matmul.rs` and `src/cpu/gelu.rs` as `src/cpu/bf16.rs` rounds them.
//! Every GEMM reads bf16 (or fp32) A and B, multiplies and sums in fp32 (CUBLAS_COMPUTE_32F, fp32
//! alpha and beta), and writes D in the storage type, rounded once, but dweight, which is an fp32
//! parameter gradient (bf16 A and B with fp32 C and D is one of cuBLASLt's listed type
//! combinations). The fp32 path of `--matmul cublas` stays cuBLAS SGEMM (`matmul.rs`).
//!
//! cuBLAS is column-major: a row-major (R, C) matrix is the column-major (C, R) one with leading
//! dimension C, its transpose. So row-major out (BT, OC) = inp (BT, C) @ weight (OC, C)^T is
//! column-major out^T (OC, BT) = weight^T... written `D (m=OC, n=BT) = op(A) (OC, C) op(B) (C, BT)`
//! with A = weight (column-major (C, OC), transposed) and B = inp (column-major (C, BT)). Each call
//! below says its m, n, k and operands in these terms.

use super::int;
use crate::cuda::context::{Dev, Gpu};
use crate::cuda::cublaslt_handle::{CublasLt, CUBLASLT_DBIAS_SCRATCH, CUBLASLT_WORKSPACE_BYTES};
use crate::cuda::storage::Storage;
use crate::precision::Precision;
use anyhow::{anyhow, bail, Context, Result};
use cudarc::cublas::sys::cublasOperation_t;
use cudarc::cublaslt::{result as lt, sys};
use std::ffi::c_void;

/// The cuBLASLt data type of storage type `T`.
fn data_type<T: Storage>() -> sys::cudaDataType {
    match T::PRECISION {
        Precision::Fp32 => sys::cudaDataType_t::CUDA_R_32F,
        Precision::Bf16 => sys::cudaDataType_t::CUDA_R_16BF,
    }
}

/// What cuBLASLt does to the GEMM's result before writing D.
#[derive(Clone, Copy, Debug)]
enum Epilogue {
    /// D = alpha A B + beta C.
    Default,
    /// D = A B + bias, the bias (m numbers, D's type) added to every column.
    Bias { bias: u64 },
    /// aux = A B (+ bias); D = gelu(aux) (GELU's tanh approximation, as GPT-2 uses it). aux is an
    /// (m, n) matrix of D's type with leading dimension `ld`.
    GeluAux { bias: Option<u64>, aux: u64, ld: i64 },
    /// D = alpha A B + beta C, and the bias gradient (n fp32 numbers) = the sums of B over k written at `dbias`.
    BgradB { dbias: u64 },
}

/// One column-major GEMM: D (m, n) = epilogue(op(A) (m, k) op(B) (k, n) + beta D). A and B are of
/// type `ab`, D (and C, which is D itself: beta = 1 adds into it) of type `d`.
#[derive(Clone, Copy, Debug)]
struct Gemm {
    transa: bool,
    transb: bool,
    m: i32,
    n: i32,
    k: i32,
    a: u64,
    lda: i32,
    b: u64,
    ldb: i32,
    d: u64,
    ldd: i32,
    ab: sys::cudaDataType,
    d_type: sys::cudaDataType,
    beta: f32,
    epilogue: Epilogue,
}

/// The largest power of two (up to 256) that divides a device address: the alignment cuBLASLt's
/// heuristic must assume. By default it assumes 256 bytes and may pick an algorithm that needs
/// them; a layer's slice of a stacked tensor is less aligned than that (PyTorch does the same).
fn alignment(ptr: u64) -> u32 {
    if ptr == 0 {
        256
    } else {
        1u32 << ptr.trailing_zeros().min(8)
    }
}

/// The descriptors of one GEMM, destroyed when dropped (also on an error half-way).
#[derive(Default)]
struct Descriptors {
    desc: Option<sys::cublasLtMatmulDesc_t>,
    layouts: Vec<sys::cublasLtMatrixLayout_t>,
    pref: Option<sys::cublasLtMatmulPreference_t>,
}

impl Drop for Descriptors {
    fn drop(&mut self) {
        // SAFETY: each was created once by the cuBLASLt calls below and is destroyed once, here.
        unsafe {
            if let Some(desc) = self.desc.take() {
                let _ = lt::destroy_matmul_desc(desc);
            }
            for layout in self.layouts.drain(..) {
                let _ = lt::destroy_matrix_layout(layout);
            }
            if let Some(pref) = self.pref.take() {
                let _ = lt::destroy_matmul_pref(pref);
            }
        }
    }
}

/// Sets one attribute of a matmul descriptor to `value`.
///
/// # Safety
/// `desc` must be live, and `V` the type cuBLASLt documents for `attr`.
unsafe fn set_desc<V>(
    desc: sys::cublasLtMatmulDesc_t,
    attr: sys::cublasLtMatmulDescAttributes_t,
    value: &V,
) -> Result<()> {
    let ptr = value as *const V as *const c_void;
    lt::set_matmul_desc_attribute(desc, attr, ptr, std::mem::size_of::<V>())
        .map_err(|e| anyhow!("cuBLASLt refused the matmul attribute {attr:?}: {e}"))
}

/// Sets one attribute of a heuristic preference to `value`.
///
/// # Safety
/// `pref` must be live, and `V` the type cuBLASLt documents for `attr`.
unsafe fn set_pref<V>(
    pref: sys::cublasLtMatmulPreference_t,
    attr: sys::cublasLtMatmulPreferenceAttributes_t,
    value: &V,
) -> Result<()> {
    let ptr = value as *const V as *const c_void;
    lt::set_matmul_pref_attribute(pref, attr, ptr, std::mem::size_of::<V>())
        .map_err(|e| anyhow!("cuBLASLt refused the preference {attr:?}: {e}"))
}

impl Gpu {
    /// out (BT, OC) = inp (BT, C) @ weight (OC, C)^T + bias (OC), in one cuBLASLt call (the bias
    /// added by the BIAS epilogue, in fp32, before the one rounding to `T`).
    #[allow(clippy::too_many_arguments)]
    pub fn cublaslt_matmul_forward<T: Storage>(
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
        let epilogue = match bias {
            Some(bias) => Epilogue::Bias { bias: aligned_16(bias.ptr(), "the bias")? },
            None => Epilogue::Default,
        };
        // column-major out^T (OC, BT) = weight^T (OC, C) @ inp^T (C, BT)
        let (bt, c, oc) = (int(bt, "BT")?, int(c, "C")?, int(oc, "OC")?);
        self.cublaslt_gemm(
            "cublaslt_matmul_forward",
            Gemm {
                transa: true,
                transb: false,
                m: oc,
                n: bt,
                k: c,
                a: weight.ptr(),
                lda: c,
                b: inp.ptr(),
                ldb: c,
                d: out.ptr(),
                ldd: oc,
                ab: data_type::<T>(),
                d_type: data_type::<T>(),
                beta: 0.0,
                epilogue,
            },
        )
    }

    /// The MLP's first matmul and its GELU in one cuBLASLt call (the GELU_AUX_BIAS epilogue):
    ///   pre_gelu (BT, OC) = inp (BT, C) @ weight (OC, C)^T + bias (OC)   (the aux output)
    ///   out (BT, OC)      = gelu(pre_gelu)
    /// pre_gelu is what the GELU's backward reads (`gelu_backward(dinp, pre_gelu, dout)`).
    ///
    /// One difference from the two calls it replaces, in bf16: the GELU is taken of the fp32 sum,
    /// before it is rounded to bf16, where `gelu_forward` reads the rounded pre_gelu. So out
    /// differs from the CPU's bf16 layers (which round pre_gelu first) by a bf16 step in some values.
    #[allow(clippy::too_many_arguments)]
    pub fn cublaslt_matmul_gelu_forward<T: Storage>(
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
        assert!(out.len() == bt * oc && pre_gelu.len() == bt * oc && inp.len() == bt * c && weight.len() == oc * c);
        assert!(bias.is_none_or(|b| b.len() == oc));
        // cuBLASLt's rules for the aux buffer: its leading dimension a multiple of 8, its address
        // aligned like a vector load (16 bytes)
        if !oc.is_multiple_of(8) {
            bail!("cuBLASLt's fused GELU needs the output width OC = {oc} to be a multiple of 8 (the aux buffer's leading dimension)");
        }
        let epilogue = Epilogue::GeluAux {
            bias: bias.map(|b| aligned_16(b.ptr(), "the bias")).transpose()?,
            aux: aligned_16(pre_gelu.ptr(), "the pre-GELU (aux) buffer")?,
            ld: oc as i64,
        };
        // column-major out^T (OC, BT) = gelu(weight^T (OC, C) @ inp^T (C, BT) + bias), aux (OC, BT) likewise
        let (bt, c, oc) = (int(bt, "BT")?, int(c, "C")?, int(oc, "OC")?);
        self.cublaslt_gemm(
            "cublaslt_matmul_gelu_forward",
            Gemm {
                transa: true,
                transb: false,
                m: oc,
                n: bt,
                k: c,
                a: weight.ptr(),
                lda: c,
                b: inp.ptr(),
                ldb: c,
                d: out.ptr(),
                ldd: oc,
                ab: data_type::<T>(),
                d_type: data_type::<T>(),
                beta: 0.0,
                epilogue,
            },
        )
    }

    /// Backward of `cublaslt_matmul_forward`. Accumulates (+=) into dinp (BT, C), dweight (OC, C)
    /// and dbias (OC), given dout (BT, OC):
    ///   dinp    += dout @ weight           (beta = 1: in bf16, read, add in fp32, round once)
    ///   dweight += dout^T @ inp            (fp32 C and D, beta = 1)
    ///   dbias   += sum over rows of dout   (the BGRADB epilogue of the dweight GEMM)
    ///
    /// BGRADB writes (=) the bias gradient, with no beta of its own, but dbias, like every
    /// parameter gradient here, accumulates over micro-batches: so it writes into the scratch and
    /// one elementwise fp32 addition (`residual_forward`, out = inp1 + inp2, with out = inp1 =
    /// dbias) adds it in. (llm.c sums dbias with a kernel of its own instead.)
    ///
    /// The GELU's backward stays `gelu_backward` (kernels/gelu.cu) rather than the DGELU epilogue
    /// on the dinp GEMM: DGELU multiplies the whole result, beta * C included, by gelu'(aux), which
    /// is not `dfch += gelu'(fch) * (dfch_gelu + dfcproj @ fcprojw)`'s accumulation, and the
    /// separate step keeps dfch_gelu (rounded once to bf16, then multiplied) the CPU's numbers.
    #[allow(clippy::too_many_arguments)]
    pub fn cublaslt_matmul_backward<T: Storage>(
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
        let scratch = self.cublaslt()?.dbias_scratch.all();
        if dbias.is_some() && oc > CUBLASLT_DBIAS_SCRATCH {
            bail!(
                "cuBLASLt's bias gradient scratch holds {CUBLASLT_DBIAS_SCRATCH} numbers, but this bias has OC = {oc}"
            );
        }
        let (bt_i, c_i, oc_i) = (int(bt, "BT")?, int(c, "C")?, int(oc, "OC")?);
        // column-major dinp^T (C, BT) += weight^T (C, OC) @ dout^T (OC, BT)
        self.cublaslt_gemm(
            "cublaslt_matmul_backward_dinp",
            Gemm {
                transa: false,
                transb: false,
                m: c_i,
                n: bt_i,
                k: oc_i,
                a: weight.ptr(),
                lda: c_i,
                b: dout.ptr(),
                ldb: oc_i,
                d: dinp.ptr(),
                ldd: c_i,
                ab: data_type::<T>(),
                d_type: data_type::<T>(),
                beta: 1.0,
                epilogue: Epilogue::Default,
            },
        )?;
        // column-major dweight^T (C, OC) += inp^T (C, BT) @ dout (BT, OC); the bias gradient is
        // the sum of B = dout over k = BT, one number per column of D (OC)
        self.cublaslt_gemm(
            "cublaslt_matmul_backward_dweight",
            Gemm {
                transa: false,
                transb: true,
                m: c_i,
                n: oc_i,
                k: bt_i,
                a: inp.ptr(),
                lda: c_i,
                b: dout.ptr(),
                ldb: oc_i,
                d: dweight.ptr(),
                ldd: c_i,
                ab: data_type::<T>(),
                d_type: sys::cudaDataType_t::CUDA_R_32F,
                beta: 1.0,
                epilogue: match dbias {
                    Some(_) => Epilogue::BgradB { dbias: scratch.ptr() },
                    None => Epilogue::Default,
                },
            },
        )?;
        if let Some(dbias) = dbias {
            // dbias (OC) = dbias + this micro-batch's bias gradient (queued after the GEMM that wrote it)
            self.residual_forward(dbias, dbias, scratch.slice(0, oc))?;
        }
        Ok(())
    }

    /// The handle, workspace and scratch, made with the cuBLAS handle (`--matmul cublas`).
    fn cublaslt(&self) -> Result<&CublasLt> {
        self.lt.as_ref().context("--matmul cublas: the GPU was opened without a cuBLASLt handle")
    }

    /// Runs one GEMM: its descriptors, the heuristic's choice of algorithm for them, the call.
    fn cublaslt_gemm(&self, name: &str, g: Gemm) -> Result<()> {
        let handle = self.cublaslt()?;
        self.ctx.bind_to_thread()?;
        let mut d = Descriptors::default();
        let what = || {
            format!(
                "{name}: m {} n {} k {} (A {:?}{}, B {:?}{}, D {:?}), epilogue {:?}",
                g.m,
                g.n,
                g.k,
                g.ab,
                if g.transa { "^T" } else { "" },
                g.ab,
                if g.transb { "^T" } else { "" },
                g.d_type,
                g.epilogue
            )
        };
        // SAFETY: every descriptor is created here, used while `d` lives and destroyed by its Drop;
        // the attribute values have the types cuBLASLt documents (int32 for the transposes and the
        // data type, uint32 for the epilogue and the alignments, a pointer for the device addresses,
        // int64 for the aux leading dimension, size_t for the workspace size); the device addresses
        // are views whose lengths the callers checked against m, n, k and the leading dimensions.
        unsafe {
            let desc = matmul_desc(&g, &mut d)?;
            // the layouts: column-major, rows x columns as stored (before op)
            let (a_rows, a_cols) = if g.transa { (g.k, g.m) } else { (g.m, g.k) };
            let (b_rows, b_cols) = if g.transb { (g.n, g.k) } else { (g.k, g.n) };
            let mut layout = |ty, rows: i32, cols: i32, ld: i32| -> Result<sys::cublasLtMatrixLayout_t> {
                let l = lt::create_matrix_layout(ty, rows as u64, cols as u64, ld as i64)
                    .map_err(|e| anyhow!("cannot create a cuBLASLt layout ({rows} x {cols}, ld {ld}): {e}"))?;
                d.layouts.push(l);
                Ok(l)
            };
            let a_layout = layout(g.ab, a_rows, a_cols, g.lda)?;
            let b_layout = layout(g.ab, b_rows, b_cols, g.ldb)?;
            let d_layout = layout(g.d_type, g.m, g.n, g.ldd)?;

            let pref = preference(&g, &mut d)?;

            // C is D (beta = 1 adds into it; beta = 0 ignores it)
            let heuristic =
                lt::get_matmul_algo_heuristic(handle.handle, desc, a_layout, b_layout, d_layout, d_layout, pref)
                    .map_err(|e| {
                        anyhow!(
                        "cuBLASLt has no algorithm for {} ({e}; alignments A {} B {} D {} bytes); --matmul handwritten \
                         runs without cuBLASLt",
                        what(),
                        alignment(g.a),
                        alignment(g.b),
                        alignment(g.d)
                    )
                    })?;
            let (alpha, beta) = (1.0f32, g.beta);
            self.timed(name, || {
                lt::matmul(
                    handle.handle,
                    desc,
                    &alpha as *const f32 as *const c_void,
                    &beta as *const f32 as *const c_void,
                    g.a as *const c_void,
                    a_layout,
                    g.b as *const c_void,
                    b_layout,
                    g.d as *const c_void,
                    d_layout,
                    g.d as *mut c_void,
                    d_layout,
                    &heuristic.algo,
                    handle.workspace.all().ptr() as *mut c_void,
                    CUBLASLT_WORKSPACE_BYTES,
                    self.stream.cu_stream() as sys::cudaStream_t,
                )
                .map_err(|e| anyhow!("cuBLASLt matmul failed: {} ({e})", what()))
            })
        }
    }
}

/// The matmul descriptor of `g` (kept in `d`, which destroys it): fp32 accumulation, the transposes
/// and the epilogue with its bias and aux pointers.
///
/// # Safety
/// The attribute values have the types cuBLASLt documents (int32 for the transposes and the data
/// type, uint32 for the epilogue, a pointer for the device addresses, int64 for the aux leading
/// dimension); the device addresses are views the callers checked.
unsafe fn matmul_desc(g: &Gemm, d: &mut Descriptors) -> Result<sys::cublasLtMatmulDesc_t> {
    let desc = lt::create_matmul_desc(sys::cublasComputeType_t::CUBLAS_COMPUTE_32F, sys::cudaDataType_t::CUDA_R_32F)
        .map_err(|e| anyhow!("cannot create a cuBLASLt matmul descriptor: {e}"))?;
    d.desc = Some(desc);
    let op = |t: bool| if t { cublasOperation_t::CUBLAS_OP_T as i32 } else { cublasOperation_t::CUBLAS_OP_N as i32 };
    set_desc(desc, sys::cublasLtMatmulDescAttributes_t::CUBLASLT_MATMUL_DESC_TRANSA, &op(g.transa))?;
    set_desc(desc, sys::cublasLtMatmulDescAttributes_t::CUBLASLT_MATMUL_DESC_TRANSB, &op(g.transb))?;
    use sys::cublasLtEpilogue_t as E;
    use sys::cublasLtMatmulDescAttributes_t as A;
    let (epilogue, bias) = match g.epilogue {
        Epilogue::Default => (E::CUBLASLT_EPILOGUE_DEFAULT, None),
        Epilogue::Bias { bias } => (E::CUBLASLT_EPILOGUE_BIAS, Some(bias)),
        Epilogue::GeluAux { bias, aux, ld } => {
            let aux_ptr = aux as *const c_void;
            set_desc(desc, A::CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_POINTER, &aux_ptr)?;
            set_desc(desc, A::CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_LD, &ld)?;
            match bias {
                Some(bias) => (E::CUBLASLT_EPILOGUE_GELU_AUX_BIAS, Some(bias)),
                None => (E::CUBLASLT_EPILOGUE_GELU_AUX, None),
            }
        }
        Epilogue::BgradB { dbias } => (E::CUBLASLT_EPILOGUE_BGRADB, Some(dbias)),
    };
    set_desc(desc, A::CUBLASLT_MATMUL_DESC_EPILOGUE, &epilogue)?;
    if let Some(bias) = bias {
        // the bias (or bias gradient) in D's type: the bf16 bias of the weight copy, the fp32
        // parameter gradient
        let bias_ptr = bias as *const c_void;
        set_desc(desc, A::CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias_ptr)?;
        set_desc(desc, A::CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, &g.d_type)?;
    }
    Ok(desc)
}

/// What the algorithm may assume (kept in `d`, which destroys it): the workspace we have, the
/// alignments we have.
///
/// # Safety
/// The values have the types cuBLASLt documents (size_t for the workspace, uint32 for alignments).
unsafe fn preference(g: &Gemm, d: &mut Descriptors) -> Result<sys::cublasLtMatmulPreference_t> {
    let pref = lt::create_matmul_pref().map_err(|e| anyhow!("cannot create a cuBLASLt preference: {e}"))?;
    d.pref = Some(pref);
    use sys::cublasLtMatmulPreferenceAttributes_t as P;
    set_pref(pref, P::CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &CUBLASLT_WORKSPACE_BYTES)?;
    set_pref(pref, P::CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &alignment(g.a))?;
    set_pref(pref, P::CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &alignment(g.b))?;
    set_pref(pref, P::CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &alignment(g.d))?;
    set_pref(pref, P::CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &alignment(g.d))?;
    Ok(pref)
}

/// `ptr`, if it is 16-byte aligned (what cuBLASLt's epilogues read and write vectors at; llm.c asks
/// the same of every cuBLASLt pointer); otherwise an error naming `what`.
fn aligned_16(ptr: u64, what: &str) -> Result<u64> {
    if !ptr.is_multiple_of(16) {
        bail!(
            "cuBLASLt's epilogues need {what} at a 16-byte aligned address, but it is at {ptr:#x} \
             (in GPT-2 every tensor is aligned so when the channels C are a multiple of 8)"
        );
    }
    Ok(ptr)
}
