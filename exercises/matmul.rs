//! Exercise 4: the linear layer's backward. Reference: `src/cpu/matmul.rs`.
//! Judge: `cargo test --features exercise-matmul --test gradcheck matmul -- --nocapture`

/// The forward pass was `out (BT, OC) = inp (BT, C) @ weight (OC, C)^T + bias (OC)`, that is
///   out[r, o] = bias[o] + sum_i inp[r, i] * weight[o, i].
///
/// Write, given dout (BT, OC):
///   dinp (BT, C)    += dout @ weight          dinp[r, i]    += sum_o dout[r, o] * weight[o, i]
///   dweight (OC, C) += dout^T @ inp           dweight[o, i] += sum_r dout[r, o] * inp[r, i]
///   dbias (OC)      += sum over rows of dout  (only when `dbias` is `Some`: the LM head has no bias)
///
/// Hints:
/// - Each formula is "what did this number multiply in the forward pass?".
/// - Row r of inp is `inp[r * c..(r + 1) * c]`, row o of weight is `weight[o * c..(o + 1) * c]`.
/// - Accumulate (`+=`): gradient accumulation over micro-batches relies on it.
pub fn matmul_backward(
    dinp: &mut [f32],
    dweight: &mut [f32],
    dbias: Option<&mut [f32]>,
    dout: &[f32],
    inp: &[f32],
    weight: &[f32],
    bt: usize,
    c: usize,
    oc: usize,
) {
    todo!("exercise matmul_backward: write it in exercises/matmul.rs (see EXERCISES.md)")
}
