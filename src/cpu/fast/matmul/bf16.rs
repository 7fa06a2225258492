//! The fast matmul in bf16 mixed precision (`src/precision.rs`): bf16 operands, fp32 accumulation,
//! the output rounded once to bf16. Same signatures as `matmul_forward` / `matmul_backward` one
//! directory up; the readable twin is `src/cpu/bf16.rs`'s `matmul_forward` (the readable matmul,
//! then rounded), and `tests` below checks the two agree.
//!
//! # What changes from the fp32 GEMM
//!
//! The blocking scheme is the one described in `mod.rs` (tiles of C in parallel, KC-deep slabs,
//! packed panels, a register-tiled micro-kernel), run by the same driver (`Problem::run`, with
//! `PackedB` below for the B panel). What differs is the packed B panel, the operand
//! that streams from L2 through the micro-kernel for every A micro-panel: it is packed as 16-bit
//! bf16 words, half the bytes of fp32, so twice as much of it fits in each cache and each load brings
//! twice as many values. The A panel (MR values broadcast per step, resident in L1) is packed as
//! fp32: widening it once at packing time costs less than widening every broadcast.
//!
//! Widening bf16 to fp32 is free of rounding: a bf16 number is the top half of an fp32 number, so
//! shifting its 16 bits left by 16 gives the fp32 value exactly. The packed B layout makes that one
//! instruction per 8 values: for a micro-panel of 16 columns, step p holds 8 32-bit words, word w
//! being column w in its low half and column w + 8 in its high half:
//!
//! ```text
//!   u16 index:   0     1     2     3   ...  14    15
//!   column:      0     8     1     9   ...   7    15
//!   one 256-bit load = 8 words;  word << 16 -> columns 0..8 as fp32;  word & 0xFFFF0000 -> columns 8..16
//! ```
//!
//! So per step the AVX2 kernel does one load, one shift and one AND for its two B vectors (where the
//! fp32 kernel does two loads), then the same 12 FMAs into 6 × 16 fp32 accumulators.
//!
//! # Kernels
//!
//! - AVX2 + FMA (this development machine): the shift-and-FMA kernel above.
//! - Portable: the same packed layout decoded in plain Rust.
//! - AVX-512 BF16 (`vdpbf16ps`, which multiplies pairs of bf16 and adds both products to an fp32
//!   lane) is not written yet: no machine this project's tests run on has it, and a kernel whose test
//!   never runs is not a kernel we can claim works.
//!
//! The inputs must be bf16 numbers (low 16 bits zero), as every activation, activation gradient and
//! weight copy is in bf16 mode; packing rounds them to bf16 (`to_bf16_bits`), which leaves such
//! numbers unchanged.

use super::kernels::Kernel;
use super::{add_column_sums, check_operands, PackedB, Problem, SendPtr, Strided, PACK_B_BF16};
use crate::precision::{round_slice_bf16, to_bf16_bits};

/// out (BT, OC) = inp (BT, C) @ weight (OC, C)^T + bias (OC), bf16 inputs, fp32 sums, out rounded to bf16.
pub fn matmul_forward(
    out: &mut [f32],
    inp: &[f32],
    weight: &[f32],
    bias: Option<&[f32]>,
    bt: usize,
    c: usize,
    oc: usize,
) {
    assert_eq!(out.len(), bt * oc);
    assert_eq!(inp.len(), bt * c);
    assert_eq!(weight.len(), oc * c);
    if let Some(bias) = bias {
        assert_eq!(bias.len(), oc);
    }
    let a = Strided { data: inp, rs: c, cs: 1 };
    let b = Strided { data: weight, rs: 1, cs: c };
    gemm_bf16(Bf16Isa::best(), bt, oc, c, a, b, out, oc, bias, false);
    round_slice_bf16(out);
}

/// Backward of `matmul_forward`: dinp (BT, C) += dout · weight, rounded to bf16 (an activation
/// gradient); dweight (OC, C) += doutᵀ · inp and dbias (OC) += column sums of dout, in fp32
/// (parameter gradients).
pub fn matmul_backward(
    dinp: &mut [f32],
    dweight: &mut [f32],
    dbias: Option<&mut [f32]>,
    dout: &[f32],
    inp: &[f32],
    weight: &[f32],
    bt: usize,
    c: usize,
    oc: usize,
) {
    assert_eq!(dinp.len(), bt * c);
    assert_eq!(dweight.len(), oc * c);
    assert_eq!(dout.len(), bt * oc);
    assert_eq!(inp.len(), bt * c);
    assert_eq!(weight.len(), oc * c);
    if let Some(dbias) = &dbias {
        assert_eq!(dbias.len(), oc);
    }
    let isa = Bf16Isa::best();
    let dinp_product = || {
        let a = Strided { data: dout, rs: oc, cs: 1 };
        let b = Strided { data: weight, rs: c, cs: 1 };
        gemm_bf16(isa, bt, c, oc, a, b, dinp, c, None, true);
        round_slice_bf16(dinp);
    };
    let dweight_product = || {
        let a = Strided { data: dout, rs: 1, cs: oc };
        let b = Strided { data: inp, rs: c, cs: 1 };
        gemm_bf16(isa, oc, c, bt, a, b, dweight, c, None, true);
    };
    let dbias_sum = || {
        if let Some(dbias) = dbias {
            add_column_sums(dbias, dout, oc);
        }
    };
    rayon::join(dinp_product, || rayon::join(dweight_product, dbias_sum));
}

/// Which bf16 micro-kernel runs. `Bf16Isa::best()` picks the fastest this CPU supports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bf16Isa {
    /// Plain Rust.
    Portable,
    /// x86-64 AVX2 + FMA: bf16 widened by a 16-bit shift, fp32 FMAs.
    Avx2,
}

impl Bf16Isa {
    /// The fastest bf16 micro-kernel this CPU runs (detected at run time).
    pub fn best() -> Bf16Isa {
        if Bf16Isa::Avx2.is_available() {
            Bf16Isa::Avx2
        } else {
            Bf16Isa::Portable
        }
    }

    /// Whether this CPU can run this micro-kernel.
    pub fn is_available(self) -> bool {
        match self {
            Bf16Isa::Portable => true,
            #[cfg(target_arch = "x86_64")]
            Bf16Isa::Avx2 => is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma"),
            #[cfg(not(target_arch = "x86_64"))]
            Bf16Isa::Avx2 => false,
        }
    }

    /// Every bf16 micro-kernel this CPU can run.
    pub fn available() -> Vec<Bf16Isa> {
        [Bf16Isa::Portable, Bf16Isa::Avx2].into_iter().filter(|isa| isa.is_available()).collect()
    }
}

/// Rows of the register tile.
const MR: usize = 6;
/// Columns of the register tile: two 8-float vectors, one 16-word bf16 load.
const NR: usize = 16;

/// `C (m,n) = [C if accumulate] + A (m,k) · B (k,n) [+ bias (n)]` with A and B read as bf16 and
/// summed in fp32. C is not rounded here (the callers round the activation outputs).
#[allow(clippy::too_many_arguments)]
pub fn gemm_bf16(
    isa: Bf16Isa,
    m: usize,
    n: usize,
    k: usize,
    a: Strided,
    b: Strided,
    c: &mut [f32],
    ldc: usize,
    bias: Option<&[f32]>,
    accumulate: bool,
) {
    assert!(isa.is_available(), "{isa:?} is not supported by this CPU");
    // the same bounds checks and trivial cases as the fp32 GEMM
    if !check_operands(m, n, k, a, b, c, ldc, bias, accumulate) {
        return;
    }
    let kernel: Bf16Kernel = match isa {
        Bf16Isa::Portable => kernel_bf16_portable,
        #[cfg(target_arch = "x86_64")]
        Bf16Isa::Avx2 => x86::kernel_bf16_avx2,
        #[cfg(not(target_arch = "x86_64"))]
        Bf16Isa::Avx2 => unreachable!("checked by is_available"),
    };
    let problem =
        Problem { m, n, k, a, b, c: SendPtr(c.as_mut_ptr()), ldc, bias, accumulate, simd: isa != Bf16Isa::Portable };
    problem.run::<MR, NR, u16>(kernel);
}

/// A bf16 micro-kernel: the MR × NR tile `acc = Ap · Bp` over `kc` steps from packed panels
/// (`a`: kc × MR fp32, `b`: kc × NR bf16 in the paired layout of the module doc), then
/// `c[r * ldc + j] = [c +] acc + [bias[j]]`; `bias` null for none.
///
/// Safety: `a`, `b` readable for kc·MR floats and kc·NR u16; `c` MR rows of NR floats `ldc` apart;
/// `bias` null or NR floats.
type Bf16Kernel = Kernel<u16>;

/// Column `jj` (0..16) of a packed step sits at this u16 index (the paired layout).
#[inline(always)]
fn slot(jj: usize) -> usize {
    (jj % 8) * 2 + jj / 8
}

/// The portable bf16 micro-kernel: decode each packed word, multiply-add in fp32.
///
/// Safety: see `Bf16Kernel`.
unsafe fn kernel_bf16_portable(
    kc: usize,
    a: *const f32,
    b: *const u16,
    c: *mut f32,
    ldc: usize,
    bias: *const f32,
    accumulate: bool,
) {
    // SAFETY: the caller guarantees a holds kc·MR floats and b kc·NR u16.
    let (a, b) = unsafe { (std::slice::from_raw_parts(a, kc * MR), std::slice::from_raw_parts(b, kc * NR)) };
    let mut acc = [[0.0f32; NR]; MR];
    for (ap, bp) in a.chunks_exact(MR).zip(b.chunks_exact(NR)) {
        // widen this step's 16 bf16 values to fp32 (exact), in column order
        let bv: [f32; NR] = std::array::from_fn(|jj| crate::precision::from_bf16_bits(bp[slot(jj)]));
        for (acc_row, &ar) in acc.iter_mut().zip(ap) {
            for (x, &bvj) in acc_row.iter_mut().zip(&bv) {
                *x += ar * bvj;
            }
        }
    }
    for (r, acc_row) in acc.iter().enumerate() {
        for (jj, &v) in acc_row.iter().enumerate() {
            // SAFETY: the caller guarantees the MR × NR tile of C and NR bias values are valid.
            unsafe {
                let v = if bias.is_null() { v } else { v + *bias.add(jj) };
                let cp = c.add(r * ldc + jj);
                *cp = if accumulate { *cp + v } else { v };
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{MR, NR};
    use std::arch::x86_64::*;

    /// AVX2 + FMA bf16 micro-kernel, 6 × 16: per step one 256-bit load of 16 bf16, widened to two
    /// fp32 vectors by a shift (columns 0..8) and a mask (columns 8..16), then 12 FMAs.
    ///
    /// Safety: the CPU must support AVX2 and FMA; pointers as in `Bf16Kernel`.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn kernel_bf16_avx2(
        kc: usize,
        a: *const f32,
        b: *const u16,
        c: *mut f32,
        ldc: usize,
        bias: *const f32,
        accumulate: bool,
    ) {
        // SAFETY: the caller guarantees AVX2 + FMA, a and b hold kc·MR floats and kc·NR u16, c is
        // MR rows of NR floats (ldc apart), bias null or NR floats.
        unsafe {
            for r in 0..MR {
                _mm_prefetch::<_MM_HINT_T0>(c.add(r * ldc) as *const i8);
                _mm_prefetch::<_MM_HINT_T0>(c.add(r * ldc + NR - 1) as *const i8);
            }
            let high = _mm256_set1_epi32(0xFFFF_0000u32 as i32);
            let mut acc = [[_mm256_setzero_ps(); 2]; MR];
            let (mut a, mut b) = (a, b);
            for _ in 0..kc {
                let words = _mm256_loadu_si256(b as *const __m256i);
                // low halves moved up: columns 0..8; high halves kept: columns 8..16
                let b0 = _mm256_castsi256_ps(_mm256_slli_epi32::<16>(words));
                let b1 = _mm256_castsi256_ps(_mm256_and_si256(words, high));
                for (r, acc_row) in acc.iter_mut().enumerate() {
                    let ar = _mm256_broadcast_ss(&*a.add(r));
                    acc_row[0] = _mm256_fmadd_ps(ar, b0, acc_row[0]);
                    acc_row[1] = _mm256_fmadd_ps(ar, b1, acc_row[1]);
                }
                a = a.add(MR);
                b = b.add(NR);
            }
            for (r, acc_row) in acc.iter().enumerate() {
                for (v, &x) in acc_row.iter().enumerate() {
                    let mut x = x;
                    if !bias.is_null() {
                        x = _mm256_add_ps(x, _mm256_loadu_ps(bias.add(8 * v)));
                    }
                    let cp = c.add(r * ldc + 8 * v);
                    if accumulate {
                        x = _mm256_add_ps(x, _mm256_loadu_ps(cp));
                    }
                    _mm256_storeu_ps(cp, x);
                }
            }
        }
    }
}

/// Pack B[p0..p0+kc, j0..j0+nc] as bf16 micro-panels of NR columns in the paired layout; columns
/// past the edge are zero.
fn pack_b_bf16(dst: &mut [u16], b: Strided, p0: usize, kc: usize, j0: usize, nc: usize) {
    for (q, panel) in dst.chunks_exact_mut(NR * kc).enumerate() {
        let c0 = j0 + q * NR;
        let cols = NR.min(j0 + nc - c0);
        if cols < NR {
            panel.fill(0);
        }
        if b.cs == 1 {
            // B's rows are contiguous: step p reads `cols` neighbours
            for (p, out) in panel.chunks_exact_mut(NR).enumerate() {
                let row = &b.data[(p0 + p) * b.rs + c0..][..cols];
                for (jj, &x) in row.iter().enumerate() {
                    out[slot(jj)] = to_bf16_bits(x);
                }
            }
        } else {
            // B = Wᵀ (forward): column jj is a row of W, contiguous in p
            for jj in 0..cols {
                let line = &b.data[(c0 + jj) * b.cs + p0 * b.rs..];
                let s = slot(jj);
                for (p, out) in panel.chunks_exact_mut(NR).enumerate() {
                    out[s] = to_bf16_bits(line[p * b.rs]);
                }
            }
        }
    }
}

/// The bf16 GEMM's packed B: the paired layout above, through the driver of `mod.rs`.
impl PackedB for u16 {
    // PANEL is the driver's NR; the paired layout exists for this file's NR only
    fn pack<const PANEL: usize>(dst: &mut [u16], b: Strided, p0: usize, kc: usize, j0: usize, nc: usize, _simd: bool) {
        assert_eq!(PANEL, NR, "the paired bf16 layout is {NR} columns wide");
        pack_b_bf16(dst, b, p0, kc, j0, nc);
    }
    fn with_buffer<R>(f: impl FnOnce(&mut Vec<u16>) -> R) -> R {
        PACK_B_BF16.with(|buf| f(&mut buf.borrow_mut()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::matmul as reference;
    use crate::precision::{is_bf16, round_bf16};
    use crate::rng::Rng;

    fn bf16_values(n: usize, seed: u64) -> Vec<f32> {
        let mut rng = Rng::new(seed);
        (0..n).map(|_| round_bf16(rng.normal())).collect()
    }

    /// Largest |x - y| / (1 + |y|).
    fn max_rel(x: &[f32], y: &[f32]) -> f32 {
        x.iter().zip(y).map(|(a, b)| (a - b).abs() / (1.0 + b.abs())).fold(0.0, f32::max)
    }

    // Sizes with ragged edges in every direction (m % 6, n % 16, k % 256 all nonzero) and a k of
    // more than one slab, plus an exact GPT-2-like tile.
    const SHAPES: [(usize, usize, usize); 4] = [(13, 37, 300), (6, 16, 256), (64, 48, 96), (7, 129, 33)];

    #[test]
    fn bf16_gemm_matches_the_reference_matmul_on_bf16_inputs() {
        // The products of bf16 numbers are exact in fp32 (8 + 8 significant bits < 24), so the only
        // difference from the readable matmul is the order of the fp32 sums: relative 1e-5 of
        // (1 + |out|) allows ~sqrt(k) ulp of error on sums of ~300 terms of size ~1.
        for isa in Bf16Isa::available() {
            for &(bt, c, oc) in &SHAPES {
                let inp = bf16_values(bt * c, 1);
                let weight = bf16_values(oc * c, 2);
                let bias = bf16_values(oc, 3);
                let mut expected = vec![0.0; bt * oc];
                reference::matmul_forward(&mut expected, &inp, &weight, Some(&bias), bt, c, oc);
                let mut out = vec![0.0; bt * oc];
                let a = Strided { data: &inp, rs: c, cs: 1 };
                let b = Strided { data: &weight, rs: 1, cs: c };
                gemm_bf16(isa, bt, oc, c, a, b, &mut out, oc, Some(&bias), false);
                let err = max_rel(&out, &expected);
                println!("{isa:?} forward {bt}x{c}x{oc}: max rel err {err:.2e}");
                assert!(err < 1e-5, "{isa:?} forward {bt}x{c}x{oc}: {err}");
            }
        }
    }

    #[test]
    fn bf16_matmul_backward_matches_the_reference_on_bf16_inputs() {
        for isa in Bf16Isa::available() {
            for &(bt, c, oc) in &SHAPES {
                let (dout, inp, weight) = (bf16_values(bt * oc, 4), bf16_values(bt * c, 5), bf16_values(oc * c, 6));
                // start from nonzero gradients: backward accumulates
                let (dinp0, dw0, db0) = (bf16_values(bt * c, 7), bf16_values(oc * c, 8), bf16_values(oc, 9));
                let (mut dinp_r, mut dw_r, mut db_r) = (dinp0.clone(), dw0.clone(), db0.clone());
                reference::matmul_backward(&mut dinp_r, &mut dw_r, Some(&mut db_r), &dout, &inp, &weight, bt, c, oc);
                let (mut dinp, mut dw) = (dinp0.clone(), dw0.clone());
                let a = Strided { data: &dout, rs: oc, cs: 1 };
                let b = Strided { data: &weight, rs: c, cs: 1 };
                gemm_bf16(isa, bt, c, oc, a, b, &mut dinp, c, None, true);
                let a = Strided { data: &dout, rs: 1, cs: oc };
                let b = Strided { data: &inp, rs: c, cs: 1 };
                gemm_bf16(isa, oc, c, bt, a, b, &mut dw, c, None, true);
                let (e1, e2) = (max_rel(&dinp, &dinp_r), max_rel(&dw, &dw_r));
                println!("{isa:?} backward {bt}x{c}x{oc}: dinp {e1:.2e}, dweight {e2:.2e}");
                assert!(e1 < 1e-5 && e2 < 1e-5, "{isa:?} backward {bt}x{c}x{oc}: {e1} {e2}");
            }
        }
    }

    #[test]
    fn bf16_matmul_rounds_activations_and_keeps_parameter_gradients_fp32() {
        // the public functions against the readable bf16 layer (src/cpu/bf16.rs): the outputs may
        // differ where the two fp32 sums fall on either side of a bf16 rounding boundary, by one
        // bf16 step (2^-8 relative); parameter gradients are fp32 and agree to summation order.
        let (bt, c, oc) = (13, 40, 37);
        let (inp, weight, bias, dout) =
            (bf16_values(bt * c, 1), bf16_values(oc * c, 2), bf16_values(oc, 3), bf16_values(bt * oc, 4));
        let mut out = vec![0.0; bt * oc];
        let mut out_r = vec![0.0; bt * oc];
        matmul_forward(&mut out, &inp, &weight, Some(&bias), bt, c, oc);
        crate::cpu::bf16::matmul_forward(&mut out_r, &inp, &weight, Some(&bias), bt, c, oc);
        assert!(is_bf16(&out));
        assert!(max_rel(&out, &out_r) <= 1.0 / 256.0);
        let (mut dinp, mut dw, mut db) = (vec![0.0; bt * c], vec![0.0; oc * c], vec![0.0; oc]);
        let (mut dinp_r, mut dw_r, mut db_r) = (vec![0.0; bt * c], vec![0.0; oc * c], vec![0.0; oc]);
        matmul_backward(&mut dinp, &mut dw, Some(&mut db), &dout, &inp, &weight, bt, c, oc);
        crate::cpu::bf16::matmul_backward(&mut dinp_r, &mut dw_r, Some(&mut db_r), &dout, &inp, &weight, bt, c, oc);
        assert!(is_bf16(&dinp));
        assert!(!is_bf16(&dw), "dweight is fp32: it should not have been rounded");
        assert!(max_rel(&dinp, &dinp_r) <= 1.0 / 256.0);
        assert!(max_rel(&dw, &dw_r) < 1e-5 && max_rel(&db, &db_r) < 1e-5);
    }

    #[test]
    fn packed_layout_puts_column_w_and_w_plus_8_in_one_word() {
        // one step (k = 1) of 16 columns 0, 1, ..., 15 (exact in bf16)
        let b: Vec<f32> = (0..16).map(|j| j as f32).collect();
        let mut dst = vec![0u16; 16];
        pack_b_bf16(&mut dst, Strided { data: &b, rs: 16, cs: 1 }, 0, 1, 0, 16);
        let cols: Vec<f32> = dst.iter().map(|&w| crate::precision::from_bf16_bits(w)).collect();
        assert_eq!(cols, [0., 8., 1., 9., 2., 10., 3., 11., 4., 12., 5., 13., 6., 14., 7., 15.]);
    }
}
