//! The residual connection: out = inp1 + inp2. Twin: `kernels/residual.cu`.

/// out (N) = inp1 (N) + inp2 (N).
pub fn residual_forward(out: &mut [f32], inp1: &[f32], inp2: &[f32]) {
    assert!(out.len() == inp1.len() && out.len() == inp2.len());
    for ((o, a), b) in out.iter_mut().zip(inp1).zip(inp2) {
        *o = a + b;
    }
}

/// Backward: an addition passes its gradient to both inputs unchanged. Accumulates (+=).
#[cfg(not(feature = "exercise-residual"))]
pub fn residual_backward(dinp1: &mut [f32], dinp2: &mut [f32], dout: &[f32]) {
    assert!(dinp1.len() == dout.len() && dinp2.len() == dout.len());
    for ((d1, d2), d) in dinp1.iter_mut().zip(dinp2.iter_mut()).zip(dout) {
        *d1 += d;
        *d2 += d;
    }
}

// With `--features exercise-residual`, your version from `exercises/residual.rs` takes this one's place
// everywhere in the crate, and the gradient checks judge it: see EXERCISES.md.
#[cfg(feature = "exercise-residual")]
pub use crate::exercises::residual::residual_backward;
