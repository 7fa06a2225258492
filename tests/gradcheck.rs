//! Gradient checks: every layer's backward pass, and the whole model's, against central finite
//! differences. Run `cargo test --test gradcheck -- --nocapture` to see, for each tensor, the
//! largest analytic and numeric gradient and how far apart they are.
//!
//! How it works: to check a layer y = f(x, w), take the scalar loss L = sum(y * r) for fixed
//! random r. Then dL/dy = r, so running the layer's backward with dout = r gives dL/dx and dL/dw,
//! and each can be compared with (L(x + h) - L(x - h)) / 2h, one element at a time.
//!
//! Tolerance: everything is f32 (about 7 significant digits). With h = 1e-2..1e-3 the finite
//! difference has rounding error around 1e-7 * |L| / h plus truncation error O(h^2), so we ask for a
//! relative error (over the whole tensor) below 1e-2; a wrong backward pass (a missing term, a
//! transposed index) gives errors of order 1.

mod common;
use common::*;
use gpt2::config::ModelConfig;
use gpt2::cpu::softmax_crossentropy::*;
use gpt2::cpu::{attention::*, encoder::*, gelu::*, gpt2::Gpt2, layernorm::*, matmul::*, residual::*};
use gpt2::model::{init::gpt2_init, ParamLayout, PARAM_NAMES};
use gpt2::rng::Rng;

const TOLERANCE: f64 = 1e-2;

#[test]
fn matmul_backward_matches_finite_differences() {
    let (bt, c, oc) = (5, 7, 3);
    let mut rng = Rng::new(1);
    let inp = random_vec(&mut rng, bt * c, 1.0);
    let weight = random_vec(&mut rng, oc * c, 1.0);
    let bias = random_vec(&mut rng, oc, 1.0);
    let r = random_vec(&mut rng, bt * oc, 1.0);
    let loss = |inp: &[f32], weight: &[f32], bias: &[f32]| {
        let mut out = vec![0.0; bt * oc];
        matmul_forward(&mut out, inp, weight, Some(bias), bt, c, oc);
        weighted_sum(&out, &r)
    };
    let (mut dinp, mut dweight, mut dbias) = (vec![0.0; bt * c], vec![0.0; oc * c], vec![0.0; oc]);
    matmul_backward(&mut dinp, &mut dweight, Some(&mut dbias), &r, &inp, &weight, bt, c, oc);
    gradcheck_header("matmul: out = inp @ weight^T + bias");
    let h = 1e-2;
    let e1 = gradcheck("inp", &dinp, h, |i, d| loss(&nudge(&inp, i, d), &weight, &bias));
    let e2 = gradcheck("weight", &dweight, h, |i, d| loss(&inp, &nudge(&weight, i, d), &bias));
    let e3 = gradcheck("bias", &dbias, h, |i, d| loss(&inp, &weight, &nudge(&bias, i, d)));
    assert!(e1.max(e2).max(e3) < TOLERANCE);
}

#[test]
fn layernorm_backward_matches_finite_differences() {
    let (bt, c) = (4, 9);
    let mut rng = Rng::new(2);
    let inp = random_vec(&mut rng, bt * c, 2.0);
    let weight = random_vec(&mut rng, c, 1.0);
    let bias = random_vec(&mut rng, c, 1.0);
    let r = random_vec(&mut rng, bt * c, 1.0);
    let run = |inp: &[f32], weight: &[f32], bias: &[f32]| {
        let (mut out, mut mean, mut rstd) = (vec![0.0; bt * c], vec![0.0; bt], vec![0.0; bt]);
        layernorm_forward(&mut out, &mut mean, &mut rstd, inp, weight, bias, bt, c);
        (weighted_sum(&out, &r), mean, rstd)
    };
    let (_, mean, rstd) = run(&inp, &weight, &bias);
    let (mut dinp, mut dweight, mut dbias) = (vec![0.0; bt * c], vec![0.0; c], vec![0.0; c]);
    layernorm_backward(&mut dinp, &mut dweight, &mut dbias, &r, &inp, &weight, &mean, &rstd, bt, c);
    gradcheck_header("layernorm");
    let h = 1e-2;
    let e1 = gradcheck("inp", &dinp, h, |i, d| run(&nudge(&inp, i, d), &weight, &bias).0);
    let e2 = gradcheck("weight", &dweight, h, |i, d| run(&inp, &nudge(&weight, i, d), &bias).0);
    let e3 = gradcheck("bias", &dbias, h, |i, d| run(&inp, &weight, &nudge(&bias, i, d)).0);
    assert!(e1.max(e2).max(e3) < TOLERANCE);
}

#[test]
fn attention_backward_matches_finite_differences() {
    let (b, t, c, nh) = (2, 5, 6, 2);
    let mut rng = Rng::new(3);
    let inp = random_vec(&mut rng, b * t * 3 * c, 1.0);
    let r = random_vec(&mut rng, b * t * c, 1.0);
    let att_size = b * nh * t * t;
    let run = |inp: &[f32]| {
        let (mut out, mut preatt, mut att) = (vec![0.0; b * t * c], vec![0.0; att_size], vec![0.0; att_size]);
        attention_forward(&mut out, &mut preatt, &mut att, inp, b, t, c, nh);
        (weighted_sum(&out, &r), att)
    };
    let (_, att) = run(&inp);
    let mut dinp = vec![0.0; inp.len()];
    let (mut dpreatt, mut datt) = (vec![0.0; att_size], vec![0.0; att_size]);
    attention_backward(&mut dinp, &mut dpreatt, &mut datt, &r, &inp, &att, b, t, c, nh);
    gradcheck_header("causal self-attention");
    let e = gradcheck("qkv", &dinp, 1e-2, |i, d| run(&nudge(&inp, i, d)).0);
    assert!(e < TOLERANCE);
}

#[test]
fn gelu_backward_matches_finite_differences() {
    let mut rng = Rng::new(4);
    let inp = random_vec(&mut rng, 50, 4.0);
    let r = random_vec(&mut rng, 50, 1.0);
    let loss = |inp: &[f32]| {
        let mut out = vec![0.0; inp.len()];
        gelu_forward(&mut out, inp);
        weighted_sum(&out, &r)
    };
    let mut dinp = vec![0.0; 50];
    gelu_backward(&mut dinp, &inp, &r);
    gradcheck_header("GELU (tanh)");
    assert!(gradcheck("inp", &dinp, 1e-2, |i, d| loss(&nudge(&inp, i, d))) < TOLERANCE);
}

#[test]
fn residual_and_encoder_backward_match_finite_differences() {
    let (b, t, c, v, maxt) = (2, 3, 4, 7, 5);
    let mut rng = Rng::new(5);
    let tokens = random_tokens(&mut rng, b * t, v);
    let wte = random_vec(&mut rng, v * c, 1.0);
    let wpe = random_vec(&mut rng, maxt * c, 1.0);
    let r = random_vec(&mut rng, b * t * c, 1.0);
    let loss = |wte: &[f32], wpe: &[f32]| {
        let mut out = vec![0.0; b * t * c];
        encoder_forward(&mut out, &tokens, wte, wpe, b, t, c);
        // pass through a residual with itself: out + out
        let mut res = vec![0.0; out.len()];
        residual_forward(&mut res, &out, &out);
        weighted_sum(&res, &r)
    };
    let (mut d1, mut d2) = (vec![0.0; b * t * c], vec![0.0; b * t * c]);
    residual_backward(&mut d1, &mut d2, &r);
    let dout: Vec<f32> = d1.iter().zip(&d2).map(|(a, b)| a + b).collect();
    let (mut dwte, mut dwpe) = (vec![0.0; wte.len()], vec![0.0; wpe.len()]);
    encoder_backward(&mut dwte, &mut dwpe, &dout, &tokens, b, t, c);
    gradcheck_header("encoder + residual");
    let e1 = gradcheck("wte", &dwte, 1e-2, |i, d| loss(&nudge(&wte, i, d), &wpe));
    let e2 = gradcheck("wpe", &dwpe, 1e-2, |i, d| loss(&wte, &nudge(&wpe, i, d)));
    assert!(e1.max(e2) < TOLERANCE);
}

#[test]
fn softmax_crossentropy_backward_matches_finite_differences() {
    let (bt, v, vp) = (4, 11, 13);
    let mut rng = Rng::new(6);
    let logits = random_vec(&mut rng, bt * vp, 3.0);
    let targets = random_tokens(&mut rng, bt, v);
    let loss = |logits: &[f32]| {
        let (mut probs, mut losses) = (vec![0.0; bt * vp], vec![0.0; bt]);
        softmax_forward(&mut probs, logits, bt, v, vp);
        crossentropy_forward(&mut losses, &probs, &targets, bt, vp);
        (losses.iter().map(|&l| l as f64).sum::<f64>() / bt as f64, probs)
    };
    let (_, probs) = loss(&logits);
    let mut dlogits = vec![0.0; bt * vp];
    crossentropy_softmax_backward(&mut dlogits, &vec![1.0 / bt as f32; bt], &probs, &targets, bt, v, vp);
    gradcheck_header("softmax + cross-entropy (mean over positions)");
    let e = gradcheck("logits", &dlogits, 1e-2, |i, d| loss(&nudge(&logits, i, d)).0);
    assert!(e < TOLERANCE);
    // the padded columns V..Vp get no gradient
    assert!(dlogits.chunks(vp).all(|row| row[v..].iter().all(|&g| g == 0.0)));
}

#[test]
fn whole_model_backward_matches_finite_differences() {
    let config =
        ModelConfig { max_seq_len: 8, vocab_size: 37, padded_vocab_size: 40, num_layers: 2, num_heads: 2, channels: 8 };
    let (b, t) = (2, 5);
    let mut rng = Rng::new(7);
    let inputs = random_tokens(&mut rng, b * t, config.vocab_size);
    let targets = random_tokens(&mut rng, b * t, config.vocab_size);
    // GPT-2 init, then larger random weights so every gradient is well above rounding noise
    let mut params = gpt2_init(&config, 7);
    for p in params.iter_mut() {
        *p += 0.2 * (2.0 * rng.next_f32() - 1.0);
    }
    let mut model = Gpt2::new(config, params.clone());
    model.forward(&inputs, Some(&targets), b, t);
    model.zero_grad();
    model.backward(1.0);
    let grads = model.grads.clone();

    let layout = ParamLayout::new(&config);
    gradcheck_header("whole GPT-2 (L=2, NH=2, C=8, V=37, B=2, T=5): mean cross-entropy");
    let mut worst: f64 = 0.0;
    for (i, name) in PARAM_NAMES.iter().enumerate() {
        let range = layout.range(i);
        let err = gradcheck(name, &grads[range.clone()], 1e-2, |j, d| {
            let saved = model.params[range.start + j];
            model.params[range.start + j] = saved + d;
            let loss = model.forward(&inputs, Some(&targets), b, t).unwrap();
            model.params[range.start + j] = saved;
            loss as f64
        });
        worst = worst.max(err);
    }
    assert!(worst < TOLERANCE, "worst relative error {worst}");
}

/// A copy of `x` with element i moved by delta.
fn nudge(x: &[f32], i: usize, delta: f32) -> Vec<f32> {
    let mut y = x.to_vec();
    y[i] += delta;
    y
}
