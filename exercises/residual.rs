//! Exercise 1: the residual connection's backward. Reference: `src/cpu/residual.rs`.
//! Judge: `cargo test --features exercise-residual --test gradcheck residual -- --nocapture`

/// The forward pass was `out = inp1 + inp2`, elementwise over N numbers.
///
/// Write: dinp1 (N) += dout (N) and dinp2 (N) += dout (N).
///
/// Hints:
/// - d(out)/d(inp1) = 1 and d(out)/d(inp2) = 1: an addition hands its gradient to both inputs unchanged.
/// - Accumulate (`+=`), never overwrite (`=`): the same buffer also receives gradient from the other
///   path through the block (the residual stream has two readers), and the checks pre-fill it.
pub fn residual_backward(dinp1: &mut [f32], dinp2: &mut [f32], dout: &[f32]) {
    todo!("exercise residual_backward: write it in exercises/residual.rs (see EXERCISES.md)")
}
