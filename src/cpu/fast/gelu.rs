//! Fast GELU: the same `gelu_forward` / `gelu_backward` as `src/cpu/gelu.rs` (same signatures and
//! semantics, backward accumulates), tested against it at the bottom of this file.
//!
//! The readable version spends nearly all its time in `f32::tanh`, a libm call per element that the
//! compiler cannot vectorize. Here tanh is `math::tanh`, made only of +, ×, /, min/max and bit
//! operations, so LLVM turns the loop into vector code.
//! The loop is compiled twice, for the target's baseline and for AVX2 + FMA (picked at run time),
//! and runs in parallel over chunks of 16K elements.

use super::math::tanh;
use rayon::prelude::*;

const SQRT_2_OVER_PI: f32 = 0.797_884_6;
const GELU_COEFF: f32 = 0.044715;
/// Elements per rayon task: large enough that scheduling is negligible, small enough to balance.
const CHUNK: usize = 16 * 1024;

/// out (N) = gelu(inp (N)), elementwise. Same as `cpu::gelu::gelu_forward`.
pub fn gelu_forward(out: &mut [f32], inp: &[f32]) {
    assert_eq!(out.len(), inp.len());
    let avx2 = has_avx2();
    out.par_chunks_mut(CHUNK).zip(inp.par_chunks(CHUNK)).for_each(|(out, inp)| {
        #[cfg(target_arch = "x86_64")]
        if avx2 {
            // SAFETY: `has_avx2` checked that this CPU has AVX2 and FMA.
            return unsafe { forward_avx2(out, inp) };
        }
        let _ = avx2;
        forward_chunk(out, inp);
    });
}

/// Backward: dinp (N) += gelu'(inp) * dout. Same as `cpu::gelu::gelu_backward`.
pub fn gelu_backward(dinp: &mut [f32], inp: &[f32], dout: &[f32]) {
    assert_eq!(dinp.len(), inp.len());
    assert_eq!(dout.len(), inp.len());
    let avx2 = has_avx2();
    dinp.par_chunks_mut(CHUNK).zip(inp.par_chunks(CHUNK)).zip(dout.par_chunks(CHUNK)).for_each(
        |((dinp, inp), dout)| {
            #[cfg(target_arch = "x86_64")]
            if avx2 {
                // SAFETY: `has_avx2` checked that this CPU has AVX2 and FMA.
                return unsafe { backward_avx2(dinp, inp, dout) };
            }
            let _ = avx2;
            backward_chunk(dinp, inp, dout);
        },
    );
}

fn has_avx2() -> bool {
    #[cfg(target_arch = "x86_64")]
    return is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma");
    #[cfg(not(target_arch = "x86_64"))]
    false
}

#[inline(always)]
fn forward_chunk(out: &mut [f32], inp: &[f32]) {
    for (o, &x) in out.iter_mut().zip(inp) {
        let u = SQRT_2_OVER_PI * (x + GELU_COEFF * x * x * x);
        *o = 0.5 * x * (1.0 + tanh(u));
    }
}

#[inline(always)]
fn backward_chunk(dinp: &mut [f32], inp: &[f32], dout: &[f32]) {
    for ((di, &x), &d) in dinp.iter_mut().zip(inp).zip(dout) {
        let u = SQRT_2_OVER_PI * (x + GELU_COEFF * x * x * x);
        let tanh_u = tanh(u);
        let sech2_u = 1.0 - tanh_u * tanh_u;
        let local_grad = 0.5 * (1.0 + tanh_u) + 0.5 * x * sech2_u * SQRT_2_OVER_PI * (1.0 + 3.0 * GELU_COEFF * x * x);
        *di += local_grad * d;
    }
}

/// `forward_chunk` compiled for AVX2 + FMA.
///
/// Safety: the CPU must support AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn forward_avx2(out: &mut [f32], inp: &[f32]) {
    forward_chunk(out, inp)
}

/// `backward_chunk` compiled for AVX2 + FMA.
///
/// Safety: the CPU must support AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn backward_avx2(dinp: &mut [f32], inp: &[f32], dout: &[f32]) {
    backward_chunk(dinp, inp, dout)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::gelu as readable;

    /// Inputs over the range activations take, plus 0, tiny, large and huge values.
    fn inputs() -> Vec<f32> {
        let mut x: Vec<f32> = (0..40_001).map(|i| (i as f32 - 20_000.0) / 2_000.0).collect(); // [-10, 10]
        x.extend([0.0, -0.0, 1e-30, -1e-30, 1e-7, -1e-7, 50.0, -50.0, 100.0, -100.0, 1e30, -1e30]);
        x
    }

    #[test]
    fn fast_gelu_forward_and_backward_match_readable() {
        let x = inputs();
        let dout: Vec<f32> = (0..x.len()).map(|i| ((i * 7919) % 1000) as f32 / 500.0 - 1.0).collect();
        let (mut want, mut got) = (vec![0.0; x.len()], vec![7.0; x.len()]);
        readable::gelu_forward(&mut want, &x);
        gelu_forward(&mut got, &x);
        // tanh differs by a few ulps of 1, scaled by 0.5|x| in gelu; plus rounding of the result
        for ((&xi, &g), &w) in x.iter().zip(&got).zip(&want) {
            let tol = 4.0 * f32::EPSILON * (xi.abs() + w.abs());
            assert!((g - w).abs() <= tol, "gelu({xi}): fast {g} vs readable {w}");
            assert!(g.is_nan() == w.is_nan());
        }
        // backward accumulates into a nonzero buffer
        let start: Vec<f32> = (0..x.len()).map(|i| (i % 5) as f32 - 2.0).collect();
        let (mut want, mut got) = (start.clone(), start.clone());
        readable::gelu_backward(&mut want, &x, &dout);
        gelu_backward(&mut got, &x, &dout);
        // the local gradient's error: tanh's few ulps, times at most 1 + |x|·(1 + 0.134 x^2) through
        // the sech^2 term; then the accumulation rounds at the size of the result
        for (i, (&g, &w)) in got.iter().zip(&want).enumerate() {
            let xi = x[i].abs().min(10.0); // beyond 10, sech^2 is below 1e-8 and the term vanishes
            let tol = 8.0 * f32::EPSILON * ((1.0 + xi * (1.0 + 0.134 * xi * xi)) * dout[i].abs() + w.abs() + 1.0);
            let both_nan = g.is_nan() && w.is_nan(); // x = ±1e30: x^3 overflows in both
            assert!(both_nan || (g - w).abs() <= tol, "gelu'({}): fast {g} vs readable {w}", x[i]);
        }
    }
}
