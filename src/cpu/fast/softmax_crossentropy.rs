//! Fast softmax: the same `softmax_forward` as `src/cpu/softmax_crossentropy.rs` (same signature and
//! semantics), tested against it at the bottom of this file. The cross-entropy forward and the fused
//! backward are cheap (one pass, no transcendental per element but the log of BT values), so they
//! are the readable ones, re-exported so this module has the whole set.
//!
//! The readable softmax calls libm's `exp` for each of the BT · V logits (12.9M at B=4, T=64): a call
//! per element. Here exp is `math::exp_nonpositive` (its argument, logit − max, is never positive)
//! and the max and the sum use 8 partial results, so every loop vectorizes; compiled for the target's
//! baseline and for AVX2 + FMA, picked at run time.

use super::math::exp_nonpositive;
use rayon::prelude::*;

pub use crate::cpu::softmax_crossentropy::{crossentropy_forward, crossentropy_softmax_backward};

/// probs (BT, Vp) = softmax over the first V columns of logits (BT, Vp); columns V..Vp get 0.
/// Same as `cpu::softmax_crossentropy::softmax_forward`.
pub fn softmax_forward(probs: &mut [f32], logits: &[f32], bt: usize, v: usize, vp: usize) {
    assert_eq!(probs.len(), bt * vp);
    assert_eq!(logits.len(), bt * vp);
    assert!(v <= vp);
    #[cfg(target_arch = "x86_64")]
    let avx2 = is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma");
    probs.par_chunks_mut(vp).zip(logits.par_chunks(vp)).for_each(|(p, l)| {
        #[cfg(target_arch = "x86_64")]
        if avx2 {
            // SAFETY: checked above that this CPU has AVX2 and FMA.
            return unsafe { softmax_row_avx2(p, l, v) };
        }
        softmax_row(p, l, v);
    });
}

/// `softmax_row` compiled for AVX2 + FMA.
///
/// Safety: the CPU must support AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn softmax_row_avx2(p: &mut [f32], l: &[f32], v: usize) {
    softmax_row(p, l, v)
}

/// One row: p[..v] = softmax(l[..v]), p[v..] = 0.
#[inline(always)]
fn softmax_row(p: &mut [f32], l: &[f32], v: usize) {
    let (p_real, p_pad) = p.split_at_mut(v);
    let l = &l[..v];
    // the max, for numerical stability (8 running maxima, then the max of those)
    let mut max8 = [f32::NEG_INFINITY; 8];
    let chunks = l.chunks_exact(8);
    let mut maxval = chunks.remainder().iter().fold(f32::NEG_INFINITY, |m, &x| m.max(x));
    for chunk in chunks {
        for (m, &x) in max8.iter_mut().zip(chunk) {
            *m = m.max(x);
        }
    }
    maxval = max8.iter().fold(maxval, |m, &x| m.max(x));
    // exponentiate and sum (8 partial sums)
    let mut sum8 = [0.0f32; 8];
    for (pc, lc) in p_real.chunks_exact_mut(8).zip(l.chunks_exact(8)) {
        for ((pi, &li), s) in pc.iter_mut().zip(lc).zip(&mut sum8) {
            *pi = exp_nonpositive(li - maxval);
            *s += *pi;
        }
    }
    let tail = v / 8 * 8;
    let mut sum: f32 = sum8.iter().sum();
    for (pi, &li) in p_real[tail..].iter_mut().zip(&l[tail..]) {
        *pi = exp_nonpositive(li - maxval);
        sum += *pi;
    }
    // normalize; the padded columns get probability 0
    let inv = 1.0 / sum;
    for pi in p_real.iter_mut() {
        *pi *= inv;
    }
    p_pad.fill(0.0);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::softmax_crossentropy as readable;

    #[test]
    fn fast_softmax_matches_readable() {
        // v not a multiple of 8, padded columns, a row with a huge spread, a constant row
        for (bt, v, vp) in [(5, 1001, 1024), (1, 3, 8), (2, 50257, 50304)] {
            let mut logits: Vec<f32> =
                (0..bt * vp).map(|i| ((i as u32).wrapping_mul(2654435761) % 20001) as f32 / 1000.0 - 10.0).collect();
            logits[..v].iter_mut().for_each(|x| *x *= 10.0); // row 0 spans [-100, 100]
            if bt > 1 {
                logits[vp..vp + v].fill(0.5); // row 1 is uniform
            }
            let (mut want, mut got) = (vec![0.0; bt * vp], vec![9.0; bt * vp]);
            readable::softmax_forward(&mut want, &logits, bt, v, vp);
            softmax_forward(&mut got, &logits, bt, v, vp);
            // each exp is within a few ulps, and the sum of v positive terms taken in another order
            // differs by far less than its worst case v · eps: errors of random sign grow like
            // sqrt(v) · eps (measured: 1.4e-6 at v = 1001, 3.9e-6 at v = 50257). 1e-5 relative leaves
            // room and still catches one missing term at v = 50257 (about 1/v = 2e-5). The absolute
            // floor is for probabilities below 1e-30, where the fast exp stops at exp(-87) and libm's
            // goes on into denormals.
            let tol = 1e-5;
            for (i, (&g, &w)) in got.iter().zip(&want).enumerate() {
                assert!((g - w).abs() <= tol * w + 1e-30, "probs[{i}] ({bt},{v},{vp}): fast {g} vs readable {w}");
            }
        }
    }
}
