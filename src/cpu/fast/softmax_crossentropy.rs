//! Fast loss: the same `crossentropy_forward` and `crossentropy_softmax_backward` as
//! `src/cpu/softmax_crossentropy.rs` (same signatures and semantics: the backward writes the gradient
//! over the logits), tested against it at the bottom of this file.
//!
//! The readable versions call libm's `exp` for each of the BT · V logits (12.9M at B=4, T=64), twice
//! a step (forward and backward): a call per element. Here exp is `math::exp_nonpositive` (its
//! argument, logit − max or logit − lse, is never positive) and the max and the sum use 8 partial
//! results, so every loop vectorizes; compiled for the target's baseline and for AVX2 + FMA, picked
//! at run time.

use super::math::exp_nonpositive;
use rayon::prelude::*;

/// losses (BT) and lse (BT) from logits (BT, Vp) and targets (BT).
/// Same as `cpu::softmax_crossentropy::crossentropy_forward`.
pub fn crossentropy_forward(
    losses: &mut [f32],
    lse: &mut [f32],
    logits: &[f32],
    targets: &[u32],
    bt: usize,
    v: usize,
    vp: usize,
) {
    assert_eq!(losses.len(), bt);
    assert_eq!(lse.len(), bt);
    assert_eq!(logits.len(), bt * vp);
    assert_eq!(targets.len(), bt);
    assert!(v <= vp);
    #[cfg(target_arch = "x86_64")]
    let avx2 = is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma");
    let rows = losses.par_iter_mut().zip(lse.par_iter_mut()).zip(logits.par_chunks(vp));
    rows.enumerate().for_each(|(i, ((loss, lse), row))| {
        #[cfg(target_arch = "x86_64")]
        if avx2 {
            // SAFETY: checked above that this CPU has AVX2 and FMA.
            *lse = unsafe { logsumexp_avx2(&row[..v]) };
        } else {
            *lse = logsumexp(&row[..v]);
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            *lse = logsumexp(&row[..v]);
        }
        *loss = *lse - row[targets[i] as usize];
    });
}

/// `logsumexp` compiled for AVX2 + FMA.
///
/// Safety: the CPU must support AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn logsumexp_avx2(l: &[f32]) -> f32 {
    logsumexp(l)
}

/// log(sum of exp(l)), computed as max + log(sum of exp(l - max)).
#[inline(always)]
fn logsumexp(l: &[f32]) -> f32 {
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
    let chunks = l.chunks_exact(8);
    let mut sum: f32 = chunks.remainder().iter().map(|&x| exp_nonpositive(x - maxval)).sum();
    for chunk in chunks {
        for (s, &x) in sum8.iter_mut().zip(chunk) {
            *s += exp_nonpositive(x - maxval);
        }
    }
    sum += sum8.iter().sum::<f32>();
    maxval + sum.ln()
}

/// Fused backward of softmax + cross-entropy, written over the logits.
/// Same as `cpu::softmax_crossentropy::crossentropy_softmax_backward`.
#[cfg(not(feature = "exercise-softmax_crossentropy"))]
pub fn crossentropy_softmax_backward(
    logits: &mut [f32],
    dlosses: &[f32],
    lse: &[f32],
    targets: &[u32],
    bt: usize,
    v: usize,
    vp: usize,
) {
    assert_eq!(logits.len(), bt * vp);
    assert!(dlosses.len() == bt && lse.len() == bt && targets.len() == bt && v <= vp);
    #[cfg(target_arch = "x86_64")]
    let avx2 = is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma");
    logits.par_chunks_mut(vp).enumerate().for_each(|(i, row)| {
        #[cfg(target_arch = "x86_64")]
        if avx2 {
            // SAFETY: checked above that this CPU has AVX2 and FMA.
            return unsafe { backward_row_avx2(row, dlosses[i], lse[i], targets[i] as usize, v) };
        }
        backward_row(row, dlosses[i], lse[i], targets[i] as usize, v);
    });
}

// With the exercise on, the learner's backward (which replaces the readable one) serves the fast
// layers too, so no check of the fast layers passes around the blank.
#[cfg(feature = "exercise-softmax_crossentropy")]
pub use crate::cpu::softmax_crossentropy::crossentropy_softmax_backward;

/// `backward_row` compiled for AVX2 + FMA.
///
/// Safety: the CPU must support AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[cfg_attr(feature = "exercise-softmax_crossentropy", allow(dead_code))]
unsafe fn backward_row_avx2(row: &mut [f32], dloss: f32, lse: f32, target: usize, v: usize) {
    backward_row(row, dloss, lse, target, v)
}

/// One row: row[..v] = (exp(row - lse) - one_hot(target)) * dloss, row[v..] = 0.
#[inline(always)]
#[cfg_attr(feature = "exercise-softmax_crossentropy", allow(dead_code))]
fn backward_row(row: &mut [f32], dloss: f32, lse: f32, target: usize, v: usize) {
    let (real, pad) = row.split_at_mut(v);
    for x in real.iter_mut() {
        *x = exp_nonpositive(*x - lse) * dloss;
    }
    real[target] -= dloss;
    pad.fill(0.0);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::softmax_crossentropy as readable;

    #[test]
    fn fast_classifier_matches_readable() {
        // v not a multiple of 8, padded columns, a row with a huge spread, a constant row
        for (bt, v, vp) in [(5, 1001, 1024), (1, 3, 8), (2, 50257, 50304)] {
            let mut logits: Vec<f32> =
                (0..bt * vp).map(|i| ((i as u32).wrapping_mul(2654435761) % 20001) as f32 / 1000.0 - 10.0).collect();
            logits[..v].iter_mut().for_each(|x| *x *= 10.0); // row 0 spans [-100, 100]
            if bt > 1 {
                logits[vp..vp + v].fill(0.5); // row 1 is uniform
            }
            let targets: Vec<u32> = (0..bt).map(|i| (i * 7 % v) as u32).collect();
            let dlosses: Vec<f32> = (0..bt).map(|i| 0.25 + i as f32).collect();
            let (mut lw, mut sw, mut lg, mut sg) = (vec![0.0; bt], vec![0.0; bt], vec![9.0; bt], vec![9.0; bt]);
            readable::crossentropy_forward(&mut lw, &mut sw, &logits, &targets, bt, v, vp);
            crossentropy_forward(&mut lg, &mut sg, &logits, &targets, bt, v, vp);
            // a sum of v positive terms in another order, exps within a few ulps: 1e-5 relative
            for i in 0..bt {
                assert!((lg[i] - lw[i]).abs() <= 1e-5 * (1.0 + lw[i].abs()), "loss[{i}]: {} vs {}", lg[i], lw[i]);
                assert!((sg[i] - sw[i]).abs() <= 1e-5 * (1.0 + sw[i].abs()), "lse[{i}]: {} vs {}", sg[i], sw[i]);
            }
            let (mut want, mut got) = (logits.clone(), logits.clone());
            readable::crossentropy_softmax_backward(&mut want, &dlosses, &sw, &targets, bt, v, vp);
            crossentropy_softmax_backward(&mut got, &dlosses, &sw, &targets, bt, v, vp);
            // p_j - [j == target], times dloss: each within a few ulps of exp; the floor is for
            // probabilities below 1e-30, where the fast exp stops at exp(-87)
            for (i, (&g, &w)) in got.iter().zip(&want).enumerate() {
                assert!(
                    (g - w).abs() <= 1e-5 * w.abs() + 1e-30,
                    "dlogits[{i}] ({bt},{v},{vp}): fast {g} vs readable {w}"
                );
            }
        }
    }
}
