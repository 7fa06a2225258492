//! Gradient checks: every layer's backward pass (the readable one in `src/cpu/` and, where there is
//! one, the fast one in `src/cpu/fast/`), and the whole model's, against central finite
//! differences. Run `cargo test --release --test gradcheck -- --nocapture` to see, for each tensor, the
//! largest analytic and numeric gradient, how far apart they are, and the tolerance.
//!
//! How it works: to check a layer y = f(x, w), take the scalar loss L = sum(y * r) for fixed
//! random r. Then dL/dy = r, so running the layer's backward with dout = r gives dL/dx and dL/dw,
//! and each can be compared with (L(x + h) - L(x - h)) / 2h, one element at a time
//! (`common::gradcheck`, which is also what judges a learner's backward pass).
//!
//! Each backward runs twice: into zeroed gradient buffers, and into buffers pre-filled with known
//! values, where the result must be prefill + gradient. Backward passes accumulate (+=); one that
//! overwrites passes the first check and fails the second.
//!
//! Tolerances: the forward passes are f32 (about 7 significant digits) and the loss sums in f64,
//! so the numeric gradient carries rounding error ~ 6e-8 |y| / h plus the central difference's
//! truncation error O(h^2 f'''). Each layer's tolerance is what the correct layer measured (the
//! relative error ||a - n|| / (||a|| + ||n||), printed in the table), times a margin of about 10-30,
//! rounded up; see the comment on each constant. A real bug scores far above: a wrong coefficient in
//! GELU's tanh derivative scores 9.5e-3, a missing term or a transposed index 1e-1 or more.

mod common;
use common::gradcheck::{check_accumulates, check_gradient, numeric_gradient, prefill, table_header, Failures};
use common::*;
use gpt2::config::ModelConfig;
use gpt2::cpu::gpt2::{CpuKernels, Gpt2};
use gpt2::cpu::{encoder::*, layernorm::*, residual::*};
use gpt2::model::{init::gpt2_init, ParamLayout, PARAM_NAMES};
use gpt2::rng::Rng;

/// Both implementations of the layers that have a fast twin.
const KERNELS: [CpuKernels; 2] = [CpuKernels::Reference, CpuKernels::Fast];

/// Runs a layer's backward pass twice, into zeroed and into pre-filled gradient buffers (one per
/// tensor, `numeric[i].len()` long), and checks each tensor against its numeric gradient.
fn check_backward(
    layer: &str,
    tensors: &[&str],
    numeric: &[Vec<f64>],
    tolerance: f64,
    mut backward: impl FnMut(&mut [Vec<f32>]),
) -> Failures {
    let mut failures = Failures::default();
    table_header(layer);
    let mut grads: Vec<Vec<f32>> = numeric.iter().map(|n| vec![0.0; n.len()]).collect();
    backward(&mut grads);
    for ((name, grad), num) in tensors.iter().zip(&grads).zip(numeric) {
        failures.add(check_gradient(layer, name, grad, num, tolerance));
    }
    let prefills: Vec<Vec<f32>> = numeric.iter().map(|n| prefill(n.len())).collect();
    let mut grads = prefills.clone();
    backward(&mut grads);
    for (((name, grad), num), pre) in tensors.iter().zip(&grads).zip(numeric).zip(&prefills) {
        failures.add(check_accumulates(layer, name, pre, grad, num, tolerance));
    }
    failures
}

/// Measured (h = 1e-2): at most 2.5e-6 (readable) and 2.9e-6 (fast), on inp and weight. matmul is
/// linear in each argument, so the central difference has no truncation error, only the rounding
/// of the f32 outputs. 5e-5 leaves a margin of 17.
const MATMUL_TOLERANCE: f64 = 5e-5;

#[test]
fn matmul_backward_matches_finite_differences() {
    let (bt, c, oc) = (5, 7, 3);
    let mut rng = Rng::new(1);
    let inp = random_vec(&mut rng, bt * c, 1.0);
    let weight = random_vec(&mut rng, oc * c, 1.0);
    let bias = random_vec(&mut rng, oc, 1.0);
    let r = random_vec(&mut rng, bt * oc, 1.0);
    let mut failures = Failures::default();
    for kernels in KERNELS {
        let (forward, backward) = kernels.matmul();
        let loss = |inp: &[f32], weight: &[f32], bias: &[f32]| {
            let mut out = vec![0.0; bt * oc];
            forward(&mut out, inp, weight, Some(bias), bt, c, oc);
            weighted_sum(&out, &r)
        };
        let h = 1e-2;
        let numeric = [
            numeric_gradient(inp.len(), h, |i, d| loss(&nudge(&inp, i, d), &weight, &bias)),
            numeric_gradient(weight.len(), h, |i, d| loss(&inp, &nudge(&weight, i, d), &bias)),
            numeric_gradient(bias.len(), h, |i, d| loss(&inp, &weight, &nudge(&bias, i, d))),
        ];
        let layer = format!("matmul ({kernels:?}): out = inp @ weight^T + bias");
        failures.merge(check_backward(&layer, &["inp", "weight", "bias"], &numeric, MATMUL_TOLERANCE, |g| {
            let [dinp, dweight, dbias] = g else { unreachable!() };
            backward(dinp, dweight, Some(dbias), &r, &inp, &weight, bt, c, oc);
        }));
    }
    failures.assert_none();
}

/// Measured: 7.2e-6 on inp, 1.3e-6 on weight, 4.3e-7 on bias. The normalization is nonlinear in
/// inp, so the truncation error O(h^2) adds to the rounding; 1e-4 leaves a margin of 14.
const LAYERNORM_TOLERANCE: f64 = 1e-4;

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
    let h = 1e-2;
    let numeric = [
        numeric_gradient(inp.len(), h, |i, d| run(&nudge(&inp, i, d), &weight, &bias).0),
        numeric_gradient(weight.len(), h, |i, d| run(&inp, &nudge(&weight, i, d), &bias).0),
        numeric_gradient(bias.len(), h, |i, d| run(&inp, &weight, &nudge(&bias, i, d)).0),
    ];
    check_backward("layernorm", &["inp", "weight", "bias"], &numeric, LAYERNORM_TOLERANCE, |g| {
        let [dinp, dweight, dbias] = g else { unreachable!() };
        layernorm_backward(dinp, dweight, dbias, &r, &inp, &weight, &mean, &rstd, bt, c);
    })
    .assert_none();
}

/// Measured: 3.1e-6 (readable) and 3.5e-6 (fast) on qkv. The softmax and the products q.k are
/// nonlinear (truncation error O(h^2)); 5e-5 leaves a margin of 14.
const ATTENTION_TOLERANCE: f64 = 5e-5;

#[test]
fn attention_backward_matches_finite_differences() {
    // T = 5 positions, 2 heads of 3 channels
    let (b, t, c, nh) = (2, 5, 6, 2);
    let mut rng = Rng::new(3);
    let inp = random_vec(&mut rng, b * t * 3 * c, 1.0);
    let r = random_vec(&mut rng, b * t * c, 1.0);
    let mut failures = Failures::default();
    for kernels in KERNELS {
        let (forward, backward) = kernels.attention();
        let run = |inp: &[f32]| {
            let (mut out, mut lse) = (vec![0.0; b * t * c], vec![0.0; b * nh * t]);
            forward(&mut out, &mut lse, inp, b, t, c, nh);
            (weighted_sum(&out, &r), out, lse)
        };
        let (_, out, lse) = run(&inp);
        let numeric = [numeric_gradient(inp.len(), 1e-2, |i, d| run(&nudge(&inp, i, d)).0)];
        let layer = format!("attention ({kernels:?}): causal self-attention");
        failures.merge(check_backward(&layer, &["qkv"], &numeric, ATTENTION_TOLERANCE, |g| {
            // delta is scratch that the backward overwrites: garbage must not matter
            let mut delta = vec![7.0; b * nh * t];
            backward(&mut g[0], &mut delta, &r, &inp, &out, &lse, b, t, c, nh);
        }));
    }
    failures.assert_none();
}

/// Measured: 4.5e-6 (readable) and 5.5e-6 (fast), over inputs in [-4, 4] where the tanh bends.
/// 1e-4 leaves a margin of 18; a wrong coefficient in the tanh term's derivative scores 9.5e-3.
const GELU_TOLERANCE: f64 = 1e-4;

#[test]
fn gelu_backward_matches_finite_differences() {
    let mut rng = Rng::new(4);
    let inp = random_vec(&mut rng, 50, 4.0);
    let r = random_vec(&mut rng, 50, 1.0);
    let mut failures = Failures::default();
    for kernels in KERNELS {
        let (forward, backward) = kernels.gelu();
        let loss = |inp: &[f32]| {
            let mut out = vec![0.0; inp.len()];
            forward(&mut out, inp);
            weighted_sum(&out, &r)
        };
        let numeric = [numeric_gradient(inp.len(), 1e-2, |i, d| loss(&nudge(&inp, i, d)))];
        let layer = format!("gelu ({kernels:?}): tanh approximation");
        failures.merge(check_backward(&layer, &["inp"], &numeric, GELU_TOLERANCE, |g| backward(&mut g[0], &inp, &r)));
    }
    failures.assert_none();
}

/// Measured: at most 4.7e-7 (residual) and 4.5e-7 (encoder): both are linear, so only the rounding
/// of the f32 outputs remains. 1e-5 leaves a margin of 21; a dropped or misrouted gradient scores
/// 1e-1 or more.
const COPY_TOLERANCE: f64 = 1e-5;

#[test]
fn residual_backward_matches_finite_differences() {
    let n = 24;
    let mut rng = Rng::new(8);
    let (inp1, inp2, r) = (random_vec(&mut rng, n, 1.0), random_vec(&mut rng, n, 1.0), random_vec(&mut rng, n, 1.0));
    let loss = |a: &[f32], b: &[f32]| {
        let mut out = vec![0.0; n];
        residual_forward(&mut out, a, b);
        weighted_sum(&out, &r)
    };
    let numeric = [
        numeric_gradient(n, 1e-2, |i, d| loss(&nudge(&inp1, i, d), &inp2)),
        numeric_gradient(n, 1e-2, |i, d| loss(&inp1, &nudge(&inp2, i, d))),
    ];
    check_backward("residual: out = inp1 + inp2", &["inp1", "inp2"], &numeric, COPY_TOLERANCE, |g| {
        let [d1, d2] = g else { unreachable!() };
        residual_backward(d1, d2, &r);
    })
    .assert_none();
}

#[test]
fn encoder_backward_matches_finite_differences() {
    let (b, t, c, v, maxt) = (2, 3, 4, 7, 5);
    let mut rng = Rng::new(5);
    // position 1 of both batch rows holds the same token: its row of dwte must get both gradients
    let mut tokens = random_tokens(&mut rng, b * t, v);
    tokens[1] = tokens[4];
    let wte = random_vec(&mut rng, v * c, 1.0);
    let wpe = random_vec(&mut rng, maxt * c, 1.0);
    let r = random_vec(&mut rng, b * t * c, 1.0);
    let loss = |wte: &[f32], wpe: &[f32]| {
        let mut out = vec![0.0; b * t * c];
        encoder_forward(&mut out, &tokens, wte, wpe, b, t, c);
        weighted_sum(&out, &r)
    };
    let numeric = [
        numeric_gradient(wte.len(), 1e-2, |i, d| loss(&nudge(&wte, i, d), &wpe)),
        numeric_gradient(wpe.len(), 1e-2, |i, d| loss(&wte, &nudge(&wpe, i, d))),
    ];
    check_backward("encoder: wte[token] + wpe[position]", &["wte", "wpe"], &numeric, COPY_TOLERANCE, |g| {
        let [dwte, dwpe] = g else { unreachable!() };
        encoder_backward(dwte, dwpe, &r, &tokens, b, t, c);
    })
    .assert_none();
}

/// Measured before the fusion (probabilities stored): 1.5e-5 (readable softmax) and 1.4e-5 (fast). Higher than the other layers because the
/// loss is a mean of f32 logs, each rounded at about 2e-7, and the mean divides the signal by BT.
/// 2e-4 leaves a margin of 14.
const SOFTMAX_TOLERANCE: f64 = 2e-4;

#[test]
fn softmax_crossentropy_backward_matches_finite_differences() {
    let (bt, v, vp) = (4, 11, 13);
    let mut rng = Rng::new(6);
    let logits = random_vec(&mut rng, bt * vp, 3.0);
    let targets = random_tokens(&mut rng, bt, v);
    let mut failures = Failures::default();
    for kernels in KERNELS {
        let (forward, backward) = kernels.classifier();
        let loss = |logits: &[f32]| {
            let (mut losses, mut lse) = (vec![0.0; bt], vec![0.0; bt]);
            forward(&mut losses, &mut lse, logits, &targets, bt, v, vp);
            (losses.iter().map(|&l| l as f64).sum::<f64>() / bt as f64, lse)
        };
        let (_, lse) = loss(&logits);
        let numeric = numeric_gradient(logits.len(), 1e-2, |i, d| loss(&nudge(&logits, i, d)).0);
        let layer =
            format!("softmax + cross-entropy ({kernels:?}, mean over positions; dlogits written over the logits)");
        table_header(&layer);
        // the backward overwrites the logits with their gradient (it does not accumulate)
        let dlosses = vec![1.0 / bt as f32; bt];
        let mut dlogits = logits.clone();
        backward(&mut dlogits, &dlosses, &lse, &targets, bt, v, vp);
        failures.add(check_gradient(&layer, "logits", &dlogits, &numeric, SOFTMAX_TOLERANCE));
        // the padded columns V..Vp get a gradient of 0, whatever their logits were
        assert!(dlogits.chunks(vp).all(|row| row[v..].iter().all(|&g| g == 0.0)), "padding got a gradient");
    }
    failures.assert_none();
}

/// The whole model's bound is looser than any layer's: every nudge goes through 2 blocks of f32
/// layers, and the loss is a mean over positions (so each nudge moves it little). The loss is
/// summed in f64 from the probabilities (the model's f32 loss alone scores 2.1e-3). Measured: the
/// worst tensor is ln1w, whose gradients are small, at 3.6e-4 (readable) and 2.5e-4 (fast).
/// 1e-2 is 28x that. A bug in one layer shows first, and plainer, in that layer's own check above.
const MODEL_TOLERANCE: f64 = 1e-2;

#[test]
fn whole_model_backward_matches_finite_differences_with_reference_layers() {
    whole_model_gradcheck(CpuKernels::Reference);
}

#[test]
fn whole_model_backward_matches_finite_differences_with_fast_layers() {
    whole_model_gradcheck(CpuKernels::Fast);
}

fn whole_model_gradcheck(kernels: CpuKernels) {
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
    model.kernels = kernels;
    model.forward(&inputs, Some(&targets), b, t);
    model.zero_grad();
    model.backward(1.0);
    let grads = model.grads.clone();
    // backward adds into the gradients: run it again (after a new forward: the backward wrote the
    // logits' gradient over the logits) on top of a pre-fill
    let pre = prefill(grads.len());
    model.grads.copy_from_slice(&pre);
    model.forward(&inputs, Some(&targets), b, t);
    model.backward(1.0);
    let accumulated = model.grads.clone();

    let layout = ParamLayout::new(&config);
    let layer = format!("whole GPT-2 ({kernels:?} layers; L=2, NH=2, C=8, V=37, B=2, T=5): mean cross-entropy");
    table_header(&layer);
    let mut failures = Failures::default();
    for (i, name) in PARAM_NAMES.iter().enumerate() {
        let range = layout.range(i);
        let numeric = numeric_gradient(range.len(), 1e-2, |j, d| {
            let saved = model.params[range.start + j];
            model.params[range.start + j] = saved + d;
            model.forward(&inputs, None, b, t);
            model.params[range.start + j] = saved;
            mean_crossentropy_f64(model.logits(), &targets, config.vocab_size, config.padded_vocab_size)
        });
        failures.add(check_gradient(&layer, name, &grads[range.clone()], &numeric, MODEL_TOLERANCE));
        let (before, after) = (&pre[range.clone()], &accumulated[range]);
        failures.add(check_accumulates(&layer, name, before, after, &numeric, MODEL_TOLERANCE));
    }
    failures.assert_none();
}

#[test]
fn a_failed_check_names_the_tensor_and_hints_at_the_bug() {
    // what a learner sees: an overwriting backward, a factor 2, a wrong derivative
    let numeric = [0.5, -1.0, 0.25, 2.0];
    let right = [0.5f32, -1.0, 0.25, 2.0];
    assert!(check_gradient("gelu", "inp", &right, &numeric, 1e-4).is_ok());
    let pre = prefill(4);
    let err = check_accumulates("residual", "inp1", &pre, &right, &numeric, 1e-4).unwrap_err();
    println!("{err}");
    assert!(err.contains("residual") && err.contains("`inp1`") && err.contains("(+=)"), "{err}");
    let doubled = [1.0f32, -2.0, 0.5, 4.0];
    let err = check_gradient("matmul", "weight", &doubled, &numeric, 1e-4).unwrap_err();
    assert!(err.contains("2.0000 x numeric") && err.contains("tolerance 1.0e-4"), "{err}");
    let wrong = [0.5f32, -1.0, 0.3, 2.0];
    let err = check_gradient("gelu", "inp", &wrong, &numeric, 1e-4).unwrap_err();
    println!("{err}");
    assert!(err.contains("derivative of the tanh term") && err.contains("largest difference"), "{err}");
}

/// The mean cross-entropy from the model's logits, in f64 (log-sum-exp over the first V columns
/// minus the target's logit): the model's own f32 loss is rounded at about 2e-7, which the finite
/// difference would divide by 2h.
fn mean_crossentropy_f64(logits: &[f32], targets: &[u32], v: usize, vp: usize) -> f64 {
    let sum: f64 = targets
        .iter()
        .enumerate()
        .map(|(i, &y)| {
            let row = &logits[i * vp..i * vp + v];
            let max = row.iter().fold(f64::NEG_INFINITY, |m, &x| m.max(x as f64));
            let lse = max + row.iter().map(|&x| (x as f64 - max).exp()).sum::<f64>().ln();
            lse - row[y as usize] as f64
        })
        .sum();
    sum / targets.len() as f64
}

/// A copy of `x` with element i moved by delta.
fn nudge(x: &[f32], i: usize, delta: f32) -> Vec<f32> {
    let mut y = x.to_vec();
    y[i] += delta;
    y
}
