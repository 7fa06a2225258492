//! The embedding: each token's vector plus its position's vector.
//! Twin: `kernels/encoder.cu`.

/// out (B, T, C) = wte[inp[b, t]] + wpe[t], for tokens inp (B, T), wte (Vp, C), wpe (maxT, C).
pub fn encoder_forward(out: &mut [f32], inp: &[u32], wte: &[f32], wpe: &[f32], b: usize, t: usize, c: usize) {
    assert_eq!(out.len(), b * t * c);
    assert_eq!(inp.len(), b * t);
    for (bt, out_bt) in out.chunks_exact_mut(c).enumerate() {
        let pos = bt % t;
        let tok = inp[bt] as usize;
        let wte_row = &wte[tok * c..(tok + 1) * c];
        let wpe_row = &wpe[pos * c..(pos + 1) * c];
        for ((o, te), pe) in out_bt.iter_mut().zip(wte_row).zip(wpe_row) {
            *o = te + pe;
        }
    }
}

/// Backward of `encoder_forward`: the gradient of each output row flows, unchanged, into the
/// token's row of dwte and the position's row of dwpe. Accumulates (+=).
#[cfg(not(feature = "exercise-encoder"))]
pub fn encoder_backward(dwte: &mut [f32], dwpe: &mut [f32], dout: &[f32], inp: &[u32], b: usize, t: usize, c: usize) {
    assert_eq!(dout.len(), b * t * c);
    for (bt, dout_bt) in dout.chunks_exact(c).enumerate() {
        let pos = bt % t;
        let tok = inp[bt] as usize;
        for (dw, d) in dwte[tok * c..(tok + 1) * c].iter_mut().zip(dout_bt) {
            *dw += d;
        }
        for (dw, d) in dwpe[pos * c..(pos + 1) * c].iter_mut().zip(dout_bt) {
            *dw += d;
        }
    }
}

// With `--features exercise-encoder`, your version from `exercises/encoder.rs` takes this one's place
// everywhere in the crate, and the gradient checks judge it: see EXERCISES.md.
#[cfg(feature = "exercise-encoder")]
pub use crate::exercises::encoder::encoder_backward;
