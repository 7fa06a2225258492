//! Matrix multiply with bias: the linear layer, `out = inp @ weight^T + bias`.
//! Twin: `kernels/matmul.cu`. The faster blocked version is `src/cpu/fast/matmul/`, tested against this one.
//!
//! Four of these sit in every block (qkv, attention projection, fc, fc projection) and one more is
//! the LM head, so they are nearly all of the FLOPs. Weights are stored (out, in), like torch's
//! `nn.Linear`, so each output is a dot product of an input row with a weight row.

use rayon::prelude::*;

/// out (BT, OC) = inp (BT, C) @ weight (OC, C)^T + bias (OC).
/// Rows of `out` are independent, so they are computed in parallel.
pub fn matmul_forward(
    out: &mut [f32],
    inp: &[f32],
    weight: &[f32],
    bias: Option<&[f32]>,
    bt: usize,
    c: usize,
    oc: usize,
) {
    assert_eq!(out.len(), bt * oc);
    assert_eq!(inp.len(), bt * c);
    assert_eq!(weight.len(), oc * c);
    out.par_chunks_mut(oc).zip(inp.par_chunks(c)).for_each(|(out_row, inp_row)| {
        for (o, w_row) in weight.chunks_exact(c).enumerate() {
            // one output: a dot product of the input row with weight row o
            let mut val = bias.map_or(0.0, |b| b[o]);
            for (x, w) in inp_row.iter().zip(w_row) {
                val += x * w;
            }
            out_row[o] = val;
        }
    });
}

/// Backward of `matmul_forward`. Accumulates (+=) into dinp (BT, C), dweight (OC, C) and dbias (OC),
/// given dout (BT, OC):
///   dinp    += dout @ weight        (each input feeds every output through its weight)
///   dweight += dout^T @ inp         (each weight sees every row that passed through it)
///   dbias   += sum over rows of dout
#[cfg(not(feature = "exercise-matmul"))]
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
    assert_eq!(dinp.len(), bt * c);
    assert_eq!(dweight.len(), oc * c);
    assert_eq!(dout.len(), bt * oc);
    // dinp: parallel over rows, each row of dinp is a sum of weight rows scaled by dout
    dinp.par_chunks_mut(c).zip(dout.par_chunks(oc)).for_each(|(dinp_row, dout_row)| {
        for (d, w_row) in dout_row.iter().zip(weight.chunks_exact(c)) {
            for (di, w) in dinp_row.iter_mut().zip(w_row) {
                *di += d * w;
            }
        }
    });
    // dweight: parallel over output channels, each row sums over all input rows
    dweight.par_chunks_mut(c).enumerate().for_each(|(o, dw_row)| {
        for (dout_row, inp_row) in dout.chunks_exact(oc).zip(inp.chunks_exact(c)) {
            let d = dout_row[o];
            for (dw, x) in dw_row.iter_mut().zip(inp_row) {
                *dw += d * x;
            }
        }
    });
    // dbias: the sum of dout over rows
    if let Some(dbias) = dbias {
        assert_eq!(dbias.len(), oc);
        dbias.par_iter_mut().enumerate().for_each(|(o, db)| {
            *db += dout.chunks_exact(oc).map(|row| row[o]).sum::<f32>();
        });
    }
}

// With `--features exercise-matmul`, your version from `exercises/matmul.rs` takes this one's place
// everywhere in the crate, and the gradient checks judge it: see EXERCISES.md.
#[cfg(feature = "exercise-matmul")]
pub use crate::exercises::matmul::matmul_backward;
