//! Fast matmul: the same `matmul_forward` / `matmul_backward` as `src/cpu/matmul.rs` (same signatures,
//! same semantics, backward accumulates), computed by one cache-blocked GEMM. Tested against the
//! readable twin in `tests.rs`; benchmarked beside it in `benches/matmul.rs`. This file is the driver
//! (the public functions, the tiling and the threads); `pack.rs` packs the operands and `kernels.rs`
//! holds the micro-kernels.
//!
//! # One GEMM for all three products
//!
//! Everything is `C (m,n) = [C +] A (m,k) · B (k,n) [+ bias (n)]`, with C row-major and A, B read
//! through strides (`A(i,p) = a[i*rs + p*cs]`), so a transpose is just swapped strides:
//!
//! | product                     | m  | n  | k  | A                 | B                   |
//! |-----------------------------|----|----|----|-------------------|---------------------|
//! | out = inp · Wᵀ + bias       | BT | OC | C  | inp (rs=C, cs=1)  | Wᵀ (rs=1, cs=C)     |
//! | dinp += dout · W            | BT | C  | OC | dout (rs=OC,cs=1) | W (rs=C, cs=1)      |
//! | dweight += doutᵀ · inp      | OC | C  | BT | doutᵀ (rs=1,cs=OC)| inp (rs=C, cs=1)    |
//!
//! # The blocking scheme (GotoBLAS / BLIS)
//!
//! A naive triple loop reads each element of A and B from memory once per multiply-add. The fast
//! way reads each from *registers* many times, and arranges that what does not fit in registers is
//! in the nearest cache that holds it. The loop nest, outermost first:
//!
//! ```text
//! for each tile of C, mc × nc (≤ MC × NC)          -- the parallel loop: one rayon task per tile
//!   for p0 in 0..k step KC                         -- a slab of the shared dimension
//!     pack A[tile rows, p0..p0+KC] -> Ap            (MC × KC, micro-panels of MR rows: lives in L2/L3)
//!     pack B[p0..p0+KC, tile cols] -> Bp            (KC × NC, micro-panels of NR cols: lives in L2)
//!     for ir in 0..mc step MR                       -- one A micro-panel (MR × KC) sits in L1
//!       for jr in 0..nc step NR                     -- B micro-panels stream in from L2
//!         micro-kernel: C[ir.., jr..] (MR × NR) += Ap(ir) · Bp(jr)   -- the tile lives in registers
//! ```
//!
//! *Packing* copies a block of A (or B) into a contiguous buffer in exactly the order the
//! micro-kernel reads it: for each p, the MR values of an A column, then the NR values of a B row.
//! The kernel then walks both buffers sequentially, whatever the original strides (so the transposes
//! cost nothing in the kernel), and ragged edges are zero-padded so the kernel always does a full
//! MR × NR tile. The packing costs O(mk + kn) against the kernel's O(mnk), but it is not free: where
//! the source is contiguous along k (inp and dout as A, W as B in the forward pass) packing is a
//! transpose, done 8 × 8 at a time in AVX registers; where it is contiguous along the panel it is a
//! fixed-width copy. (Done element by element, packing was a fifth of the time.)
//!
//! The *micro-kernel* keeps an MR × NR tile of C in vector registers. For each p it loads NR values
//! of B (NR/16 AVX-512 vectors), broadcasts each of the MR values of A, and does MR·NR/16 fused
//! multiply-adds: (MR + NR/16) loads for MR·NR/16 FMAs. The accumulators must all fit in registers
//! (32 zmm with AVX-512, 16 ymm with AVX2) along with the B vectors. Before its k loop the kernel
//! prefetches its tile of C, which it reads (to accumulate) only at the end: C is touched once per
//! slab, so it is usually not in cache, and the prefetch hides that wait behind the FMAs.
//!
//! # Sizes, for this CPU (AMD EPYC Zen 4: 32 KiB L1d, 1 MiB L2 per core, 32 MiB L3)
//!
//! - AVX-512: MR × NR = 8 × 48: 24 zmm accumulators + 3 for B + 1 broadcast ≤ 32 registers; 8 and 48
//!   divide every GPT-2 size (BT = 256, C = 768, 3C, 4C, Vp = 50304) so there are no ragged tiles.
//!   Zen 4 does 512-bit FMAs as two 256-bit halves, so the peak is the same as AVX2's; the gain is
//!   the larger tile (fewer loads per FMA).
//! - AVX2 + FMA: 6 × 16: 12 ymm accumulators + 2 for B + 1 broadcast ≤ 16 registers.
//! - Portable: 4 × 8 in plain Rust arrays that LLVM turns into SSE/NEON vectors.
//! - KC = 256: the A micro-panel (MR × KC × 4 B = 8 KiB) stays in the 32 KiB L1 next to the B
//!   micro-panel streaming through it (48 KiB, read once per A micro-panel).
//! - NC = 384 (rounded to NR): the packed B block KC × NC × 4 B = 384 KiB stays in the 1 MiB L2 and is
//!   reread for every A micro-panel.
//! - MC = 256: the packed A block (256 KiB) is reread once per tile from L2/L3.
//!
//! (KC = 384 and KC = 512 with NC = 192 were tried and were no faster at GPT-2's shapes.)
//! Measured on the 2-core development machine (AMD EPYC, Zen 4), one core runs every product at every
//! d12 shape at 95–110 GFLOP/s, on par with OpenBLAS through numpy; compare in one run with
//! `python3 reference/numpy_sgemm.py --rust target/release/examples/matmul_gflops --rounds 3`.
//!
//! # Threads
//!
//! Tiles of C are independent, so rayon runs one task per tile (each task does all of k for its
//! tile: no reduction, no synchronisation). Tiles are split so that their count is a multiple of the
//! thread count when there are few of them (24 NR-columns at most 8 to a tile would make 3 tiles;
//! on 2 threads they become 4 tiles of 6, so neither thread waits for the other at the end).
//!
//! # Memory
//!
//! No heap allocation in steady state: each thread packs into thread-local buffers (one for A, one
//! for B) that are grown on first use to the largest block it needs and then reused by every later
//! call on that thread (rayon's worker threads live as long as the pool, so a training step
//! allocates nothing).
//!
//! # The bf16 GEMM
//!
//! `bf16.rs` runs the same driver (`Problem::run`) with B packed as bf16 words instead of fp32
//! (`PackedB`), and its own micro-kernels.

pub mod bf16;
mod kernels;
mod pack;
#[cfg(test)]
mod tests;

#[cfg(target_arch = "x86_64")]
use kernels::x86;
use kernels::{kernel_portable, Kernel};
use pack::{pack_a, pack_b};
use rayon::prelude::*;
use std::cell::RefCell;

/// out (BT, OC) = inp (BT, C) @ weight (OC, C)^T + bias (OC). Same as `cpu::matmul::matmul_forward`.
pub fn matmul_forward(
    out: &mut [f32],
    inp: &[f32],
    weight: &[f32],
    bias: Option<&[f32]>,
    bt: usize,
    c: usize,
    oc: usize,
) {
    matmul_forward_with(Isa::best(), out, inp, weight, bias, bt, c, oc);
}

/// Backward of `matmul_forward`, accumulating (+=) into dinp (BT, C), dweight (OC, C) and dbias (OC).
/// Same as `cpu::matmul::matmul_backward`.
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
    matmul_backward_with(Isa::best(), dinp, dweight, dbias, dout, inp, weight, bt, c, oc);
}

/// `matmul_forward` with a chosen micro-kernel (tests use it to check every code path).
#[allow(clippy::too_many_arguments)]
pub fn matmul_forward_with(
    isa: Isa,
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
    // out (BT, OC) = inp (BT, C) · weight^T (C, OC) + bias
    let a = Strided { data: inp, rs: c, cs: 1 };
    let b = Strided { data: weight, rs: 1, cs: c };
    gemm(isa, bt, oc, c, a, b, out, oc, bias, false);
}

/// `matmul_backward` with a chosen micro-kernel (tests use it to check every code path).
#[allow(clippy::too_many_arguments)]
pub fn matmul_backward_with(
    isa: Isa,
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
    // The three gradients are independent: run them side by side (rayon::join), so that the tiles
    // of all of them share the threads and none waits for a slow tile of another.
    let dinp_product = || {
        // dinp (BT, C) += dout (BT, OC) · weight (OC, C)
        let a = Strided { data: dout, rs: oc, cs: 1 };
        let b = Strided { data: weight, rs: c, cs: 1 };
        gemm(isa, bt, c, oc, a, b, dinp, c, None, true);
    };
    let dweight_product = || {
        // dweight (OC, C) += dout^T (OC, BT) · inp (BT, C)
        let a = Strided { data: dout, rs: 1, cs: oc };
        let b = Strided { data: inp, rs: c, cs: 1 };
        gemm(isa, oc, c, bt, a, b, dweight, c, None, true);
    };
    let dbias_sum = || {
        if let Some(dbias) = dbias {
            add_column_sums(dbias, dout, oc);
        }
    };
    rayon::join(dinp_product, || rayon::join(dweight_product, dbias_sum));
}

/// dbias (OC) += the sum of dout (rows, OC) over its rows: the bias gradient of both GEMMs (fp32
/// and bf16). Parallel over column chunks, rows streamed in order.
pub(super) fn add_column_sums(dbias: &mut [f32], dout: &[f32], oc: usize) {
    const COLS: usize = 256;
    dbias.par_chunks_mut(COLS).enumerate().for_each(|(chunk, db)| {
        let cols = chunk * COLS..chunk * COLS + db.len();
        for row in dout.chunks_exact(oc) {
            for (d, x) in db.iter_mut().zip(&row[cols.clone()]) {
                *d += x;
            }
        }
    });
}

/// Which micro-kernel a GEMM runs. `Isa::best()` picks the fastest this CPU supports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Isa {
    /// Plain Rust, vectorized by LLVM for whatever the target baseline is (SSE2, NEON, ...).
    Portable,
    /// x86-64 AVX2 + FMA, 256-bit vectors.
    Avx2,
    /// x86-64 AVX-512F, 512-bit vectors.
    Avx512,
}

impl Isa {
    /// The fastest micro-kernel this CPU runs (detected at run time; the detection is cached by std).
    pub fn best() -> Isa {
        [Isa::Avx512, Isa::Avx2].into_iter().find(|isa| isa.is_available()).unwrap_or(Isa::Portable)
    }

    /// Whether this CPU can run this micro-kernel.
    pub fn is_available(self) -> bool {
        match self {
            Isa::Portable => true,
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma"),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => is_x86_feature_detected!("avx512f"),
            #[cfg(not(target_arch = "x86_64"))]
            _ => false,
        }
    }

    /// Every micro-kernel this CPU can run.
    pub fn available() -> Vec<Isa> {
        [Isa::Portable, Isa::Avx2, Isa::Avx512].into_iter().filter(|isa| isa.is_available()).collect()
    }
}

/// A read-only matrix seen through strides: element (i, j) is `data[i * rs + j * cs]`.
#[derive(Clone, Copy, Debug)]
pub struct Strided<'a> {
    pub data: &'a [f32],
    /// step between rows
    pub rs: usize,
    /// step between columns
    pub cs: usize,
}

/// The general matrix multiply behind both passes:
/// `C (m,n) = [C if accumulate] + A (m,k) · B (k,n) [+ bias (n), broadcast over rows]`,
/// with C row-major (`c[i * ldc + j]`) and A, B strided. Runs on the current rayon pool.
#[allow(clippy::too_many_arguments)]
pub fn gemm(
    isa: Isa,
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
    if !check_operands(m, n, k, a, b, c, ldc, bias, accumulate) {
        return;
    }
    let simd = isa != Isa::Portable;
    let problem = Problem { m, n, k, a, b, c: SendPtr(c.as_mut_ptr()), ldc, bias, accumulate, simd };
    match isa {
        Isa::Portable => problem.run::<4, 8, f32>(kernel_portable::<4, 8>),
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => problem.run::<6, 16, f32>(x86::kernel_avx2::<6, 2>),
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => problem.run::<8, 48, f32>(x86::kernel_avx512::<8, 3>),
        #[cfg(not(target_arch = "x86_64"))]
        _ => unreachable!("checked by is_available"),
    }
}

/// What both GEMMs (fp32 and bf16) do before multiplying. Bounds: every index the packing and the
/// kernels touch is checked here, once (with checked arithmetic: the kernels write C through raw
/// pointers, so a wrapped size must not pass). The cases with nothing to multiply are done here:
/// an empty C, and k = 0 (C = [C] + bias). Returns whether the multiply still has to run.
#[allow(clippy::too_many_arguments)]
pub(super) fn check_operands(
    m: usize,
    n: usize,
    k: usize,
    a: Strided,
    b: Strided,
    c: &mut [f32],
    ldc: usize,
    bias: Option<&[f32]>,
    accumulate: bool,
) -> bool {
    if m == 0 || n == 0 {
        return false;
    }
    let c_needed = (m - 1).checked_mul(ldc).and_then(|x| x.checked_add(n));
    assert!(ldc >= n && c_needed.is_some_and(|needed| c.len() >= needed), "C too small");
    if let Some(bias) = bias {
        assert!(bias.len() >= n, "bias too short");
    }
    if k == 0 {
        for row in c.chunks_mut(ldc).take(m) {
            for (j, x) in row[..n].iter_mut().enumerate() {
                let bj = bias.map_or(0.0, |b| b[j]);
                *x = if accumulate { *x + bj } else { bj };
            }
        }
        return false;
    }
    assert!(a.data.len() > (m - 1) * a.rs + (k - 1) * a.cs, "A too small");
    assert!(b.data.len() > (k - 1) * b.rs + (n - 1) * b.cs, "B too small");
    true
}

/// Depth of a packed slab (the shared dimension). See the top of the file for why.
const KC: usize = 256;
/// Most rows of C in one tile (rounded down to MR).
const MC: usize = 256;
/// Most columns of C in one tile (rounded down to NR).
const NC: usize = 384;

/// A raw pointer to C that tasks on other threads may write through (each to its own tile).
#[derive(Clone, Copy)]
pub(super) struct SendPtr(pub(super) *mut f32);
// SAFETY: the pointer is only written through in disjoint tiles (one task per tile), and the `&mut`
// borrow of C that it came from outlives the parallel loop in `Problem::run`.
unsafe impl Send for SendPtr {}
unsafe impl Sync for SendPtr {}

/// One GEMM call: the operands, checked for bounds by `check_operands`.
pub(super) struct Problem<'a> {
    pub(super) m: usize,
    pub(super) n: usize,
    pub(super) k: usize,
    pub(super) a: Strided<'a>,
    pub(super) b: Strided<'a>,
    pub(super) c: SendPtr,
    pub(super) ldc: usize,
    pub(super) bias: Option<&'a [f32]>,
    pub(super) accumulate: bool,
    /// pack with AVX (8 × 8 transposes in registers): for the AVX2 and AVX-512 paths
    pub(super) simd: bool,
}

/// What the packed B panel holds: `f32` for the fp32 GEMM, `u16` (bf16 bits, `bf16.rs`) for the
/// bf16 one. A is packed as fp32 in both. The driver below is the same for both.
pub(super) trait PackedB: Copy + Default + 'static {
    /// Pack B[p0..p0+kc, j0..j0+nc] into `dst`, micro-panels of NR columns, kc·NR values each.
    fn pack<const NR: usize>(dst: &mut [Self], b: Strided, p0: usize, kc: usize, j0: usize, nc: usize, simd: bool);
    /// Runs `f` on this thread's packing buffer for B.
    fn with_buffer<R>(f: impl FnOnce(&mut Vec<Self>) -> R) -> R;
}

thread_local! {
    /// Per-thread packing buffers, grown once to the largest size needed and reused afterwards:
    /// A (fp32 in both GEMMs), B for the fp32 GEMM, B for the bf16 GEMM.
    static PACK_A: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
    static PACK_B: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
    pub(super) static PACK_B_BF16: RefCell<Vec<u16>> = const { RefCell::new(Vec::new()) };
}

impl PackedB for f32 {
    fn pack<const NR: usize>(dst: &mut [f32], b: Strided, p0: usize, kc: usize, j0: usize, nc: usize, simd: bool) {
        pack_b::<NR>(dst, b, p0, kc, j0, nc, simd);
    }
    fn with_buffer<R>(f: impl FnOnce(&mut Vec<f32>) -> R) -> R {
        PACK_B.with(|buf| f(&mut buf.borrow_mut()))
    }
}

/// `len` elements of `buf` starting on a 64-byte (cache-line) boundary, growing `buf` if needed.
fn aligned<E: Copy + Default>(buf: &mut Vec<E>, len: usize) -> &mut [E] {
    let pad = 64 / std::mem::size_of::<E>();
    if buf.len() < len + pad {
        // first use on this thread (or a bigger tile than before): grow once
        buf.resize(len + pad, E::default());
    }
    let skip = buf.as_ptr().align_offset(64).min(pad);
    &mut buf[skip..skip + len]
}

impl Problem<'_> {
    /// Split C into tiles and run them in parallel, each with the MR × NR micro-kernel `kernel`.
    pub(super) fn run<const MR: usize, const NR: usize, E: PackedB>(&self, kernel: Kernel<E>) {
        let (m_units, n_units) = (self.m.div_ceil(MR), self.n.div_ceil(NR));
        let mut tm = m_units.div_ceil(MC / MR);
        let mut tn = n_units.div_ceil(NC / NR);
        // With few tiles, make their count a multiple of the thread count so no thread idles at the end.
        let threads = rayon::current_num_threads();
        while (tm * tn) % threads != 0 && tm * tn < 8 * threads {
            if tn < n_units && (n_units / tn >= m_units / tm || tm == m_units) {
                tn += 1;
            } else if tm < m_units {
                tm += 1;
            } else {
                break;
            }
        }
        // tile t covers units [t * units / tiles, (t + 1) * units / tiles): sizes differ by at most one unit
        let span = |t: usize, units: usize, tiles: usize, unit: usize, len: usize| {
            ((t * units / tiles) * unit, ((t + 1) * units / tiles * unit).min(len))
        };
        (0..tm * tn).into_par_iter().for_each(|t| {
            let (i0, i1) = span(t / tn, m_units, tm, MR, self.m);
            let (j0, j1) = span(t % tn, n_units, tn, NR, self.n);
            self.tile::<MR, NR, E>(kernel, i0, i1, j0, j1);
        });
    }

    /// C[i0..i1, j0..j1]: all of k, slab by slab, through this thread's packing buffers.
    fn tile<const MR: usize, const NR: usize, E: PackedB>(
        &self,
        kernel: Kernel<E>,
        i0: usize,
        i1: usize,
        j0: usize,
        j1: usize,
    ) {
        let (mc, nc) = (i1 - i0, j1 - j0);
        let a_len = mc.div_ceil(MR) * MR * KC;
        let b_len = nc.div_ceil(NR) * NR * KC;
        PACK_A.with(|abuf| {
            E::with_buffer(|bbuf| {
                let mut abuf = abuf.borrow_mut();
                let (ap, bp) = (aligned(&mut abuf, a_len), aligned(bbuf, b_len));
                for p0 in (0..self.k).step_by(KC) {
                    let kc = KC.min(self.k - p0);
                    pack_a::<MR>(&mut ap[..mc.div_ceil(MR) * MR * kc], self.a, i0, mc, p0, kc, self.simd);
                    E::pack::<NR>(&mut bp[..nc.div_ceil(NR) * NR * kc], self.b, p0, kc, j0, nc, self.simd);
                    self.slab::<MR, NR, E>(kernel, &ap[..], &bp[..], kc, p0 == 0, i0, mc, j0, nc);
                }
            })
        });
    }

    /// One packed slab of depth `kc` through the micro-kernel, tile by tile of C.
    #[allow(clippy::too_many_arguments)]
    fn slab<const MR: usize, const NR: usize, E: PackedB>(
        &self,
        kernel: Kernel<E>,
        ap: &[f32],
        bp: &[E],
        kc: usize,
        first: bool,
        i0: usize,
        mc: usize,
        j0: usize,
        nc: usize,
    ) {
        // the first slab writes C (and adds the bias) unless accumulating; later ones add to it
        let acc = self.accumulate || !first;
        for (ir, a_panel) in (0..mc).step_by(MR).zip(ap.chunks_exact(MR * kc)) {
            for (jr, b_panel) in (0..nc).step_by(NR).zip(bp.chunks_exact(NR * kc)) {
                let (mr, nr) = (MR.min(mc - ir), NR.min(nc - jr));
                let bias = if first { self.bias.map(|b| &b[j0 + jr..j0 + jr + nr]) } else { None };
                let (i, j) = (i0 + ir, j0 + jr);
                if mr == MR && nr == NR {
                    let bias_ptr = bias.map_or(std::ptr::null(), |b| b.as_ptr());
                    // SAFETY: the panels hold kc·MR floats and kc·NR values of E (chunks_exact); the
                    // MR × NR tile at (i, j) is inside C (i + MR <= m, j + NR <= n, bounds checked
                    // in `check_operands`) and belongs to this task alone; the bias slice holds NR floats.
                    unsafe {
                        let c = self.c.0.add(i * self.ldc + j);
                        kernel(kc, a_panel.as_ptr(), b_panel.as_ptr(), c, self.ldc, bias_ptr, acc);
                    }
                } else {
                    // ragged edge: full tile into a scratch array, then copy the part inside C
                    let mut scratch = [[0.0f32; NR]; MR];
                    // SAFETY: as above for the panels; the scratch array is MR rows of NR floats.
                    unsafe {
                        let s = scratch.as_mut_ptr() as *mut f32;
                        kernel(kc, a_panel.as_ptr(), b_panel.as_ptr(), s, NR, std::ptr::null(), false);
                    }
                    for (r, srow) in scratch.iter().enumerate().take(mr) {
                        for (jj, &v) in srow.iter().enumerate().take(nr) {
                            let v = v + bias.map_or(0.0, |b| b[jj]);
                            // SAFETY: (i + r, j + jj) is inside C (r < mr, jj < nr) and in this task's tile.
                            unsafe {
                                let cp = self.c.0.add((i + r) * self.ldc + j + jj);
                                *cp = if acc { *cp + v } else { v };
                            }
                        }
                    }
                }
            }
        }
    }
}
