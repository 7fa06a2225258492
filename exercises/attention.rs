//! Exercise 7: causal self-attention's backward, the hardest. Reference: `src/cpu/attention.rs`
//! (read its forward first: the four passes below are its four passes, backwards).
//! Judge: `cargo test --features exercise-attention --test gradcheck attention -- --nocapture`

/// The forward pass, for each batch b, head h (of NH, head size hs = C/NH) and position t1:
///   1. preatt[t1, t2] = (q[t1] . k[t2]) * scale,  scale = 1/sqrt(hs), for t2 <= t1 (causal)
///   2. att[t1, :] = softmax(preatt[t1, ..=t1])
///   3. out[t1] = sum over t2 <= t1 of att[t1, t2] * v[t2]
/// where inp (B, T, 3C) holds q, k, v side by side: q of head h at position t is
/// inp[(b*T + t)*3C + 0*C + h*hs ..][..hs], k at +1*C, v at +2*C. att and preatt are (B, NH, T, T).
///
/// Write: dinp (B, T, 3C) += the gradients of q, k and v. dpreatt and datt (B, NH, T, T) are your
/// scratch space: overwrite them.
///
/// Hints (go backwards through 3, 2, 1):
/// - From 3: datt[t1, t2] = dout[t1] . v[t2], and dv[t2] += att[t1, t2] * dout[t1].
/// - From 2 (softmax backward, per row): dpreatt[t1, t2] = att[t1, t2] * (datt[t1, t2] - sum_j att[t1, j] datt[t1, j]).
/// - From 1: dq[t1] += dpreatt[t1, t2] * scale * k[t2], dk[t2] += dpreatt[t1, t2] * scale * q[t1].
/// - Only t2 <= t1 ever took part: skip the masked entries.
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
    todo!("exercise attention_backward: write it in exercises/attention.rs (see EXERCISES.md)")
}
