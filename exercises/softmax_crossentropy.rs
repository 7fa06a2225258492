//! Exercise 6: softmax and cross-entropy's backward, fused. Reference: `src/cpu/softmax_crossentropy.rs`.
//! Judge: `cargo test --features exercise-softmax_crossentropy --test gradcheck crossentropy -- --nocapture`

/// The forward pass was, for each of the BT positions, probs = softmax(logits[..V]) (the padded
/// columns V..Vp stay 0) and loss = -log(probs[target]).
///
/// Write: dlogits (BT, Vp) += (probs - one_hot(target)) * dlosses[row], for the first V columns of
/// each row only, given dlosses (BT) (1/(B*T) each for a mean loss), probs (BT, Vp), targets (BT).
///
/// Hints:
/// - Through the softmax, d(-log p_target)/d(logit_j) = p_j - [j == target]: the softmax's Jacobian
///   and the log's derivative cancel into this short form. That is why the two are fused.
/// - Leave the padded columns j >= V alone: they are not real tokens.
pub fn crossentropy_softmax_backward(
    dlogits: &mut [f32],
    dlosses: &[f32],
    probs: &[f32],
    targets: &[u32],
    bt: usize,
    v: usize,
    vp: usize,
) {
    todo!("exercise crossentropy_softmax_backward: write it in exercises/softmax_crossentropy.rs (see EXERCISES.md)")
}
