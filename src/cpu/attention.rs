//! Causal multi-head self-attention (https://arxiv.org/abs/1706.03762), GPT-2 style.
//! Twin: `kernels/attention.cu`.
//!
//! The input is the qkv projection (B, T, 3C): for each position, its query, key and value vectors
//! side by side, each of C channels split into NH heads of hs = C/NH channels. For each head,
//! position t attends to positions 0..=t (causal): its weights are softmax(q_t . k_t2 / sqrt(hs)),
//! and its output is the weighted sum of the values. preatt and att (B, NH, T, T) keep the scores
//! before and after the softmax for the backward pass; entries above the diagonal are unused (0).

use rayon::prelude::*;

/// out (B, T, C), preatt (B, NH, T, T), att (B, NH, T, T) from inp (B, T, 3C).
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
    assert_eq!(att.len(), b * nh * t * t);
    // each (batch, head) pair is independent: one parallel task each
    preatt.par_chunks_mut(t * t).zip(att.par_chunks_mut(t * t)).enumerate().for_each(|(bh, (preatt_bh, att_bh))| {
        let (bi, h) = (bh / nh, bh % nh);
        // the query, key and value vectors of position t2, head h
        let q = |t2: usize| &inp[(bi * t + t2) * 3 * c + h * hs..][..hs];
        let k = |t2: usize| &inp[(bi * t + t2) * 3 * c + c + h * hs..][..hs];
        for t1 in 0..t {
            let preatt_row = &mut preatt_bh[t1 * t..(t1 + 1) * t];
            let att_row = &mut att_bh[t1 * t..(t1 + 1) * t];
            // pass 1: scores q.k / sqrt(hs) and their maximum
            let mut maxval = f32::NEG_INFINITY;
            for t2 in 0..=t1 {
                let score = q(t1).iter().zip(k(t2)).map(|(a, b)| a * b).sum::<f32>() * scale;
                preatt_row[t2] = score;
                maxval = maxval.max(score);
            }
            // pass 2: exponentiate (minus the max, for stability) and sum
            let mut expsum = 0.0;
            for t2 in 0..=t1 {
                let e = (preatt_row[t2] - maxval).exp();
                att_row[t2] = e;
                expsum += e;
            }
            // pass 3: normalize to get the softmax; the future stays 0 (causal mask)
            for t2 in 0..t {
                att_row[t2] = if t2 <= t1 { att_row[t2] / expsum } else { 0.0 };
                if t2 > t1 {
                    preatt_row[t2] = 0.0;
                }
            }
        }
    });
    // pass 4: out = att @ v, parallel over positions
    out.par_chunks_mut(c).enumerate().for_each(|(bt1, out_bt)| {
        let (bi, t1) = (bt1 / t, bt1 % t);
        for h in 0..nh {
            let att_row = &att[((bi * nh + h) * t + t1) * t..][..t];
            let out_h = &mut out_bt[h * hs..(h + 1) * hs];
            out_h.fill(0.0);
            for (t2, &a) in att_row.iter().enumerate().take(t1 + 1) {
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
#[cfg(not(feature = "exercise-attention"))]
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
    let hs = c / nh;
    let scale = 1.0 / (hs as f32).sqrt();
    assert_eq!(dinp.len(), b * t * 3 * c);
    for bi in 0..b {
        for h in 0..nh {
            let bh = bi * nh + h;
            let att_bh = &att[bh * t * t..(bh + 1) * t * t];
            let datt_bh = &mut datt[bh * t * t..(bh + 1) * t * t];
            let dpreatt_bh = &mut dpreatt[bh * t * t..(bh + 1) * t * t];
            let offset = |t2: usize, part: usize| (bi * t + t2) * 3 * c + part * c + h * hs;
            for t1 in 0..t {
                let dout_h = &dout[(bi * t + t1) * c + h * hs..][..hs];
                // backward of pass 4 (out = att @ v): datt = dout . v, dv += att * dout
                for t2 in 0..=t1 {
                    let v_off = offset(t2, 2);
                    let mut d = 0.0;
                    for i in 0..hs {
                        d += inp[v_off + i] * dout_h[i];
                        dinp[v_off + i] += att_bh[t1 * t + t2] * dout_h[i];
                    }
                    datt_bh[t1 * t + t2] = d;
                }
                // backward of the softmax: dpreatt = att * (datt - sum(att * datt))
                let row = t1 * t;
                let dot: f32 = (0..=t1).map(|t2| att_bh[row + t2] * datt_bh[row + t2]).sum();
                for t2 in 0..=t1 {
                    dpreatt_bh[row + t2] = att_bh[row + t2] * (datt_bh[row + t2] - dot);
                }
                // backward of the scores q.k * scale: dq += dpreatt * k * scale, dk += dpreatt * q * scale
                let q_off = offset(t1, 0);
                for t2 in 0..=t1 {
                    let k_off = offset(t2, 1);
                    let d = dpreatt_bh[row + t2] * scale;
                    for i in 0..hs {
                        dinp[q_off + i] += inp[k_off + i] * d;
                        dinp[k_off + i] += inp[q_off + i] * d;
                    }
                }
            }
        }
    }
}

// With `--features exercise-attention`, your version from `exercises/attention.rs` takes this one's place
// everywhere in the crate, and the gradient checks judge it: see EXERCISES.md.
#[cfg(feature = "exercise-attention")]
pub use crate::exercises::attention::attention_backward;
