//! Exercise 3: GELU's backward. Reference: `src/cpu/gelu.rs`.
//! Judge: `cargo test --features exercise-gelu --test gradcheck gelu -- --nocapture`

/// The forward pass was, elementwise over N numbers,
///   out = 0.5 x (1 + tanh(u)),   u = sqrt(2/pi) (x + 0.044715 x^3)
///
/// Write: dinp (N) += gelu'(inp) * dout (N).
///
/// Hints:
/// - Product rule on 0.5 x (1 + tanh u): 0.5 (1 + tanh u) + 0.5 x d(tanh u)/dx.
/// - d(tanh u)/du = 1 - tanh^2 u, and du/dx = sqrt(2/pi) (1 + 3 * 0.044715 x^2): the 3 comes from
///   differentiating x^3. sqrt(2/pi) = 0.7978846.
/// - Accumulate (`+=`) into dinp.
pub fn gelu_backward(dinp: &mut [f32], inp: &[f32], dout: &[f32]) {
    todo!("exercise gelu_backward: write it in exercises/gelu.rs (see EXERCISES.md)")
}
