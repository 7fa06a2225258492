//! Exercise 7: causal self-attention's backward, the hardest. Reference: `src/cpu/attention.rs`
//! (read its forward first: the backward below undoes it step by step, backwards).
//! Judge: `cargo test --features exercise-attention --test gradcheck attention -- --nocapture`

/// The forward pass, for each batch b, head h (of NH, head size hs = C/NH) and position t1:
///   1. s[t2] = (q[t1] . k[t2]) * scale,  scale = 1/sqrt(hs), for t2 <= t1 (causal)
///   2. p[t2] = softmax(s)[t2] = exp(s[t2] - lse[t1]), lse[t1] = log(sum over t2 <= t1 of exp(s[t2]))
///   3. out[t1] = sum over t2 <= t1 of p[t2] * v[t2]
/// where inp (B, T, 3C) holds q, k, v side by side: q of head h at position t is
/// inp[(b*T + t)*3C + 0*C + h*hs ..][..hs], k at +1*C, v at +2*C; out is (B, T, C) (head h at
/// out[(b*T + t)*C + h*hs ..][..hs]) and lse is (B, NH, T). No (T, T) matrix was kept: recompute
/// each score and weight from q, k and lse when you need it.
///
/// Write: dinp (B, T, 3C) += the gradients of q, k and v. delta (B, NH, T) is your scratch space:
/// overwrite it (the hint says with what).
///
/// Hints (go backwards through 3, 2, 1):
/// - From 3: dp[t2] = dout[t1] . v[t2], and dv[t2] += p[t2] * dout[t1].
/// - From 2 (softmax backward, per row): ds[t2] = p[t2] * (dp[t2] - sum_j p[j] dp[j]); that sum is
///   dout[t1] . out[t1] (why?): compute it once per row into delta.
/// - From 1: dq[t1] += ds[t2] * scale * k[t2], dk[t2] += ds[t2] * scale * q[t1].
/// - Only t2 <= t1 ever took part: skip the masked entries.
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
    todo!("exercise attention_backward: write it in exercises/attention.rs (see EXERCISES.md)")
}
