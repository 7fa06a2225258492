//! Packing: copying a block of A or B into the contiguous micro-panels the micro-kernels read (see
//! "The blocking scheme" in `mod.rs`). The 8 × 8 AVX transpose it uses lives with the other x86
//! intrinsics in `kernels.rs`.

#[cfg(target_arch = "x86_64")]
use super::kernels::x86;
use super::Strided;

/// Pack A[i0..i0+mc, p0..p0+kc] into micro-panels of MR rows: panel q holds, for each p, the MR values
/// A[i0 + q·MR + r, p0 + p] (r = 0..MR) contiguously; rows past the edge are zero.
pub(super) fn pack_a<const MR: usize>(
    dst: &mut [f32],
    a: Strided,
    i0: usize,
    mc: usize,
    p0: usize,
    kc: usize,
    simd: bool,
) {
    for (q, panel) in dst.chunks_exact_mut(MR * kc).enumerate() {
        let r0 = i0 + q * MR;
        let rows = MR.min(i0 + mc - r0);
        if a.rs == 1 {
            // A's columns are contiguous (A = doutᵀ): each p is a straight copy of `rows` floats
            for (p, out) in panel.chunks_exact_mut(MR).enumerate() {
                let start = r0 + (p0 + p) * a.cs;
                copy_padded::<MR>(out, &a.data[start..start + rows]);
            }
        } else {
            // A's rows are contiguous in p (A = inp or dout): a transpose of `rows` rows
            let src = &a.data[r0 * a.rs + p0 * a.cs..];
            transpose_into(panel, MR, src, a.rs, a.cs, rows, kc, simd);
        }
    }
}

/// Pack B[p0..p0+kc, j0..j0+nc] into micro-panels of NR columns: panel q holds, for each p, the NR
/// values B[p0 + p, j0 + q·NR + jj] (jj = 0..NR) contiguously; columns past the edge are zero.
pub(super) fn pack_b<const NR: usize>(
    dst: &mut [f32],
    b: Strided,
    p0: usize,
    kc: usize,
    j0: usize,
    nc: usize,
    simd: bool,
) {
    for (q, panel) in dst.chunks_exact_mut(NR * kc).enumerate() {
        let c0 = j0 + q * NR;
        let cols = NR.min(j0 + nc - c0);
        if b.cs == 1 {
            // B's rows are contiguous (W in dinp, inp in dweight): each p is a straight copy
            for (p, out) in panel.chunks_exact_mut(NR).enumerate() {
                let start = (p0 + p) * b.rs + c0;
                copy_padded::<NR>(out, &b.data[start..start + cols]);
            }
        } else {
            // B = Wᵀ (forward): B's columns are W's rows, contiguous in p: a transpose of `cols` rows
            let src = &b.data[c0 * b.cs + p0 * b.rs..];
            transpose_into(panel, NR, src, b.cs, b.rs, cols, kc, simd);
        }
    }
}

/// `dst[..src.len()] = src`, the rest zero. Full-width copies have a length known at compile time,
/// so they compile to a few vector moves instead of a call to memcpy.
#[inline(always)]
fn copy_padded<const W: usize>(dst: &mut [f32], src: &[f32]) {
    if let (Ok(d), Ok(s)) = (<&mut [f32; W]>::try_from(&mut *dst), <&[f32; W]>::try_from(src)) {
        *d = *s;
    } else {
        dst[..src.len()].copy_from_slice(src);
        dst[src.len()..].fill(0.0);
    }
}

/// The transposing half of packing: `lines` source lines, line l starting at `src[l * ls]` with
/// elements `step` apart (step 1 in practice), become the columns of `panel` (kc rows of `width`):
/// `panel[p * width + l] = src[l * ls + p * step]`; columns `lines..width` are zero.
/// With `simd` (AVX) and unit step, full 8 × 8 blocks go through registers.
#[allow(clippy::too_many_arguments)]
fn transpose_into(
    panel: &mut [f32],
    width: usize,
    src: &[f32],
    ls: usize,
    step: usize,
    lines: usize,
    kc: usize,
    simd: bool,
) {
    #[cfg_attr(not(target_arch = "x86_64"), allow(unused_mut))]
    let mut l0 = 0;
    #[cfg(target_arch = "x86_64")]
    if simd && step == 1 {
        let full_p = kc / 8 * 8;
        while l0 + 8 <= lines {
            for p in (0..full_p).step_by(8) {
                x86::transpose_8x8(&src[l0 * ls + p..], ls, &mut panel[p * width + l0..], width);
            }
            for p in full_p..kc {
                for l in l0..l0 + 8 {
                    panel[p * width + l] = src[l * ls + p];
                }
            }
            l0 += 8;
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = simd;
    for l in l0..width {
        if l < lines {
            let line = &src[l * ls..];
            for (p, out) in panel.chunks_exact_mut(width).take(kc).enumerate() {
                out[l] = line[p * step];
            }
        } else {
            for out in panel.chunks_exact_mut(width).take(kc) {
                out[l] = 0.0;
            }
        }
    }
}
