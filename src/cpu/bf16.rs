//! The layers in bf16 mixed precision, as `src/precision.rs` defines it: each one is the fp32 layer
//! of this folder (or of `fast/`), then one rounding of what it wrote to bf16. Read one and you have
//! read them all: the inputs a layer reads are already bf16 numbers (held in `f32` slots with the
//! low 16 bits zero), the layer computes and accumulates in fp32, and each value it writes to an
//! activation or an activation gradient is rounded once, when written. Parameter gradients
//! (dweight, dbias, dwte, dwpe) and the fp32 statistics (layernorm's mean and rstd, attention's
//! log-sum-exp per row, the vocabulary's log-sum-exp, the losses) are left in fp32.
//!
//! A backward pass adds (`+=`) into an activation gradient; rounding the whole buffer afterwards is
//! exactly "read the bf16 value, add the fp32 contribution, round the sum once", because the value
//! that was there before was bf16 already.
//!
//! The functions have the signatures of the fp32 layers, so `src/cpu/layers.rs` can hand either to
//! `gpt2.rs` and the model code does not change with the precision. The fast matmul is the exception
//! that does more than round: `fast/matmul/bf16.rs` packs its operands as 16-bit bf16 words.

use super::{attention, encoder, fast, gelu, layernorm, matmul, residual, softmax_crossentropy};
use crate::precision::round_slice_bf16 as round;

/// encoder_forward, then out (B,T,C) rounded to bf16 (wte and wpe are the bf16 copy).
pub fn encoder_forward(out: &mut [f32], inp: &[u32], wte: &[f32], wpe: &[f32], b: usize, t: usize, c: usize) {
    encoder::encoder_forward(out, inp, wte, wpe, b, t, c);
    round(out);
}

/// layernorm_forward, then out (BT,C) rounded; mean and rstd stay fp32.
pub fn layernorm_forward(
    out: &mut [f32],
    mean: &mut [f32],
    rstd: &mut [f32],
    inp: &[f32],
    weight: &[f32],
    bias: &[f32],
    bt: usize,
    c: usize,
) {
    layernorm::layernorm_forward(out, mean, rstd, inp, weight, bias, bt, c);
    round(out);
}

/// layernorm_backward, then dinp (BT,C) rounded; dweight and dbias stay fp32.
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
    layernorm::layernorm_backward(dinp, dweight, dbias, dout, inp, weight, mean, rstd, bt, c);
    round(dinp);
}

/// The readable matmul_forward (fp32 sums of bf16 products), then out (BT,OC) rounded.
pub fn matmul_forward(
    out: &mut [f32],
    inp: &[f32],
    weight: &[f32],
    bias: Option<&[f32]>,
    bt: usize,
    c: usize,
    oc: usize,
) {
    matmul::matmul_forward(out, inp, weight, bias, bt, c, oc);
    round(out);
}

/// The readable matmul_backward, then dinp (BT,C) rounded; dweight and dbias stay fp32.
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
    matmul::matmul_backward(dinp, dweight, dbias, dout, inp, weight, bt, c, oc);
    round(dinp);
}

/// attention_forward, then out (B,T,C) rounded; lse (B,NH,T), the softmax statistics, stays fp32.
pub fn attention_forward(out: &mut [f32], lse: &mut [f32], inp: &[f32], b: usize, t: usize, c: usize, nh: usize) {
    attention::attention_forward(out, lse, inp, b, t, c, nh);
    round(out);
}

/// attention_backward, then dinp (B,T,3C) rounded (delta, the per-row rowsum(dout * out), is fp32 scratch).
#[allow(clippy::too_many_arguments)]
pub fn attention_backward(
    dinp: &mut [f32],
    delta: &mut [f32],
    dout: &[f32],
    inp: &[f32],
    out: &[f32],
    lse: &[f32],
    b: usize,
    t: usize,
    c: usize,
    nh: usize,
) {
    attention::attention_backward(dinp, delta, dout, inp, out, lse, b, t, c, nh);
    round(dinp);
}

/// The fast attention_forward, then out rounded (as `attention_forward`).
pub fn fast_attention_forward(out: &mut [f32], lse: &mut [f32], inp: &[f32], b: usize, t: usize, c: usize, nh: usize) {
    fast::attention::attention_forward(out, lse, inp, b, t, c, nh);
    round(out);
}

/// The fast attention_backward, then dinp rounded (as `attention_backward`).
#[allow(clippy::too_many_arguments)]
pub fn fast_attention_backward(
    dinp: &mut [f32],
    delta: &mut [f32],
    dout: &[f32],
    inp: &[f32],
    out: &[f32],
    lse: &[f32],
    b: usize,
    t: usize,
    c: usize,
    nh: usize,
) {
    fast::attention::attention_backward(dinp, delta, dout, inp, out, lse, b, t, c, nh);
    round(dinp);
}

/// residual_forward, then out rounded: the residual stream is bf16.
pub fn residual_forward(out: &mut [f32], inp1: &[f32], inp2: &[f32]) {
    residual::residual_forward(out, inp1, inp2);
    round(out);
}

/// residual_backward, then both input gradients rounded.
pub fn residual_backward(dinp1: &mut [f32], dinp2: &mut [f32], dout: &[f32]) {
    residual::residual_backward(dinp1, dinp2, dout);
    round(dinp1);
    round(dinp2);
}

/// gelu_forward, then out rounded.
pub fn gelu_forward(out: &mut [f32], inp: &[f32]) {
    gelu::gelu_forward(out, inp);
    round(out);
}

/// gelu_backward, then dinp rounded.
pub fn gelu_backward(dinp: &mut [f32], inp: &[f32], dout: &[f32]) {
    gelu::gelu_backward(dinp, inp, dout);
    round(dinp);
}

/// The fast gelu_forward, then out rounded.
pub fn fast_gelu_forward(out: &mut [f32], inp: &[f32]) {
    fast::gelu::gelu_forward(out, inp);
    round(out);
}

/// The fast gelu_backward, then dinp rounded.
pub fn fast_gelu_backward(dinp: &mut [f32], inp: &[f32], dout: &[f32]) {
    fast::gelu::gelu_backward(dinp, inp, dout);
    round(dinp);
}

/// crossentropy_softmax_backward (dlogits written over the bf16 logits, from the fp32 lse), then
/// dlogits (BT,Vp) rounded. The forward (losses and lse) needs no bf16 version: it reads the bf16
/// logits and computes, and keeps, fp32.
pub fn crossentropy_softmax_backward(
    logits: &mut [f32],
    dlosses: &[f32],
    lse: &[f32],
    targets: &[u32],
    bt: usize,
    v: usize,
    vp: usize,
) {
    softmax_crossentropy::crossentropy_softmax_backward(logits, dlosses, lse, targets, bt, v, vp);
    round(logits);
}

/// The fast crossentropy_softmax_backward, then dlogits rounded (as `crossentropy_softmax_backward`).
pub fn fast_crossentropy_softmax_backward(
    logits: &mut [f32],
    dlosses: &[f32],
    lse: &[f32],
    targets: &[u32],
    bt: usize,
    v: usize,
    vp: usize,
) {
    fast::softmax_crossentropy::crossentropy_softmax_backward(logits, dlosses, lse, targets, bt, v, vp);
    round(logits);
}
