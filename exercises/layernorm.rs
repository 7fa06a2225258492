//! Exercise 5: layernorm's backward. Reference: `src/cpu/layernorm.rs`; the derivation is in
//! llm.c's `doc/layernorm/layernorm.md` and in notebook 3.
//! Judge: `cargo test --features exercise-layernorm --test gradcheck layernorm -- --nocapture`

/// The forward pass was, for each row r of C numbers x = inp[r, :]:
///   mean = sum(x) / C,  rstd = 1 / sqrt(sum((x - mean)^2) / C + 1e-5)
///   norm = (x - mean) * rstd,  out = norm * weight + bias
/// and it saved mean (BT) and rstd (BT) for you.
///
/// Write, given dout (BT, C): dinp (BT, C) +=, dweight (C) +=, dbias (C) +=.
///
/// Hints:
/// - dbias[i] += dout[r, i] and dweight[i] += norm[r, i] * dout[r, i], summed over rows r.
/// - Let dnorm = dout * weight. Because mean and rstd depend on every x of the row, dinp is not just
///   dnorm * rstd: it is rstd * (dnorm - mean(dnorm) - norm * mean(dnorm * norm)), with both means
///   over the C numbers of the row.
/// - Recompute norm from x, mean and rstd rather than storing it.
pub fn layernorm_backward(
    dinp: &mut [f32],
    dweight: &mut [f32],
    dbias: &mut [f32],
    dout: &[f32],
    inp: &[f32],
    weight: &[f32],
    mean: &[f32],
    rstd: &[f32],
    bt: usize,
    c: usize,
) {
    todo!("exercise layernorm_backward: write it in exercises/layernorm.rs (see EXERCISES.md)")
}
