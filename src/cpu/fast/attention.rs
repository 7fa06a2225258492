//! Fast attention: the same `attention_forward` / `attention_backward` as `src/cpu/attention.rs`
//! (same signatures and semantics: forward writes out and lse; backward accumulates into dinp and
//! overwrites the scratch delta), tested against it at the bottom of this file.
//!
//! The algorithm is the readable one, step for step (online softmax in the forward, scores
//! recomputed from q, k and lse in the backward; no (T, T) matrix). Three changes:
//! - both passes run in parallel over the batch: each batch element owns its rows of out and lse,
//!   of dinp and delta, so the tasks write disjoint slices;
//! - the dot products over a head's channels use 8 partial sums (`dot`), which LLVM vectorizes
//!   (a single running sum must be added in order, which it cannot), compiled for AVX2 + FMA when
//!   the CPU has them;
//! - the forward rescales its running sums only when a new maximum arrives (after the first few
//!   keys of a row, rarely), not at every key.

use rayon::prelude::*;

/// out (B, T, C) and lse (B, NH, T) from inp (B, T, 3C). Same as `cpu::attention::attention_forward`.
#[allow(clippy::too_many_arguments)]
pub fn attention_forward(out: &mut [f32], lse: &mut [f32], inp: &[f32], b: usize, t: usize, c: usize, nh: usize) {
    assert_eq!(inp.len(), b * t * 3 * c);
    assert_eq!(out.len(), b * t * c);
    assert_eq!(lse.len(), b * nh * t);
    #[cfg(target_arch = "x86_64")]
    let avx2 = is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma");
    out.par_chunks_mut(t * c).zip(lse.par_chunks_mut(nh * t)).enumerate().for_each(|(bi, (out_b, lse_b))| {
        let inp_b = &inp[bi * t * 3 * c..(bi + 1) * t * 3 * c];
        #[cfg(target_arch = "x86_64")]
        if avx2 {
            // SAFETY: checked above that this CPU has AVX2 and FMA.
            return unsafe { forward_batch_avx2(out_b, lse_b, inp_b, t, c, nh) };
        }
        forward_batch(out_b, lse_b, inp_b, t, c, nh);
    });
}

/// `forward_batch` compiled for AVX2 + FMA.
///
/// Safety: the CPU must support AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn forward_batch_avx2(out_b: &mut [f32], lse_b: &mut [f32], inp_b: &[f32], t: usize, c: usize, nh: usize) {
    forward_batch(out_b, lse_b, inp_b, t, c, nh)
}

/// The forward pass for one batch element: out_b (T, C), lse_b (NH, T), inp_b (T, 3C).
#[inline(always)]
fn forward_batch(out_b: &mut [f32], lse_b: &mut [f32], inp_b: &[f32], t: usize, c: usize, nh: usize) {
    let hs = c / nh;
    let scale = 1.0 / (hs as f32).sqrt();
    for h in 0..nh {
        for t1 in 0..t {
            let q = &inp_b[t1 * 3 * c + h * hs..][..hs];
            let o = &mut out_b[t1 * c + h * hs..][..hs];
            o.fill(0.0);
            let (mut m, mut l) = (f32::NEG_INFINITY, 0.0f32);
            for t2 in 0..=t1 {
                let kv = &inp_b[t2 * 3 * c + c + h * hs..];
                let (k, v) = (&kv[..hs], &kv[c..c + hs]);
                let s = dot(q, k) * scale;
                if s > m {
                    // a new maximum: rescale what was summed relative to the old one
                    let correction = (m - s).exp();
                    l *= correction;
                    o.iter_mut().for_each(|oi| *oi *= correction);
                    m = s;
                }
                let p = (s - m).exp();
                l += p;
                for (oi, vi) in o.iter_mut().zip(v) {
                    *oi += p * vi;
                }
            }
            let inv = 1.0 / l;
            o.iter_mut().for_each(|oi| *oi *= inv);
            lse_b[h * t + t1] = m + l.ln();
        }
    }
}

/// Backward of `attention_forward`. Accumulates (+=) into dinp (B, T, 3C); delta (B, NH, T) is
/// scratch space that this overwrites. Same as `cpu::attention::attention_backward`.
#[allow(clippy::too_many_arguments)]
pub fn attention_backward(
    dinp: &mut [f32],
    delta: &mut [f32],
    dout: &[f32],
    inp: &[f32],
    out: &[f32],
    lse: &[f32],
    b: usize,
    t: usize,
    c: usize,
    nh: usize,
) {
    assert_eq!(dinp.len(), b * t * 3 * c);
    assert_eq!(inp.len(), b * t * 3 * c);
    assert_eq!(dout.len(), b * t * c);
    assert_eq!(out.len(), b * t * c);
    assert_eq!(lse.len(), b * nh * t);
    assert_eq!(delta.len(), b * nh * t);
    // one task per batch element: its (T, 3C) rows of dinp and (NH, T) of delta
    #[cfg(target_arch = "x86_64")]
    let avx2 = is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma");
    dinp.par_chunks_mut(t * 3 * c).zip(delta.par_chunks_mut(nh * t)).enumerate().for_each(|(bi, (dinp_b, delta_b))| {
        let inp_b = &inp[bi * t * 3 * c..(bi + 1) * t * 3 * c];
        let (dout_b, out_b) = (&dout[bi * t * c..(bi + 1) * t * c], &out[bi * t * c..(bi + 1) * t * c]);
        let lse_b = &lse[bi * nh * t..(bi + 1) * nh * t];
        #[cfg(target_arch = "x86_64")]
        if avx2 {
            // SAFETY: checked above that this CPU has AVX2 and FMA.
            return unsafe { backward_batch_avx2(dinp_b, delta_b, dout_b, inp_b, out_b, lse_b, t, c, nh) };
        }
        backward_batch(dinp_b, delta_b, dout_b, inp_b, out_b, lse_b, t, c, nh);
    });
}

/// `backward_batch` compiled for AVX2 + FMA.
///
/// Safety: the CPU must support AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[allow(clippy::too_many_arguments)]
unsafe fn backward_batch_avx2(
    dinp_b: &mut [f32],
    delta_b: &mut [f32],
    dout_b: &[f32],
    inp_b: &[f32],
    out_b: &[f32],
    lse_b: &[f32],
    t: usize,
    c: usize,
    nh: usize,
) {
    backward_batch(dinp_b, delta_b, dout_b, inp_b, out_b, lse_b, t, c, nh)
}

/// The backward pass for one batch element: dinp_b (T, 3C), delta_b (NH, T), dout_b and out_b (T, C),
/// inp_b (T, 3C), lse_b (NH, T).
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn backward_batch(
    dinp_b: &mut [f32],
    delta_b: &mut [f32],
    dout_b: &[f32],
    inp_b: &[f32],
    out_b: &[f32],
    lse_b: &[f32],
    t: usize,
    c: usize,
    nh: usize,
) {
    let hs = c / nh;
    let scale = 1.0 / (hs as f32).sqrt();
    for h in 0..nh {
        // offset of position t2's query (part 0), key (1) or value (2) of head h in this batch element
        let offset = |t2: usize, part: usize| t2 * 3 * c + part * c + h * hs;
        for t1 in 0..t {
            let dout_h = &dout_b[t1 * c + h * hs..][..hs];
            let row = h * t + t1;
            delta_b[row] = dot(dout_h, &out_b[t1 * c + h * hs..][..hs]);
            let q_off = offset(t1, 0);
            for t2 in 0..=t1 {
                let (k_off, v_off) = (offset(t2, 1), offset(t2, 2));
                let p = (dot(&inp_b[q_off..q_off + hs], &inp_b[k_off..k_off + hs]) * scale - lse_b[row]).exp();
                let dp = dot(dout_h, &inp_b[v_off..v_off + hs]);
                for (dv, &d) in dinp_b[v_off..v_off + hs].iter_mut().zip(dout_h) {
                    *dv += p * d;
                }
                let ds = p * (dp - delta_b[row]) * scale;
                // dq and dk are disjoint ranges of dinp_b (query vs key part): split to borrow both
                let (dq, dk) = if q_off < k_off {
                    let (lo, hi) = dinp_b.split_at_mut(k_off);
                    (&mut lo[q_off..q_off + hs], &mut hi[..hs])
                } else {
                    let (lo, hi) = dinp_b.split_at_mut(q_off);
                    (&mut hi[..hs], &mut lo[k_off..k_off + hs])
                };
                let (q, k) = (&inp_b[q_off..q_off + hs], &inp_b[k_off..k_off + hs]);
                for i in 0..hs {
                    dq[i] += ds * k[i];
                    dk[i] += ds * q[i];
                }
            }
        }
    }
}

/// a . b with 8 independent partial sums, so the loop vectorizes.
#[inline(always)]
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let (ac, bc) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = ac.remainder().iter().zip(bc.remainder()).map(|(x, y)| x * y).sum();
    let mut acc = [0.0f32; 8];
    for (x, y) in ac.zip(bc) {
        for i in 0..8 {
            acc[i] += x[i] * y[i];
        }
    }
    acc.iter().sum::<f32>() + tail
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::attention as readable;

    fn fill(len: usize, seed: u32) -> Vec<f32> {
        (0..len)
            .map(|i| ((i as u32).wrapping_mul(2654435761).wrapping_add(seed) % 2001) as f32 / 1000.0 - 1.0)
            .collect()
    }

    /// Sizes: GPT-2-like heads (hs = 64), and odd ones (hs = 5, not a multiple of 8; t = 1).
    #[test]
    fn fast_attention_matches_readable() {
        for (b, t, c, nh) in [(2, 7, 15, 3), (1, 1, 10, 2), (3, 33, 128, 2)] {
            let inp = fill(b * t * 3 * c, 1);
            let dout = fill(b * t * c, 2);
            let n_lse = b * nh * t;
            let (mut out_w, mut lse_w) = (vec![0.0; b * t * c], vec![9.0; n_lse]);
            let (mut out_g, mut lse_g) = (vec![5.0; b * t * c], vec![7.0; n_lse]);
            readable::attention_forward(&mut out_w, &mut lse_w, &inp, b, t, c, nh);
            attention_forward(&mut out_g, &mut lse_g, &inp, b, t, c, nh);
            // inputs are in [-1, 1]: a score sums hs products of size <= 1, so its rounding differs by
            // about hs·eps between summation orders; lse is a log of a sum of t exponentials; out is
            // an average of values in [-1, 1]. 1e-5 covers hs <= 64 with room to spare, and a wrong
            // index is off by ~0.1.
            let close = |name: &str, g: &[f32], w: &[f32]| {
                for (i, (g, w)) in g.iter().zip(w).enumerate() {
                    assert!((g - w).abs() <= 1e-5 * (1.0 + w.abs()), "{name}[{i}] ({b},{t},{c},{nh}): {g} vs {w}");
                }
            };
            close("lse", &lse_g, &lse_w);
            close("out", &out_g, &out_w);
            // backward: into a nonzero dinp, with garbage in the scratch
            let start = fill(b * t * 3 * c, 3);
            let (mut dinp_w, mut delta_w) = (start.clone(), vec![3.0; n_lse]);
            let (mut dinp_g, mut delta_g) = (start, vec![4.0; n_lse]);
            readable::attention_backward(&mut dinp_w, &mut delta_w, &dout, &inp, &out_w, &lse_w, b, t, c, nh);
            attention_backward(&mut dinp_g, &mut delta_g, &dout, &inp, &out_w, &lse_w, b, t, c, nh);
            // dinp sums up to t terms of size up to hs: relative 1e-5 of (1 + |value|) still holds
            close("dinp", &dinp_g, &dinp_w);
            close("delta", &delta_g, &delta_w);
        }
    }
}
