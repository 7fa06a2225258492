//! The micro-kernels: an MR × NR tile of C kept in registers over the k loop (see "The blocking
//! scheme" in `mod.rs`), portable Rust and x86-64 AVX2 / AVX-512, plus the AVX 8 × 8 transpose that
//! packing uses.

/// A micro-kernel: computes the MR × NR tile `acc = Ap · Bp` over `kc` steps from packed panels
/// (`a`: kc × MR, `b`: kc × NR), then writes `c[r * ldc + j] = [c +] acc + [bias[j]]`.
/// `bias` is null for no bias.
///
/// Safety: `a` and `b` must be readable for kc·MR and kc·NR floats, `c` readable and writable for
/// MR rows of NR floats `ldc` apart, `bias` null or readable for NR floats.
///
/// `E` is what the packed B panel holds: `f32` here, `u16` (bf16 bits) for the kernels of `bf16.rs`.
pub(super) type Kernel<E = f32> =
    unsafe fn(kc: usize, a: *const f32, b: *const E, c: *mut f32, ldc: usize, bias: *const f32, acc: bool);

/// The portable micro-kernel: the MR × NR tile in a plain array, which LLVM keeps in vector registers
/// (4 × 8 floats: 8 SSE or NEON registers).
///
/// Safety: see `Kernel`.
pub(super) unsafe fn kernel_portable<const MR: usize, const NR: usize>(
    kc: usize,
    a: *const f32,
    b: *const f32,
    c: *mut f32,
    ldc: usize,
    bias: *const f32,
    accumulate: bool,
) {
    // SAFETY: the caller guarantees `a`, `b` hold kc·MR and kc·NR floats.
    let (a, b) = unsafe { (std::slice::from_raw_parts(a, kc * MR), std::slice::from_raw_parts(b, kc * NR)) };
    let mut acc = [[0.0f32; NR]; MR];
    for (ap, bp) in a.chunks_exact(MR).zip(b.chunks_exact(NR)) {
        for (acc_row, &ar) in acc.iter_mut().zip(ap) {
            for (x, &bv) in acc_row.iter_mut().zip(bp) {
                *x += ar * bv;
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
pub(super) mod x86 {
    //! The x86-64 micro-kernels. Both are the same loop: per p, load NV vectors of B, then for each of
    //! the MR rows broadcast one A value and FMA it into that row's NV accumulators.
    use std::arch::x86_64::*;

    /// `dst[p * ldd + l] = src[l * lds + p]` for an 8 × 8 block: eight rows loaded, transposed in
    /// registers (the classic unpack / shuffle / permute sequence), eight rows stored.
    /// Panics if a slice is too short; the caller must have checked that the CPU has AVX.
    #[inline]
    pub fn transpose_8x8(src: &[f32], lds: usize, dst: &mut [f32], ldd: usize) {
        assert!(src.len() >= 7 * lds + 8 && dst.len() >= 7 * ldd + 8);
        debug_assert!(is_x86_feature_detected!("avx"), "transpose_8x8 needs AVX");
        // SAFETY: `simd` is only set for the AVX2 / AVX-512 paths, whose CPUs have AVX; the bounds
        // are checked above.
        unsafe { transpose_8x8_avx(src.as_ptr(), lds, dst.as_mut_ptr(), ldd) }
    }

    /// Ask for the `rows` × `cols` tile of C at `c` (rows `ldc` apart) to be brought into L1 while the
    /// kernel's k loop runs, so that adding the result to C does not wait for memory (C is touched once
    /// per slab, so it is usually not in cache; dweight of the LM head is 150 MB of it).
    ///
    /// Safety: the tile must be inside one allocation (prefetches themselves never fault).
    #[inline(always)]
    unsafe fn prefetch_tile(c: *const f32, ldc: usize, rows: usize, cols: usize) {
        // SAFETY: the caller guarantees the tile's addresses are inside C.
        unsafe {
            for r in 0..rows {
                let row = c.add(r * ldc);
                for j in (0..cols).step_by(16) {
                    _mm_prefetch::<_MM_HINT_T0>(row.add(j) as *const i8);
                }
                _mm_prefetch::<_MM_HINT_T0>(row.add(cols - 1) as *const i8);
            }
        }
    }

    #[target_feature(enable = "avx")]
    unsafe fn transpose_8x8_avx(src: *const f32, lds: usize, dst: *mut f32, ldd: usize) {
        // SAFETY: the caller checked AVX and that 8 rows of 8 floats are readable / writable.
        unsafe {
            let r: [__m256; 8] = std::array::from_fn(|l| _mm256_loadu_ps(src.add(l * lds)));
            // interleave pairs of rows, then pairs of pairs, then swap 128-bit halves
            let t0 = _mm256_unpacklo_ps(r[0], r[1]);
            let t1 = _mm256_unpackhi_ps(r[0], r[1]);
            let t2 = _mm256_unpacklo_ps(r[2], r[3]);
            let t3 = _mm256_unpackhi_ps(r[2], r[3]);
            let t4 = _mm256_unpacklo_ps(r[4], r[5]);
            let t5 = _mm256_unpackhi_ps(r[4], r[5]);
            let t6 = _mm256_unpacklo_ps(r[6], r[7]);
            let t7 = _mm256_unpackhi_ps(r[6], r[7]);
            let u0 = _mm256_shuffle_ps::<0x44>(t0, t2);
            let u1 = _mm256_shuffle_ps::<0xEE>(t0, t2);
            let u2 = _mm256_shuffle_ps::<0x44>(t1, t3);
            let u3 = _mm256_shuffle_ps::<0xEE>(t1, t3);
            let u4 = _mm256_shuffle_ps::<0x44>(t4, t6);
            let u5 = _mm256_shuffle_ps::<0xEE>(t4, t6);
            let u6 = _mm256_shuffle_ps::<0x44>(t5, t7);
            let u7 = _mm256_shuffle_ps::<0xEE>(t5, t7);
            let o = [
                _mm256_permute2f128_ps::<0x20>(u0, u4),
                _mm256_permute2f128_ps::<0x20>(u1, u5),
                _mm256_permute2f128_ps::<0x20>(u2, u6),
                _mm256_permute2f128_ps::<0x20>(u3, u7),
                _mm256_permute2f128_ps::<0x31>(u0, u4),
                _mm256_permute2f128_ps::<0x31>(u1, u5),
                _mm256_permute2f128_ps::<0x31>(u2, u6),
                _mm256_permute2f128_ps::<0x31>(u3, u7),
            ];
            for (p, v) in o.into_iter().enumerate() {
                _mm256_storeu_ps(dst.add(p * ldd), v);
            }
        }
    }

    /// AVX-512 micro-kernel, MR × (16·NV).
    ///
    /// Safety: the CPU must support AVX-512F; pointers as in `Kernel`.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn kernel_avx512<const MR: usize, const NV: usize>(
        kc: usize,
        a: *const f32,
        b: *const f32,
        c: *mut f32,
        ldc: usize,
        bias: *const f32,
        accumulate: bool,
    ) {
        // SAFETY: the caller guarantees AVX-512F and that a, b hold kc·MR and kc·16·NV floats, and
        // c is MR rows of 16·NV floats (ldc apart), bias null or 16·NV floats.
        unsafe {
            prefetch_tile(c, ldc, MR, 16 * NV);
            let mut acc = [[_mm512_setzero_ps(); NV]; MR];
            let (mut a, mut b) = (a, b);
            for _ in 0..kc {
                let mut bv = [_mm512_setzero_ps(); NV];
                for (v, x) in bv.iter_mut().enumerate() {
                    *x = _mm512_loadu_ps(b.add(16 * v));
                }
                for (r, acc_row) in acc.iter_mut().enumerate() {
                    let ar = _mm512_set1_ps(*a.add(r));
                    for (x, &bvv) in acc_row.iter_mut().zip(&bv) {
                        *x = _mm512_fmadd_ps(ar, bvv, *x);
                    }
                }
                a = a.add(MR);
                b = b.add(16 * NV);
            }
            for (r, acc_row) in acc.iter().enumerate() {
                for (v, &x) in acc_row.iter().enumerate() {
                    let mut x = x;
                    if !bias.is_null() {
                        x = _mm512_add_ps(x, _mm512_loadu_ps(bias.add(16 * v)));
                    }
                    let cp = c.add(r * ldc + 16 * v);
                    if accumulate {
                        x = _mm512_add_ps(x, _mm512_loadu_ps(cp));
                    }
                    _mm512_storeu_ps(cp, x);
                }
            }
        }
    }

    /// AVX2 + FMA micro-kernel, MR × (8·NV).
    ///
    /// Safety: the CPU must support AVX2 and FMA; pointers as in `Kernel`.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn kernel_avx2<const MR: usize, const NV: usize>(
        kc: usize,
        a: *const f32,
        b: *const f32,
        c: *mut f32,
        ldc: usize,
        bias: *const f32,
        accumulate: bool,
    ) {
        // SAFETY: the caller guarantees AVX2 + FMA and that a, b hold kc·MR and kc·8·NV floats, and
        // c is MR rows of 8·NV floats (ldc apart), bias null or 8·NV floats.
        unsafe {
            prefetch_tile(c, ldc, MR, 8 * NV);
            let mut acc = [[_mm256_setzero_ps(); NV]; MR];
            let (mut a, mut b) = (a, b);
            for _ in 0..kc {
                let mut bv = [_mm256_setzero_ps(); NV];
                for (v, x) in bv.iter_mut().enumerate() {
                    *x = _mm256_loadu_ps(b.add(8 * v));
                }
                for (r, acc_row) in acc.iter_mut().enumerate() {
                    let ar = _mm256_broadcast_ss(&*a.add(r));
                    for (x, &bvv) in acc_row.iter_mut().zip(&bv) {
                        *x = _mm256_fmadd_ps(ar, bvv, *x);
                    }
                }
                a = a.add(MR);
                b = b.add(8 * NV);
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
