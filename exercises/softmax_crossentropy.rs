//! Exercise 6: softmax and cross-entropy's backward, fused. Reference: `src/cpu/softmax_crossentropy.rs`.
//! Judge: `cargo test --features exercise-softmax_crossentropy --test gradcheck crossentropy -- --nocapture`

/// The forward pass was, for each of the BT positions, lse = log(sum over j < V of exp(logits[j]))
/// (the padded columns V..Vp are not tokens) and loss = lse - logits[target] = -log(softmax[target]).
/// No probabilities were stored: p_j = exp(logits[j] - lse) is one step away.
///
/// Write, over the logits (BT, Vp) you are given (they are not needed afterwards, and this saves a
/// tensor as large as they are): logits[j] = (p_j - one_hot(target)_j) * dlosses[row] for the first V
/// columns of each row and 0 for the padded ones, given dlosses (BT) (1/(B*T) each for a mean loss),
/// lse (BT) and targets (BT).
///
/// Hints:
/// - Through the softmax, d(-log p_target)/d(logit_j) = p_j - [j == target]: the softmax's Jacobian
///   and the log's derivative cancel into this short form. That is why the two are fused.
/// - Read each logit before you overwrite it with its gradient.
pub fn crossentropy_softmax_backward(
    logits: &mut [f32],
    dlosses: &[f32],
    lse: &[f32],
    targets: &[u32],
    bt: usize,
    v: usize,
    vp: usize,
) {
    todo!("exercise crossentropy_softmax_backward: write it in exercises/softmax_crossentropy.rs (see EXERCISES.md)")
}
