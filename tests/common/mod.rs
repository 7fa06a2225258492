//! Helpers shared by the tests: random inputs, and (in `gradcheck.rs`) the finite-difference
//! gradient check.
#![allow(dead_code)]

pub mod gradcheck;

use gpt2::rng::Rng;

/// `n` values uniform in [-scale, scale).
pub fn random_vec(rng: &mut Rng, n: usize, scale: f32) -> Vec<f32> {
    (0..n).map(|_| (2.0 * rng.next_f32() - 1.0) * scale).collect()
}

/// `n` token ids in [0, vocab).
pub fn random_tokens(rng: &mut Rng, n: usize, vocab: usize) -> Vec<u32> {
    (0..n).map(|_| rng.below(vocab) as u32).collect()
}

/// Sum of `out * weights` in f64: a scalar "loss" whose gradient with respect to `out` is `weights`,
/// so any layer can be gradient-checked by back-propagating `weights` as dout.
pub fn weighted_sum(out: &[f32], weights: &[f32]) -> f64 {
    out.iter().zip(weights).map(|(&o, &w)| o as f64 * w as f64).sum()
}
