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

/// Compares named buffers bit for bit and names the first that differs, where, and by how much;
/// when the differing buffer holds exactly another field's expected values, says so (two fields
/// swapped or one written twice). `what` says what is being compared ("the checkpoint", ...).
pub fn compare_fields(what: &str, fields: &[(&str, &[f32], &[f32])]) -> Result<(), String> {
    for &(name, got, want) in fields {
        if got.len() != want.len() {
            return Err(format!("{what}: `{name}` has {} values, expected {}", got.len(), want.len()));
        }
        let bits = |x: &[f32]| x.iter().map(|v| v.to_bits()).collect::<Vec<u32>>();
        let Some(i) = got.iter().zip(want).position(|(g, w)| g.to_bits() != w.to_bits()) else { continue };
        let n_diff = got.iter().zip(want).filter(|(g, w)| g.to_bits() != w.to_bits()).count();
        let mut msg = format!(
            "{what}: `{name}` differs in {n_diff} of {} values, first at index {i}: got {}, expected {}",
            got.len(),
            got[i],
            want[i]
        );
        if let Some(&(other, _, _)) = fields.iter().find(|(o, _, w)| *o != name && bits(w) == bits(got)) {
            msg += &format!(
                " (`{name}` holds exactly the expected `{other}`: are they swapped, or `{other}` written twice?)"
            );
        }
        return Err(msg);
    }
    Ok(())
}
