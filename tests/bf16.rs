//! bf16 mixed precision (`src/precision.rs`) on the CPU: every layer in bf16 against fp32, the
//! readable bf16 layers against the fast ones, a training run in bf16 against the same run in fp32,
//! and resuming a bf16 run bit for bit.
//!
//! Tolerances. bf16 keeps 8 significant bits: one rounding moves a value by at most 2^-8 of itself
//! (0.4%), and a layer's bf16 output carries the rounding of its inputs (each 2^-8) plus its own.
//! llm.c's `test_gpt2.cu` accepts a bf16 value when |gpu - ref| <= threshold + 0.079 |ref| (its "BF16
//! epsilon" 0.079, i.e. 7.9% of the value, plus an absolute threshold per tensor: 25.0 for the
//! logits, 0.05 for the loss, 5e-4 to 0.5 for the parameter gradients). Those are the ceiling here:
//! every check below is at least that strict, most far stricter (stated at each check).

mod common;
use common::compare_fields;
use gpt2::config::ModelConfig;
use gpt2::cpu::backend::CpuBackend;
use gpt2::cpu::gpt2::{CpuKernels, Gpt2};
use gpt2::cpu::layers::Layers;
use gpt2::data::write_shard;
use gpt2::model::checkpoint::load;
use gpt2::model::init::gpt2_init;
use gpt2::optim::{AdamWConfig, Schedule};
use gpt2::precision::{is_bf16, round_bf16, Precision};
use gpt2::rng::Rng;
use gpt2::tokenizer::Tokenizer;
use gpt2::train::{train, Backend, TrainConfig};
use std::path::Path;

/// llm.c's relative bf16 tolerance (`epsilon` in test_gpt2.cu's check_tensor): the loosest we accept.
const LLMC_BF16_EPSILON: f32 = 0.079;

fn rand(n: usize, scale: f32, seed: u64) -> Vec<f32> {
    let mut rng = Rng::new(seed);
    (0..n).map(|_| scale * rng.normal()).collect()
}

fn bf16(xs: &[f32]) -> Vec<f32> {
    xs.iter().map(|&x| round_bf16(x)).collect()
}

/// Worst |got - want| as a fraction of the largest |want| in the tensor (so a near-zero entry of a
/// sum does not count as a 100% error), printed, and checked against `tol` (and llm.c's ceiling).
fn check(what: &str, got: &[f32], want: &[f32], tol: f32) {
    assert_eq!(got.len(), want.len(), "{what}: lengths");
    assert!(tol <= LLMC_BF16_EPSILON, "{what}: a tolerance looser than llm.c's");
    let scale = want.iter().fold(0.0f32, |m, x| m.max(x.abs())).max(1e-30);
    let (i, err) = got
        .iter()
        .zip(want)
        .map(|(g, w)| (g - w).abs() / scale)
        .enumerate()
        .fold((0, 0.0f32), |best, (i, e)| if e > best.1 || e.is_nan() { (i, e) } else { best });
    println!("{what:<34} max err {err:.2e} of max |x| {scale:.2e} (tolerance {tol:.1e}) at {i}");
    assert!(err <= tol, "{what}: error {err:.3e} > {tol:.1e} at index {i}: {} vs {}", got[i], want[i]);
}

/// One layer run in fp32 on fp32 inputs, and in bf16 on the same inputs rounded to bf16.
#[test]
fn every_layer_in_bf16_stays_close_to_fp32() {
    let (b, t, c, nh, v, vp) = (2, 16, 64, 4, 100, 128);
    let bt = b * t;
    let f = Layers::new(CpuKernels::Reference, Precision::Fp32);
    let h = Layers::new(CpuKernels::Reference, Precision::Bf16);

    // Per-layer tolerances, as fractions of the tensor's largest value. An elementwise layer sees
    // 2 roundings (input, output) of at most 2^-8 each: 2^-7 = 7.8e-3 covers them. Layers that sum
    // (layernorm over C, matmul over C, attention over T) average the input roundings, but their
    // outputs can be small against the largest value: 1e-2. Gradients passing through two roundings
    // and a sum: 2e-2. All are at least 4x stricter than llm.c's 0.079.
    const ELEMENTWISE: f32 = 1.0 / 128.0;
    const SUMS: f32 = 1e-2;
    const GRADS: f32 = 2e-2;

    // encoder
    let tokens: Vec<u32> = (0..bt).map(|i| (i * 7 % v) as u32).collect();
    let (wte, wpe) = (rand(vp * c, 0.02, 1), rand(t * c, 0.01, 2));
    let (mut o32, mut o16) = (vec![0.0; bt * c], vec![0.0; bt * c]);
    (f.encoder_forward)(&mut o32, &tokens, &wte, &wpe, b, t, c);
    (h.encoder_forward)(&mut o16, &tokens, &bf16(&wte), &bf16(&wpe), b, t, c);
    assert!(is_bf16(&o16), "the encoder's output is bf16");
    check("encoder forward", &o16, &o32, ELEMENTWISE);
    let dout = rand(bt * c, 1.0, 3);
    let (mut dwte32, mut dwpe32) = (vec![0.0; vp * c], vec![0.0; t * c]);
    let (mut dwte16, mut dwpe16) = (vec![0.0; vp * c], vec![0.0; t * c]);
    (f.encoder_backward)(&mut dwte32, &mut dwpe32, &dout, &tokens, b, t, c);
    (h.encoder_backward)(&mut dwte16, &mut dwpe16, &bf16(&dout), &tokens, b, t, c);
    check("encoder backward dwte (fp32)", &dwte16, &dwte32, ELEMENTWISE);
    check("encoder backward dwpe (fp32)", &dwpe16, &dwpe32, ELEMENTWISE);

    // layernorm
    let (x, w, bias) = (rand(bt * c, 1.0, 4), rand(c, 1.0, 5), rand(c, 0.1, 6));
    let (mut o32, mut m32, mut r32) = (vec![0.0; bt * c], vec![0.0; bt], vec![0.0; bt]);
    let (mut o16, mut m16, mut r16) = (vec![0.0; bt * c], vec![0.0; bt], vec![0.0; bt]);
    (f.layernorm_forward)(&mut o32, &mut m32, &mut r32, &x, &w, &bias, bt, c);
    let (xh, wh, bh) = (bf16(&x), bf16(&w), bf16(&bias));
    (h.layernorm_forward)(&mut o16, &mut m16, &mut r16, &xh, &wh, &bh, bt, c);
    assert!(is_bf16(&o16) && !is_bf16(&r16), "ln out is bf16, rstd fp32");
    check("layernorm forward", &o16, &o32, SUMS);
    check("layernorm mean (fp32)", &m16, &m32, SUMS);
    check("layernorm rstd (fp32)", &r16, &r32, SUMS);
    let dout = rand(bt * c, 1.0, 7);
    let (mut dx32, mut dw32, mut db32) = (vec![0.0; bt * c], vec![0.0; c], vec![0.0; c]);
    let (mut dx16, mut dw16, mut db16) = (vec![0.0; bt * c], vec![0.0; c], vec![0.0; c]);
    (f.layernorm_backward)(&mut dx32, &mut dw32, &mut db32, &dout, &x, &w, &m32, &r32, bt, c);
    (h.layernorm_backward)(&mut dx16, &mut dw16, &mut db16, &bf16(&dout), &xh, &wh, &m16, &r16, bt, c);
    assert!(is_bf16(&dx16));
    check("layernorm backward dinp", &dx16, &dx32, GRADS);
    check("layernorm backward dweight (fp32)", &dw16, &dw32, GRADS);
    check("layernorm backward dbias (fp32)", &db16, &db32, GRADS);

    // matmul (the qkv shape)
    let (oc, x, w, bias) = (3 * c, rand(bt * c, 1.0, 8), rand(3 * c * c, 0.1, 9), rand(3 * c, 0.1, 10));
    let (mut o32, mut o16) = (vec![0.0; bt * oc], vec![0.0; bt * oc]);
    (f.matmul_forward)(&mut o32, &x, &w, Some(&bias), bt, c, oc);
    let (xh, wh) = (bf16(&x), bf16(&w));
    (h.matmul_forward)(&mut o16, &xh, &wh, Some(&bf16(&bias)), bt, c, oc);
    assert!(is_bf16(&o16));
    check("matmul forward", &o16, &o32, SUMS);
    let dout = rand(bt * oc, 1.0, 11);
    let (mut dx32, mut dw32, mut db32) = (vec![0.0; bt * c], vec![0.0; oc * c], vec![0.0; oc]);
    let (mut dx16, mut dw16, mut db16) = (vec![0.0; bt * c], vec![0.0; oc * c], vec![0.0; oc]);
    (f.matmul_backward)(&mut dx32, &mut dw32, Some(&mut db32), &dout, &x, &w, bt, c, oc);
    (h.matmul_backward)(&mut dx16, &mut dw16, Some(&mut db16), &bf16(&dout), &xh, &wh, bt, c, oc);
    assert!(is_bf16(&dx16) && !is_bf16(&dw16), "dinp bf16, dweight fp32");
    check("matmul backward dinp", &dx16, &dx32, SUMS);
    check("matmul backward dweight (fp32)", &dw16, &dw32, SUMS);
    check("matmul backward dbias (fp32)", &db16, &db32, SUMS);

    // attention: out bf16, the per-row log-sum-exp (the softmax statistics) fp32
    let qkv = rand(bt * 3 * c, 1.0, 12);
    let rows = b * nh * t;
    let (mut o32, mut lse32) = (vec![0.0; bt * c], vec![0.0; rows]);
    let (mut o16, mut lse16) = (vec![0.0; bt * c], vec![0.0; rows]);
    (f.attention_forward)(&mut o32, &mut lse32, &qkv, b, t, c, nh);
    let qkvh = bf16(&qkv);
    (h.attention_forward)(&mut o16, &mut lse16, &qkvh, b, t, c, nh);
    assert!(is_bf16(&o16) && !is_bf16(&lse16), "atty bf16, lse (softmax statistics) fp32");
    check("attention forward", &o16, &o32, SUMS);
    let dout = rand(bt * c, 1.0, 13);
    let (mut dq32, mut delta32) = (vec![0.0; bt * 3 * c], vec![0.0; rows]);
    let (mut dq16, mut delta16) = (vec![0.0; bt * 3 * c], vec![0.0; rows]);
    (f.attention_backward)(&mut dq32, &mut delta32, &dout, &qkv, &o32, &lse32, b, t, c, nh);
    (h.attention_backward)(&mut dq16, &mut delta16, &bf16(&dout), &qkvh, &o16, &lse16, b, t, c, nh);
    assert!(is_bf16(&dq16));
    check("attention backward dqkv", &dq16, &dq32, GRADS);

    // residual
    let (x1, x2) = (rand(bt * c, 1.0, 14), rand(bt * c, 1.0, 15));
    let (mut o32, mut o16) = (vec![0.0; bt * c], vec![0.0; bt * c]);
    (f.residual_forward)(&mut o32, &x1, &x2);
    (h.residual_forward)(&mut o16, &bf16(&x1), &bf16(&x2));
    check("residual forward", &o16, &o32, ELEMENTWISE);
    let (mut d1_32, mut d2_32, mut d1_16, mut d2_16) = (x2.clone(), x2.clone(), bf16(&x2), bf16(&x2));
    (f.residual_backward)(&mut d1_32, &mut d2_32, &x1);
    (h.residual_backward)(&mut d1_16, &mut d2_16, &bf16(&x1));
    assert!(is_bf16(&d1_16) && is_bf16(&d2_16), "gradients accumulated into stay bf16");
    check("residual backward (accumulating)", &d1_16, &d1_32, ELEMENTWISE);

    // GELU
    let (x, dout) = (rand(bt * 4 * c, 1.5, 16), rand(bt * 4 * c, 1.0, 17));
    let (mut o32, mut o16) = (vec![0.0; bt * 4 * c], vec![0.0; bt * 4 * c]);
    (f.gelu_forward)(&mut o32, &x);
    let xh = bf16(&x);
    (h.gelu_forward)(&mut o16, &xh);
    check("gelu forward", &o16, &o32, ELEMENTWISE);
    let (mut d32, mut d16) = (vec![0.0; bt * 4 * c], vec![0.0; bt * 4 * c]);
    (f.gelu_backward)(&mut d32, &x, &dout);
    (h.gelu_backward)(&mut d16, &xh, &bf16(&dout));
    assert!(is_bf16(&d16));
    check("gelu backward", &d16, &d32, ELEMENTWISE);

    // softmax + cross-entropy: bf16 logits in, fp32 losses and lse out, bf16 dlogits written over the logits
    let logits = rand(bt * vp, 2.0, 18);
    let targets: Vec<u32> = (0..bt).map(|i| (i * 11 % v) as u32).collect();
    let (mut l32, mut l16, mut lse32, mut lse16) = (vec![0.0; bt], vec![0.0; bt], vec![0.0; bt], vec![0.0; bt]);
    let logitsh = bf16(&logits);
    (f.crossentropy_forward)(&mut l32, &mut lse32, &logits, &targets, bt, v, vp);
    (h.crossentropy_forward)(&mut l16, &mut lse16, &logitsh, &targets, bt, v, vp);
    assert!(!is_bf16(&l16) && !is_bf16(&lse16), "losses and lse are fp32");
    check("cross-entropy losses (fp32)", &l16, &l32, SUMS);
    let dl = vec![1.0 / bt as f32; bt];
    let (mut g32, mut g16) = (logits.clone(), logitsh.clone());
    (f.crossentropy_softmax_backward)(&mut g32, &dl, &lse32, &targets, bt, v, vp);
    (h.crossentropy_softmax_backward)(&mut g16, &dl, &lse16, &targets, bt, v, vp);
    assert!(is_bf16(&g16), "dlogits are bf16");
    check("softmax+cross-entropy dlogits", &g16, &g32, GRADS);
}

fn small() -> ModelConfig {
    ModelConfig { max_seq_len: 32, vocab_size: 50, padded_vocab_size: 64, num_layers: 2, num_heads: 2, channels: 32 }
}

/// Forward and backward of a whole model with these kernels at this precision: (loss, logits, grads).
fn run_model(config: ModelConfig, kernels: CpuKernels, precision: Precision) -> (f32, Vec<f32>, Vec<f32>, Gpt2) {
    let (b, t) = (2, 16);
    let mut rng = Rng::new(5);
    let tokens: Vec<u32> = (0..b * t + 1).map(|_| rng.below(config.vocab_size) as u32).collect();
    let mut model = Gpt2::new(config, gpt2_init(&config, 3));
    model.kernels = kernels;
    model.set_precision(precision);
    let loss = model.forward(&tokens[..b * t], Some(&tokens[1..]), b, t).unwrap();
    model.zero_grad();
    model.backward(1.0);
    (loss, model.logits().to_vec(), model.grads.clone(), model)
}

#[test]
fn whole_model_in_bf16_stays_close_to_fp32() {
    let (loss32, logits32, grads32, _) = run_model(small(), CpuKernels::Reference, Precision::Fp32);
    let (loss16, logits16, grads16, model) = run_model(small(), CpuKernels::Reference, Precision::Bf16);
    assert!(is_bf16(&logits16), "the logits are stored in bf16");
    assert!(is_bf16(model.weights()), "the layers read a bf16 copy of the weights");
    assert!(!is_bf16(&model.params), "the master weights stay fp32");
    println!("loss fp32 {loss32}, bf16 {loss16}");
    // llm.c: 0.05 on the loss; ours: 1% of it (ln 50 = 3.9, so 0.04)
    assert!((loss16 - loss32).abs() <= 0.01 * loss32, "loss {loss16} in bf16 vs {loss32} in fp32");
    // llm.c: 25.0 absolute on the logits (!); ours: 2% of the largest logit
    check("logits", &logits16, &logits32, 2e-2);
    // parameter gradients, tensor by tensor: each through ~2L+2 bf16 layers; 5% of the largest
    // gradient of the tensor (llm.c: 7.9% of each value plus 5e-4 to 0.5 absolute)
    let layout = gpt2::model::ParamLayout::new(&small());
    for (i, name) in gpt2::model::PARAM_NAMES.iter().enumerate() {
        let r = layout.range(i);
        check(&format!("grad {name}"), &grads16[r.clone()], &grads32[r], 5e-2);
    }
}

#[test]
fn fast_bf16_matches_reference_bf16() {
    // The same definition computed by two implementations: they differ only in fp32 summation order
    // (and the fast GELU's tanh polynomial), which moves a value across a bf16 rounding boundary now
    // and then: one bf16 step, 2^-8 of the value. Through the whole model that stays well under 1%.
    let (loss_r, logits_r, grads_r, _) = run_model(small(), CpuKernels::Reference, Precision::Bf16);
    let (loss_f, logits_f, grads_f, _) = run_model(small(), CpuKernels::Fast, Precision::Bf16);
    println!("loss reference-bf16 {loss_r}, fast-bf16 {loss_f}");
    assert!((loss_r - loss_f).abs() <= 1e-3 * loss_r, "loss {loss_f} fast vs {loss_r} reference");
    check("logits, fast vs reference bf16", &logits_f, &logits_r, 4e-3);
    let layout = gpt2::model::ParamLayout::new(&small());
    for (i, name) in gpt2::model::PARAM_NAMES.iter().enumerate() {
        let r = layout.range(i);
        check(&format!("grad {name}, fast vs reference"), &grads_f[r.clone()], &grads_r[r], 1e-2);
    }
}

#[test]
fn fp32_is_unchanged_by_the_precision_switch() {
    // switching to bf16 and back leaves the fp32 path bit for bit what it was
    let (loss_a, logits_a, grads_a, _) = run_model(small(), CpuKernels::Fast, Precision::Fp32);
    let mut model = Gpt2::new(small(), gpt2_init(&small(), 3));
    model.set_precision(Precision::Bf16);
    model.set_precision(Precision::Fp32);
    let (b, t) = (2, 16);
    let mut rng = Rng::new(5);
    let tokens: Vec<u32> = (0..b * t + 1).map(|_| rng.below(small().vocab_size) as u32).collect();
    let loss_b = model.forward(&tokens[..b * t], Some(&tokens[1..]), b, t).unwrap();
    model.zero_grad();
    model.backward(1.0);
    assert_eq!(loss_a.to_bits(), loss_b.to_bits());
    assert!(logits_a.iter().zip(model.logits()).all(|(x, y)| x.to_bits() == y.to_bits()));
    assert!(grads_a.iter().zip(&model.grads).all(|(x, y)| x.to_bits() == y.to_bits()));
    assert!(!is_bf16(model.logits()), "fp32 logits are not rounded");
}

// ---- training runs ----

/// A shard of "text" with structure to learn: token i+1 usually follows token i.
fn make_shard(path: &Path, n: usize, vocab: usize, seed: u64) {
    let mut rng = Rng::new(seed);
    let mut tok = 0usize;
    let tokens: Vec<u16> = (0..n)
        .map(|_| {
            tok = if rng.next_f32() < 0.8 { (tok + 1) % vocab } else { rng.below(vocab) };
            tok as u16
        })
        .collect();
    write_shard(path, &tokens).unwrap();
}

fn train_config(dir: &Path, steps: usize, batch: usize, seq: usize) -> TrainConfig {
    TrainConfig {
        train_data: dir.join("train.bin").to_str().unwrap().to_string(),
        val_data: Some(dir.join("val.bin").to_str().unwrap().to_string()),
        batch,
        seq,
        total_batch: batch * seq,
        steps,
        lr: 3e-3,
        warmup: 5,
        schedule: Schedule::Cosine,
        min_lr_frac: 0.1,
        adamw: AdamWConfig::default(),
        grad_clip: 1.0,
        val_every: 0,
        val_batches: 2,
        shuffle: true,
        seed: 11,
        log: None,
        save: None,
        save_every: 0,
        export_llmc: None,
        sample_every: 0,
        print_every: 0,
        stop_at: None,
        quiet: true,
        tokenizer_digest: 0,
    }
}

fn data_dir(vocab: usize, tokens: usize) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    make_shard(&dir.path().join("train.bin"), tokens, vocab, 1);
    make_shard(&dir.path().join("val.bin"), tokens / 4, vocab, 2);
    dir
}

fn backend(config: ModelConfig, precision: Precision) -> CpuBackend {
    let mut backend = CpuBackend::new(config, gpt2_init(&config, 2));
    backend.model.set_precision(precision);
    backend
}

/// Trains the same model on the same batches in fp32 and in bf16 and compares the loss curves:
/// the mean loss of each window of `window` steps in bf16 must be within `band` (relative) of fp32's,
/// and the last window's within `last_band`.
#[allow(clippy::too_many_arguments)]
fn loss_curves_agree(
    config: ModelConfig,
    dir: &Path,
    steps: usize,
    batch: usize,
    seq: usize,
    window: usize,
    band: f32,
    last_band: f32,
) {
    let cfg = train_config(dir, steps, batch, seq);
    let l32 = train(&mut backend(config, Precision::Fp32), &cfg, None, None).unwrap().train_losses;
    let l16 = train(&mut backend(config, Precision::Bf16), &cfg, None, None).unwrap().train_losses;
    let mut worst = 0.0f32;
    let mut last = 0.0f32;
    println!("{:>6} {:>9} {:>9} {:>8}", "steps", "fp32", "bf16", "rel diff");
    for (w, (a, b)) in l32.chunks(window).zip(l16.chunks(window)).enumerate() {
        let (m32, m16) = (a.iter().sum::<f32>() / a.len() as f32, b.iter().sum::<f32>() / b.len() as f32);
        last = (m16 - m32).abs() / m32;
        worst = worst.max(last);
        println!("{:>6} {m32:>9.4} {m16:>9.4} {:>7.2}%", (w + 1) * window, 100.0 * last);
    }
    let (first, end) = (l32[0], l32[l32.len() - 1]);
    println!("fp32 loss {first:.3} -> {end:.3}; worst window {:.2}% (band {:.1}%)", 100.0 * worst, 100.0 * band);
    assert!(end < first - 0.5, "the fp32 run should learn: {first} -> {end}");
    assert!(worst <= band, "bf16's loss curve left the band: {:.2}% > {:.1}%", 100.0 * worst, 100.0 * band);
    assert!(
        last <= last_band,
        "bf16's last window is {:.2}% from fp32's (band {:.1}%)",
        100.0 * last,
        100.0 * last_band
    );
}

#[test]
fn bf16_training_tracks_fp32_loss_curve() {
    // 2 layers, C = 32, 60 steps of 64 tokens: a few seconds. Band: every 10-step window's mean loss
    // within 2% of fp32's (llm.c checks 10 steps within 0.05 absolute, about 2% of its losses).
    let config = small();
    let dir = data_dir(config.vocab_size, 20_000);
    loss_curves_agree(config, dir.path(), 60, 4, 16, 10, 0.02, 0.02);
}

/// Hamlet to train on, Macbeth to validate, tokenized with the crate's tokenizer.
fn shakespeare_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let tokenizer = Tokenizer::gpt2();
    for (play, file) in [("hamlet", "train.bin"), ("macbeth", "val.bin")] {
        let path = format!("{}/data/shakespeare/{play}_gut.txt", env!("CARGO_MANIFEST_DIR"));
        let text = std::fs::read_to_string(&path).unwrap();
        let tokens: Vec<u16> = tokenizer.encode(&text).into_iter().map(|t| t as u16).collect();
        write_shard(&dir.path().join(file), &tokens).unwrap();
    }
    dir
}

#[test]
fn bf16_training_tracks_fp32_loss_curve_tiny_200_steps() {
    // The tiny preset (L4 H4 C128, the full vocabulary), 200 steps of 4 x 64 tokens of Hamlet, in fp32
    // and in bf16: about a minute on 2 cores. Band: every 20-step window's mean loss within 2.5% of
    // fp32's, the last window within 1%.
    //
    // Why not tighter: two training runs drift apart under any perturbation, not only bf16's. Measured
    // on this run, fp32 against fp32 with the initial weights scaled by 1 +- 5e-7 (random per weight)
    // already differs by up to 1.12% in a window (0.02% in the last); bf16 (each value moved by up
    // to 2^-8) by up to 1.42% (0.10% in the last); fp32 went from 10.82 to 5.84. On random tokens
    // (`make_shard`) the drift is larger: 1.45% for the perturbed fp32 run and 4.70% for bf16, which
    // is why this test trains on text. A bug in the bf16 path (a rounding in the wrong place, a lost
    // gradient) shows here as a curve that separates and stays apart at the end; the per-layer tests
    // above catch the small ones.
    let tiny = ModelConfig::from_name("tiny").unwrap();
    let dir = shakespeare_dir();
    loss_curves_agree(tiny, dir.path(), 200, 4, 64, 20, 0.025, 0.01);
}

#[test]
fn resuming_bf16_continues_bit_for_bit() {
    // as tests/training.rs's resume test, in bf16: the checkpoint holds the fp32 master weights, and
    // the bf16 copy is derived from them, so the resumed run is the same run
    let config = small();
    let dir = data_dir(config.vocab_size, 4000);
    let (n, total) = (12, 24);
    let cfg = train_config(dir.path(), total, 2, 16);
    let mut straight = backend(config, Precision::Bf16);
    let whole = train(&mut straight, &cfg, None, None).unwrap();

    let ckpt_path = dir.path().join("ckpt.bin");
    let mut first = backend(config, Precision::Bf16);
    let cfg1 = TrainConfig { save: Some(ckpt_path.clone()), save_every: 5, stop_at: Some(n), ..cfg.clone() };
    let part1 = train(&mut first, &cfg1, None, None).unwrap();
    let ckpt = load(&ckpt_path).unwrap();
    let (m, v, state) = ckpt.optimizer.unwrap();
    assert_eq!(state.step, n as u64);
    assert!(!is_bf16(&ckpt.params), "checkpoints hold the fp32 master weights");
    let mut resumed = CpuBackend::new(ckpt.config, ckpt.params);
    resumed.model.set_precision(Precision::Bf16);
    resumed.set_optimizer_state(&m, &v).unwrap();
    let part2 = train(&mut resumed, &cfg, Some(state), None).unwrap();

    let joined: Vec<f32> = part1.train_losses.iter().chain(&part2.train_losses).copied().collect();
    assert_eq!(joined.len(), whole.train_losses.len());
    if let Some(step) = (0..joined.len()).find(|&i| joined[i].to_bits() != whole.train_losses[i].to_bits()) {
        panic!("step {step} differs: {} straight, {} resumed at step {n}", whole.train_losses[step], joined[step]);
    }
    let (sp, rp) = (straight.params().unwrap(), resumed.params().unwrap());
    let ((sm, sv), (rm, rv)) = (straight.optimizer_state().unwrap(), resumed.optimizer_state().unwrap());
    let end: [(&str, &[f32], &[f32]); 3] = [("params", &rp, &sp), ("m", &rm, &sm), ("v", &rv, &sv)];
    if let Err(e) = compare_fields("resumed vs straight bf16 run", &end) {
        panic!("{e}");
    }
    assert!(resumed.describe().contains("bf16"), "{}", resumed.describe());
}
