//! Causal multi-head self-attention (https://arxiv.org/abs/1706.03762), GPT-2 style, computed the
//! way flash attention computes it (https://arxiv.org/abs/2205.14135, https://arxiv.org/abs/2307.08691).
//! Twin: `kernels/attention.cu`.
//!
//! The input is the qkv projection (B, T, 3C): for each position, its query, key and value vectors
//! side by side, each of C channels split into NH heads of hs = C/NH channels. For each head,
//! position t1 attends to positions 0..=t1 (causal): its weights are p[t2] = softmax(s)[t2] over the
//! scores s[t2] = q_t1 . k_t2 / sqrt(hs), and its output is the weighted sum of the values.
//!
//! No (T, T) matrix of scores or weights is kept, here or on the GPU. The forward keeps, besides the
//! output, one number per row: the log-sum-exp of its scores, lse = log(sum over t2 of exp(s[t2])),
//! from which any weight can be recomputed in one step: p[t2] = exp(s[t2] - lse). The backward does
//! exactly that, recomputing each score from q and k when it needs it. For GPT-2 small at T = 1024
//! that turns 4 · L·B·NH·T·T floats (the old preatt, att and their gradients: 52% of all training
//! memory) into L·B·NH·T.
//!
//! The forward walks the keys of a row once, with the "online softmax": it keeps the largest score
//! seen so far (m), the sum of exp(s - m) so far (l) and the output so far (o, unnormalized), and
//! when a larger score arrives it rescales l and o by exp(m_old - m_new). At the end o / l is the
//! output and m + ln(l) the log-sum-exp. The GPU kernel does the same over tiles of 32 keys.

/// The offset of the query (part 0), key (1) or value (2) vector of head h at position (b, t) in
/// inp (B, T, 3C).
fn qkv_offset(b: usize, t: usize, part: usize, h: usize, seq: usize, c: usize, hs: usize) -> usize {
    (b * seq + t) * 3 * c + part * c + h * hs
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// out (B, T, C) and lse (B, NH, T), the log-sum-exp of each row's scores, from inp (B, T, 3C).
#[allow(clippy::too_many_arguments)]
pub fn attention_forward(out: &mut [f32], lse: &mut [f32], inp: &[f32], b: usize, t: usize, c: usize, nh: usize) {
    let hs = c / nh;
    let scale = 1.0 / (hs as f32).sqrt();
    assert_eq!(inp.len(), b * t * 3 * c);
    assert_eq!(out.len(), b * t * c);
    assert_eq!(lse.len(), b * nh * t);
    for bi in 0..b {
        for h in 0..nh {
            for t1 in 0..t {
                let q = &inp[qkv_offset(bi, t1, 0, h, t, c, hs)..][..hs];
                // the output row doubles as the running (unnormalized) weighted sum o
                let o = &mut out[(bi * t + t1) * c + h * hs..][..hs];
                o.fill(0.0);
                let (mut m, mut l) = (f32::NEG_INFINITY, 0.0f32);
                for t2 in 0..=t1 {
                    let k = &inp[qkv_offset(bi, t2, 1, h, t, c, hs)..][..hs];
                    let v = &inp[qkv_offset(bi, t2, 2, h, t, c, hs)..][..hs];
                    let s = dot(q, k) * scale;
                    // a new maximum: what was summed so far was relative to the old one, rescale it
                    let m_new = m.max(s);
                    let correction = (m - m_new).exp(); // exp(-inf) = 0 for the first key
                    let p = (s - m_new).exp();
                    l = l * correction + p;
                    for (oi, vi) in o.iter_mut().zip(v) {
                        *oi = *oi * correction + p * vi;
                    }
                    m = m_new;
                }
                // normalize: the weights exp(s - m) / l sum to 1
                for oi in o.iter_mut() {
                    *oi /= l;
                }
                lse[(bi * nh + h) * t + t1] = m + l.ln();
            }
        }
    }
}

/// The decode step of `attention_forward`: one new row, at position t - 1, attending over the keys
/// and values of positions 0..t kept in a KV cache (its own included), so that generating a token
/// costs one row of attention instead of recomputing all t. out (C) and lse (NH) from the new row's
/// query q (C) and the cache's k and v, (t, C) each (rows t.. of a longer cache are not read).
/// The same arithmetic in the same order as `attention_forward`'s row t - 1 (the online softmax),
/// so the two agree to the bit: `tests/sample.rs` checks it.
#[allow(clippy::too_many_arguments)]
pub fn attention_decode(
    out: &mut [f32],
    lse: &mut [f32],
    q: &[f32],
    k: &[f32],
    v: &[f32],
    t: usize,
    c: usize,
    nh: usize,
) {
    let hs = c / nh;
    let scale = 1.0 / (hs as f32).sqrt();
    assert!(t >= 1 && k.len() >= t * c && v.len() >= t * c, "the cache holds fewer than {t} positions");
    assert_eq!(q.len(), c);
    assert_eq!(out.len(), c);
    assert_eq!(lse.len(), nh);
    for h in 0..nh {
        let q = &q[h * hs..(h + 1) * hs];
        // the output row doubles as the running (unnormalized) weighted sum o
        let o = &mut out[h * hs..(h + 1) * hs];
        o.fill(0.0);
        let (mut m, mut l) = (f32::NEG_INFINITY, 0.0f32);
        for t2 in 0..t {
            let k = &k[t2 * c + h * hs..][..hs];
            let v = &v[t2 * c + h * hs..][..hs];
            let s = dot(q, k) * scale;
            // a new maximum: what was summed so far was relative to the old one, rescale it
            let m_new = m.max(s);
            let correction = (m - m_new).exp();
            let p = (s - m_new).exp();
            l = l * correction + p;
            for (oi, vi) in o.iter_mut().zip(v) {
                *oi = *oi * correction + p * vi;
            }
            m = m_new;
        }
        // normalize: the weights exp(s - m) / l sum to 1
        for oi in o.iter_mut() {
            *oi /= l;
        }
        lse[h] = m + l.ln();
    }
}

/// Backward of `attention_forward`. Accumulates (+=) into dinp (B, T, 3C) from dout (B, T, C), given
/// the forward's input inp (B, T, 3C), output out (B, T, C) and log-sum-exps lse (B, NH, T). delta
/// (B, NH, T) is scratch space that this function overwrites (the GPU computes it in a pass of its
/// own): delta[t1] = dout_t1 . out_t1.
///
/// For each row t1 and key t2 <= t1, with the weight p = exp(s - lse) recomputed from the score s:
///   forward: out_t1 = sum over t2 of p[t2] v_t2      backward: dv_t2 += p dout_t1, dp = dout_t1 . v_t2
///   forward: p = softmax(s)                           backward: ds = p (dp - sum over t2 of p dp)
///   forward: s = q_t1 . k_t2 * scale                  backward: dq_t1 += ds scale k_t2, dk_t2 += ds scale q_t1
/// and the softmax's sum over the row, sum of p[t2] (dout_t1 . v_t2) = dout_t1 . out_t1, is delta.
#[cfg(not(feature = "exercise-attention"))]
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
    let hs = c / nh;
    let scale = 1.0 / (hs as f32).sqrt();
    assert_eq!(dinp.len(), b * t * 3 * c);
    assert_eq!(inp.len(), b * t * 3 * c);
    assert_eq!(dout.len(), b * t * c);
    assert_eq!(out.len(), b * t * c);
    assert_eq!(lse.len(), b * nh * t);
    assert_eq!(delta.len(), b * nh * t);
    // delta = rowsum(dout * out), per head
    for bi in 0..b {
        for h in 0..nh {
            for t1 in 0..t {
                let at = (bi * t + t1) * c + h * hs;
                delta[(bi * nh + h) * t + t1] = dot(&dout[at..at + hs], &out[at..at + hs]);
            }
        }
    }
    for bi in 0..b {
        for h in 0..nh {
            for t1 in 0..t {
                let row = (bi * nh + h) * t + t1;
                let dout_h = &dout[(bi * t + t1) * c + h * hs..][..hs];
                let q_off = qkv_offset(bi, t1, 0, h, t, c, hs);
                for t2 in 0..=t1 {
                    let (k_off, v_off) = (qkv_offset(bi, t2, 1, h, t, c, hs), qkv_offset(bi, t2, 2, h, t, c, hs));
                    // recompute the weight from the score and the row's log-sum-exp
                    let s = dot(&inp[q_off..q_off + hs], &inp[k_off..k_off + hs]) * scale;
                    let p = (s - lse[row]).exp();
                    // backward of out = sum p v
                    let dp = dot(dout_h, &inp[v_off..v_off + hs]);
                    for i in 0..hs {
                        dinp[v_off + i] += p * dout_h[i];
                    }
                    // backward of the softmax, then of the scaled dot product
                    let ds = p * (dp - delta[row]) * scale;
                    for i in 0..hs {
                        dinp[q_off + i] += ds * inp[k_off + i];
                        dinp[k_off + i] += ds * inp[q_off + i];
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
