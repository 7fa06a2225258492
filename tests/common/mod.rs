//! Helpers shared by the tests: random inputs and the finite-difference gradient check.
#![allow(dead_code)]

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

/// Compares an analytic gradient with central finite differences (f(x+h) - f(x-h)) / 2h, element by
/// element. `loss_at(i, delta)` must return the loss with element i of the tensor moved by delta.
/// Prints one table row and returns the relative error ||a - n|| / (||a|| + ||n||).
pub fn gradcheck(name: &str, analytic: &[f32], h: f32, mut loss_at: impl FnMut(usize, f32) -> f64) -> f64 {
    let mut numeric = vec![0.0f64; analytic.len()];
    for (i, num) in numeric.iter_mut().enumerate() {
        *num = (loss_at(i, h) - loss_at(i, -h)) / (2.0 * h as f64);
    }
    let max_a = analytic.iter().fold(0.0f64, |m, &a| m.max((a as f64).abs()));
    let max_n = numeric.iter().fold(0.0f64, |m, &n| m.max(n.abs()));
    let max_diff = analytic.iter().zip(&numeric).fold(0.0f64, |m, (&a, &n)| m.max((a as f64 - n).abs()));
    let diff_norm = analytic.iter().zip(&numeric).map(|(&a, &n)| (a as f64 - n).powi(2)).sum::<f64>().sqrt();
    let a_norm = analytic.iter().map(|&a| (a as f64).powi(2)).sum::<f64>().sqrt();
    let n_norm = numeric.iter().map(|n| n.powi(2)).sum::<f64>().sqrt();
    let rel = if a_norm + n_norm == 0.0 { 0.0 } else { diff_norm / (a_norm + n_norm) };
    println!("{name:>12} | {:>6} | {max_a:>12.6e} | {max_n:>12.6e} | {max_diff:>10.3e} | {rel:>9.2e}", analytic.len());
    rel
}

/// The header of the table `gradcheck` prints rows of.
pub fn gradcheck_header(what: &str) {
    println!("\n{what}");
    println!(
        "{:>12} | {:>6} | {:>12} | {:>12} | {:>10} | {:>9}",
        "tensor", "n", "max|analytic|", "max|numeric|", "max diff", "rel error"
    );
}
