//! Fast attention: the same `attention_forward` / `attention_backward` as `src/cpu/attention.rs`
//! (same signatures and semantics: backward accumulates into dinp, overwrites the scratch dpreatt and
//! datt), tested against it at the bottom of this file.
//!
//! The algorithm is the readable one, step for step. Two changes:
//! - the backward pass runs in parallel over the batch (the readable one is serial): each batch
//!   element owns its rows of dinp, dpreatt and datt, so the tasks write disjoint slices;
//! - the dot products over a head's channels use 8 partial sums (`dot`), which LLVM vectorizes
//!   (a single running sum must be added in order, which it cannot).

use rayon::prelude::*;

/// out (B, T, C), preatt (B, NH, T, T), att (B, NH, T, T) from inp (B, T, 3C).
/// Same as `cpu::attention::attention_forward`.
#[allow(clippy::too_many_arguments)]
pub fn attention_forward(
    out: &mut [f32],
    preatt: &mut [f32],
    att: &mut [f32],
    inp: &[f32],
    b: usize,
    t: usize,
    c: usize,
    nh: usize,
) {
    let hs = c / nh;
    let scale = 1.0 / (hs as f32).sqrt();
    assert_eq!(inp.len(), b * t * 3 * c);
    assert_eq!(out.len(), b * t * c);
    assert_eq!(preatt.len(), b * nh * t * t);
    assert_eq!(att.len(), b * nh * t * t);
    // scores and softmax: each (batch, head) pair is independent
    preatt.par_chunks_mut(t * t).zip(att.par_chunks_mut(t * t)).enumerate().for_each(|(bh, (preatt_bh, att_bh))| {
        let (bi, h) = (bh / nh, bh % nh);
        let q = |t2: usize| &inp[(bi * t + t2) * 3 * c + h * hs..][..hs];
        let k = |t2: usize| &inp[(bi * t + t2) * 3 * c + c + h * hs..][..hs];
        for t1 in 0..t {
            let preatt_row = &mut preatt_bh[t1 * t..(t1 + 1) * t];
            let att_row = &mut att_bh[t1 * t..(t1 + 1) * t];
            let q1 = q(t1);
            let mut maxval = f32::NEG_INFINITY;
            for (t2, p) in preatt_row[..=t1].iter_mut().enumerate() {
                *p = dot(q1, k(t2)) * scale;
                maxval = maxval.max(*p);
            }
            let mut expsum = 0.0;
            for (a, &p) in att_row[..=t1].iter_mut().zip(&preatt_row[..=t1]) {
                *a = (p - maxval).exp();
                expsum += *a;
            }
            let inv = 1.0 / expsum;
            for a in &mut att_row[..=t1] {
                *a *= inv;
            }
            // the future stays 0 (causal mask)
            att_row[t1 + 1..].fill(0.0);
            preatt_row[t1 + 1..].fill(0.0);
        }
    });
    // out = att @ v, parallel over positions
    out.par_chunks_mut(c).enumerate().for_each(|(bt1, out_bt)| {
        let (bi, t1) = (bt1 / t, bt1 % t);
        for h in 0..nh {
            let att_row = &att[((bi * nh + h) * t + t1) * t..][..t1 + 1];
            let out_h = &mut out_bt[h * hs..(h + 1) * hs];
            out_h.fill(0.0);
            for (t2, &a) in att_row.iter().enumerate() {
                let v = &inp[(bi * t + t2) * 3 * c + 2 * c + h * hs..][..hs];
                for (o, vi) in out_h.iter_mut().zip(v) {
                    *o += a * vi;
                }
            }
        }
    });
}

/// Backward of `attention_forward`. Accumulates (+=) into dinp (B, T, 3C); dpreatt and datt
/// (B, NH, T, T) are scratch space that this function overwrites.
/// Same as `cpu::attention::attention_backward`.
#[allow(clippy::too_many_arguments)]
pub fn attention_backward(
    dinp: &mut [f32],
    dpreatt: &mut [f32],
    datt: &mut [f32],
    dout: &[f32],
    inp: &[f32],
    att: &[f32],
    b: usize,
    t: usize,
    c: usize,
    nh: usize,
) {
    assert_eq!(dinp.len(), b * t * 3 * c);
    assert_eq!(inp.len(), b * t * 3 * c);
    assert_eq!(dout.len(), b * t * c);
    assert_eq!(att.len(), b * nh * t * t);
    assert_eq!(dpreatt.len(), b * nh * t * t);
    assert_eq!(datt.len(), b * nh * t * t);
    // one task per batch element: its (T, 3C) rows of dinp and (NH, T, T) of the scratch
    #[cfg(target_arch = "x86_64")]
    let avx2 = is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma");
    let per_batch = dinp.par_chunks_mut(t * 3 * c).zip(dpreatt.par_chunks_mut(nh * t * t));
    per_batch.zip(datt.par_chunks_mut(nh * t * t)).enumerate().for_each(|(bi, ((dinp_b, dpreatt_b), datt_b))| {
        let inp_b = &inp[bi * t * 3 * c..(bi + 1) * t * 3 * c];
        let dout_b = &dout[bi * t * c..(bi + 1) * t * c];
        let att_b = &att[bi * nh * t * t..(bi + 1) * nh * t * t];
        #[cfg(target_arch = "x86_64")]
        if avx2 {
            // SAFETY: checked above that this CPU has AVX2 and FMA.
            return unsafe { backward_batch_avx2(dinp_b, dpreatt_b, datt_b, dout_b, inp_b, att_b, t, c, nh) };
        }
        backward_batch(dinp_b, dpreatt_b, datt_b, dout_b, inp_b, att_b, t, c, nh);
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
    dpreatt_b: &mut [f32],
    datt_b: &mut [f32],
    dout_b: &[f32],
    inp_b: &[f32],
    att_b: &[f32],
    t: usize,
    c: usize,
    nh: usize,
) {
    backward_batch(dinp_b, dpreatt_b, datt_b, dout_b, inp_b, att_b, t, c, nh)
}

/// The backward pass for one batch element: dinp_b (T, 3C), dpreatt_b and datt_b (NH, T, T),
/// dout_b (T, C), inp_b (T, 3C), att_b (NH, T, T).
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn backward_batch(
    dinp_b: &mut [f32],
    dpreatt_b: &mut [f32],
    datt_b: &mut [f32],
    dout_b: &[f32],
    inp_b: &[f32],
    att_b: &[f32],
    t: usize,
    c: usize,
    nh: usize,
) {
    let hs = c / nh;
    let scale = 1.0 / (hs as f32).sqrt();
    for h in 0..nh {
        let att_bh = &att_b[h * t * t..(h + 1) * t * t];
        let datt_bh = &mut datt_b[h * t * t..(h + 1) * t * t];
        let dpreatt_bh = &mut dpreatt_b[h * t * t..(h + 1) * t * t];
        // offset of position t2's query (part 0), key (1) or value (2) of head h in this batch element
        let offset = |t2: usize, part: usize| t2 * 3 * c + part * c + h * hs;
        for t1 in 0..t {
            let dout_h = &dout_b[t1 * c + h * hs..][..hs];
            let row = t1 * t;
            // backward of out = att @ v: datt = dout . v, dv += att * dout
            for t2 in 0..=t1 {
                let v_off = offset(t2, 2);
                datt_bh[row + t2] = dot(&inp_b[v_off..v_off + hs], dout_h);
                let a = att_bh[row + t2];
                for (dv, &d) in dinp_b[v_off..v_off + hs].iter_mut().zip(dout_h) {
                    *dv += a * d;
                }
            }
            // backward of the softmax: dpreatt = att * (datt - sum(att * datt))
            let dsum = dot(&att_bh[row..=row + t1], &datt_bh[row..=row + t1]);
            for t2 in 0..=t1 {
                dpreatt_bh[row + t2] = att_bh[row + t2] * (datt_bh[row + t2] - dsum);
            }
            // backward of the scores q.k * scale: dq += dpreatt * k * scale, dk += dpreatt * q * scale
            let q_off = offset(t1, 0);
            for t2 in 0..=t1 {
                let k_off = offset(t2, 1);
                let d = dpreatt_bh[row + t2] * scale;
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
                    dq[i] += k[i] * d;
                    dk[i] += q[i] * d;
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
            let n_att = b * nh * t * t;
            let (mut out_w, mut pre_w, mut att_w) = (vec![0.0; b * t * c], vec![9.0; n_att], vec![9.0; n_att]);
            let (mut out_g, mut pre_g, mut att_g) = (vec![5.0; b * t * c], vec![7.0; n_att], vec![7.0; n_att]);
            readable::attention_forward(&mut out_w, &mut pre_w, &mut att_w, &inp, b, t, c, nh);
            attention_forward(&mut out_g, &mut pre_g, &mut att_g, &inp, b, t, c, nh);
            // inputs are in [-1, 1]: a score sums hs products of size <= 1, so its rounding differs by
            // about hs·eps between summation orders; att is in [0, 1]; out is an average of values
            // in [-1, 1]. 1e-5 covers hs <= 64 with room to spare, and a wrong index is off by ~0.1.
            let close = |name: &str, g: &[f32], w: &[f32]| {
                for (i, (g, w)) in g.iter().zip(w).enumerate() {
                    assert!((g - w).abs() <= 1e-5 * (1.0 + w.abs()), "{name}[{i}] ({b},{t},{c},{nh}): {g} vs {w}");
                }
            };
            close("preatt", &pre_g, &pre_w);
            close("att", &att_g, &att_w);
            close("out", &out_g, &out_w);
            // backward: into a nonzero dinp, with garbage in the scratch buffers
            let start = fill(b * t * 3 * c, 3);
            let (mut dinp_w, mut dpre_w, mut datt_w) = (start.clone(), vec![3.0; n_att], vec![3.0; n_att]);
            let (mut dinp_g, mut dpre_g, mut datt_g) = (start, vec![4.0; n_att], vec![4.0; n_att]);
            readable::attention_backward(&mut dinp_w, &mut dpre_w, &mut datt_w, &dout, &inp, &att_w, b, t, c, nh);
            attention_backward(&mut dinp_g, &mut dpre_g, &mut datt_g, &dout, &inp, &att_w, b, t, c, nh);
            // dinp sums up to t terms of size up to hs: relative 1e-5 of (1 + |value|) still holds
            close("dinp", &dinp_g, &dinp_w);
            // entries above the diagonal of the scratch are not part of the contract
            for bh in 0..b * nh {
                for t1 in 0..t {
                    let r = bh * t * t + t1 * t;
                    close("datt", &datt_g[r..=r + t1], &datt_w[r..=r + t1]);
                    close("dpreatt", &dpre_g[r..=r + t1], &dpre_w[r..=r + t1]);
                }
            }
        }
    }
}
