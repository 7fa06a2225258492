//! The loss: softmax over the vocabulary, then cross-entropy against the next token, fused the way
//! llm.c's `fused_classifier` fuses them: no probabilities are ever stored.
//! Twin: `kernels/softmax_crossentropy.cu`.
//!
//! Logits are computed over the padded vocabulary Vp, but only the first V are real tokens: the
//! softmax ignores columns V..Vp (their probability is 0).
//!
//! The forward keeps one number per row, the log-sum-exp of its logits, lse = log(sum over j < V of
//! exp(logits[j])), so that the loss is lse - logits[target] and any probability is one step away:
//! p_j = exp(logits[j] - lse). The backward is then one pass over the logits that writes the
//! gradient of cross-entropy through the softmax, (p - one_hot(target)) · dloss, over them: the
//! logits are not needed after it (the LM head's backward reads the gradient in their place), so
//! the (B, T, Vp) tensor is stored once, not three times (logits, probs, dlogits). llm.c does the
//! whole of it in the forward, where its dloss is already known; here `backward` gets the loss scale
//! only when it runs, so the one pass that writes the gradient is the backward's.

use rayon::prelude::*;

/// losses (BT) = lse - logits[target] and lse (BT) = log(sum over the first V columns of
/// exp(logits)), from logits (BT, Vp) and targets (BT).
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
    for (i, row) in logits.chunks_exact(vp).enumerate() {
        // subtract the max before exponentiating, for numerical stability
        let maxval = row[..v].iter().fold(f32::NEG_INFINITY, |m, &x| m.max(x));
        let sum: f32 = row[..v].iter().map(|&x| (x - maxval).exp()).sum();
        lse[i] = maxval + sum.ln();
        // -log softmax(logits)[target] = lse - logits[target]
        losses[i] = lse[i] - row[targets[i] as usize];
    }
}

/// Fused backward of softmax + cross-entropy, written over the logits: logits (BT, Vp) holds the
/// logits on entry and dlogits on return, dlogits[j] = (p_j - [j == target]) · dlosses[row] with
/// p_j = exp(logits[j] - lse[row]) for the first V columns and 0 for the padded ones; dlosses (BT)
/// (1/(B*T) each for a mean loss), lse (BT) from the forward, targets (BT).
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
    logits.par_chunks_mut(vp).enumerate().for_each(|(i, row)| {
        let target = targets[i] as usize;
        for (j, x) in row.iter_mut().enumerate() {
            *x = if j < v {
                let p = (*x - lse[i]).exp();
                let indicator = if j == target { 1.0 } else { 0.0 };
                (p - indicator) * dlosses[i]
            } else {
                0.0 // padded columns are not tokens: no gradient
            };
        }
    });
}

// With `--features exercise-softmax_crossentropy`, your version from `exercises/softmax_crossentropy.rs` takes this one's place
// everywhere in the crate, and the gradient checks judge it: see EXERCISES.md.
#[cfg(feature = "exercise-softmax_crossentropy")]
pub use crate::exercises::softmax_crossentropy::crossentropy_softmax_backward;
