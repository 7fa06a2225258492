//! The CUDA path against the CPU reference: every kernel, forward and backward, on random inputs
//! whose sizes are not multiples of the kernels' block sizes; then a whole training step and ten
//! steps; then checkpoints written on one side and loaded on the other. The same again in bf16 mixed
//! precision (`src/precision.rs`): every bf16 kernel against the CPU's bf16 layers, and ten bf16
//! steps against the CPU in bf16 (tight) and in fp32 (loose); the tolerances are explained there.
//!
//! Without a usable GPU (libcuda, libnvrtc and a device) each test is reported as ignored, with the
//! reason (this file's harness, `fn main` at the end: tests/common/harness.rs); with GPT_REQUIRE_CUDA=1
//! set, a missing GPU makes them fail. `cargo test --release --test cuda` prints, for each comparison,
//! the largest difference found and the tolerance (this harness does not capture the output).
//!
//! Tolerances: everything is f32 (relative precision 6e-8). The GPU sums in a different order than
//! the CPU (tree reductions, tiles, atomics) and uses its own expf/tanhf/logf (a few ulp apart), so
//! results agree to rounding, not bit for bit. A sum of K terms in f32 carries an error up to about
//! K * 6e-8 times the sum of the terms' magnitudes; with K of a few hundred and inputs of order 1
//! that is below 1e-4 of the outputs' scale, which is the tolerance used for the matmuls and the
//! reductions. A real bug (a wrong index, a missing term) gives differences of order 1.

mod common;
#[path = "common/harness.rs"]
mod harness;
use common::*;
use gpt2::config::ModelConfig;
use gpt2::cpu::backend::CpuBackend;
use gpt2::cpu::bf16 as cpu16;
use gpt2::cpu::gpt2::CpuKernels;
use gpt2::cpu::softmax_crossentropy::*;
use gpt2::cpu::{attention::*, encoder::*, gelu::*, layernorm::*, matmul::*, residual::*};
use gpt2::cuda::storage::{to_f32s, to_storage};
use gpt2::cuda::{Bf16, CudaBackend, Dev, DeviceBuffer, Gpu, Matmul};
use gpt2::memory::Precision;
use gpt2::model::checkpoint::{self, save_checkpoint, TrainState};
use gpt2::model::init::gpt2_init;
use gpt2::model::ParamLayout;
use gpt2::optim::{adamw_update, clip_scale, global_norm, AdamWConfig};
use gpt2::precision::{round_slice_bf16, to_bf16_bits};
use gpt2::rng::Rng;
use gpt2::train::Backend;

/// Whether there is a usable GPU; when there is none, says why, and fails if GPT_REQUIRE_CUDA=1.
fn have_gpu() -> bool {
    match gpt2::cuda::availability() {
        Ok(_) => true,
        Err(why) => {
            if std::env::var("GPT_REQUIRE_CUDA").is_ok_and(|v| v == "1") {
                panic!("GPT_REQUIRE_CUDA=1 but there is no usable GPU: {why}");
            }
            println!("skipping: no usable GPU ({why})");
            false
        }
    }
}

/// The GPU with every kernel compiled, or None when there is none (see `have_gpu`).
fn gpu(matmul: Matmul) -> Option<Gpu> {
    have_gpu().then(|| Gpu::new(0, matmul).unwrap_or_else(|e| panic!("a GPU is present but cannot be used: {e:#}")))
}

/// A device copy of `host`.
fn dev<T: cudarc::driver::DeviceRepr + cudarc::driver::ValidAsZeroBits + Default + Clone>(
    gpu: &Gpu,
    host: &[T],
) -> DeviceBuffer<T> {
    let buffer = gpu.alloc(host.len()).expect("device allocation");
    gpu.upload(buffer.all(), host).expect("upload");
    buffer
}

/// A host copy of `d`.
fn host(gpu: &Gpu, d: Dev<f32>) -> Vec<f32> {
    gpu.download(d).expect("download")
}

/// Asserts that every |gpu - cpu| <= tol * (1 + max |cpu|), printing the largest difference.
fn assert_close(what: &str, gpu: &[f32], cpu: &[f32], tol: f32) {
    assert_eq!(gpu.len(), cpu.len(), "{what}: lengths differ");
    let scale = 1.0 + cpu.iter().fold(0.0f32, |m, &x| m.max(x.abs()));
    let (mut worst, mut at) = (0.0f32, 0);
    for (i, (&g, &c)) in gpu.iter().zip(cpu).enumerate() {
        let d = (g - c).abs();
        if d > worst || d.is_nan() {
            (worst, at) = (d, i);
        }
    }
    println!(
        "{what:>34}: n {:>7} | max|cpu| {:>10.4e} | max diff {worst:>9.2e} (at {at}) | tol {:.1e}",
        cpu.len(),
        scale - 1.0,
        tol * scale
    );
    assert!(worst <= tol * scale, "{what}: gpu {} vs cpu {} at {at}", gpu[at], cpu[at]);
}

// ---------------------------------------------------------------------------------------- layers

fn encoder_forward_and_backward_match_the_cpu() {
    let Some(g) = gpu(Matmul::Handwritten) else { return };
    let (b, t, c, v, vp, maxt) = (3, 7, 37, 50, 53, 9);
    let mut rng = Rng::new(10);
    let inp = random_tokens(&mut rng, b * t, v);
    let wte = random_vec(&mut rng, vp * c, 1.0);
    let wpe = random_vec(&mut rng, maxt * c, 1.0);
    let dout = random_vec(&mut rng, b * t * c, 1.0);
    // gradients start non-zero: backward must add, not overwrite
    let dwte0 = random_vec(&mut rng, vp * c, 1.0);
    let dwpe0 = random_vec(&mut rng, maxt * c, 1.0);

    let mut out = vec![0.0; b * t * c];
    encoder_forward(&mut out, &inp, &wte, &wpe, b, t, c);
    let (mut dwte, mut dwpe) = (dwte0.clone(), dwpe0.clone());
    encoder_backward(&mut dwte, &mut dwpe, &dout, &inp, b, t, c);

    let (d_out, d_inp, d_wte, d_wpe) = (g.alloc(b * t * c).unwrap(), dev(&g, &inp), dev(&g, &wte), dev(&g, &wpe));
    // SAFETY: the tokens come from random_tokens below the vocabulary, the rows of wte
    unsafe { g.encoder_forward(d_out.all(), d_inp.all(), d_wte.all(), d_wpe.all(), b, t, c).unwrap() };
    let (d_dwte, d_dwpe, d_dout) = (dev(&g, &dwte0), dev(&g, &dwpe0), dev(&g, &dout));
    // SAFETY: as above
    unsafe { g.encoder_backward(d_dwte.all(), d_dwpe.all(), d_dout.all(), d_inp.all(), b, t, c).unwrap() };
    // one addition per number: exact; the backward's atomic adds come in any order (a few ulp)
    assert_close("encoder out", &host(&g, d_out.all()), &out, 0.0);
    assert_close("encoder dwte", &host(&g, d_dwte.all()), &dwte, 1e-6);
    assert_close("encoder dwpe", &host(&g, d_dwpe.all()), &dwpe, 1e-6);
}

fn layernorm_forward_and_backward_match_the_cpu() {
    let Some(g) = gpu(Matmul::Handwritten) else { return };
    // 67 rows of 95 (neither a multiple of 32), and 5003 rows: more rows than the backward's warps,
    // so the grid-stride loop and the per-block partial sums are exercised
    for (bt, c) in [(67, 95), (5003, 41)] {
        let mut rng = Rng::new(11);
        let inp = random_vec(&mut rng, bt * c, 2.0);
        let weight = random_vec(&mut rng, c, 1.0);
        let bias = random_vec(&mut rng, c, 1.0);
        let dout = random_vec(&mut rng, bt * c, 1.0);
        let dinp0 = random_vec(&mut rng, bt * c, 1.0);
        let dweight0 = random_vec(&mut rng, c, 1.0);
        let dbias0 = random_vec(&mut rng, c, 1.0);

        let (mut out, mut mean, mut rstd) = (vec![0.0; bt * c], vec![0.0; bt], vec![0.0; bt]);
        layernorm_forward(&mut out, &mut mean, &mut rstd, &inp, &weight, &bias, bt, c);
        let (mut dinp, mut dweight, mut dbias) = (dinp0.clone(), dweight0.clone(), dbias0.clone());
        layernorm_backward(&mut dinp, &mut dweight, &mut dbias, &dout, &inp, &weight, &mean, &rstd, bt, c);

        let (d_out, d_mean, d_rstd) = (g.alloc(bt * c).unwrap(), g.alloc(bt).unwrap(), g.alloc(bt).unwrap());
        let (d_inp, d_weight, d_bias) = (dev(&g, &inp), dev(&g, &weight), dev(&g, &bias));
        g.layernorm_forward(d_out.all(), d_mean.all(), d_rstd.all(), d_inp.all(), d_weight.all(), d_bias.all(), bt, c)
            .unwrap();
        let (d_dinp, d_dweight, d_dbias, d_dout) =
            (dev(&g, &dinp0), dev(&g, &dweight0), dev(&g, &dbias0), dev(&g, &dout));
        g.layernorm_backward(
            d_dinp.all(),
            d_dweight.all(),
            d_dbias.all(),
            d_dout.all(),
            d_inp.all(),
            d_weight.all(),
            d_mean.all(),
            d_rstd.all(),
            bt,
            c,
        )
        .unwrap();
        // row sums of C <= 95 numbers: 1e-5; dweight and dbias sum over up to 5003 rows: 1e-4
        assert_close(&format!("layernorm out ({bt}x{c})"), &host(&g, d_out.all()), &out, 1e-5);
        assert_close(&format!("layernorm mean ({bt}x{c})"), &host(&g, d_mean.all()), &mean, 1e-5);
        assert_close(&format!("layernorm rstd ({bt}x{c})"), &host(&g, d_rstd.all()), &rstd, 1e-5);
        assert_close(&format!("layernorm dinp ({bt}x{c})"), &host(&g, d_dinp.all()), &dinp, 1e-5);
        assert_close(&format!("layernorm dweight ({bt}x{c})"), &host(&g, d_dweight.all()), &dweight, 1e-4);
        assert_close(&format!("layernorm dbias ({bt}x{c})"), &host(&g, d_dbias.all()), &dbias, 1e-4);
    }
}

/// The matmul kernels of `matmul` (forward with and without bias, and backward) against the CPU.
fn check_matmul(matmul: Matmul) {
    let Some(g) = gpu(matmul) else { return };
    // sizes across tile edges: 131 rows (128 + 3), 259 outputs (2 * 128 + 3), 77 inputs (not a multiple of 8)
    let (bt, c, oc) = (131, 77, 259);
    let mut rng = Rng::new(12);
    let inp = random_vec(&mut rng, bt * c, 1.0);
    let weight = random_vec(&mut rng, oc * c, 1.0);
    let bias = random_vec(&mut rng, oc, 1.0);
    let dout = random_vec(&mut rng, bt * oc, 1.0);
    let dinp0 = random_vec(&mut rng, bt * c, 1.0);
    let dweight0 = random_vec(&mut rng, oc * c, 1.0);
    let dbias0 = random_vec(&mut rng, oc, 1.0);
    let (d_inp, d_weight, d_bias, d_dout) = (dev(&g, &inp), dev(&g, &weight), dev(&g, &bias), dev(&g, &dout));
    let d_out = g.alloc(bt * oc).unwrap();

    for with_bias in [true, false] {
        let mut out = vec![0.0; bt * oc];
        matmul_forward(&mut out, &inp, &weight, with_bias.then_some(&bias[..]), bt, c, oc);
        g.matmul_forward(d_out.all(), d_inp.all(), d_weight.all(), with_bias.then_some(d_bias.all()), bt, c, oc)
            .unwrap();
        // K = 77 products of numbers in [-1, 1]
        assert_close(&format!("{matmul:?} matmul out (bias {with_bias})"), &host(&g, d_out.all()), &out, 1e-5);
    }

    let (mut dinp, mut dweight, mut dbias) = (dinp0.clone(), dweight0.clone(), dbias0.clone());
    matmul_backward(&mut dinp, &mut dweight, Some(&mut dbias), &dout, &inp, &weight, bt, c, oc);
    let (d_dinp, d_dweight, d_dbias) = (dev(&g, &dinp0), dev(&g, &dweight0), dev(&g, &dbias0));
    g.matmul_backward(
        d_dinp.all(),
        d_dweight.all(),
        Some(d_dbias.all()),
        d_dout.all(),
        d_inp.all(),
        d_weight.all(),
        bt,
        c,
        oc,
    )
    .unwrap();
    // K = 259 (dinp) and 131 (dweight, dbias) terms
    assert_close(&format!("{matmul:?} matmul dinp"), &host(&g, d_dinp.all()), &dinp, 1e-4);
    assert_close(&format!("{matmul:?} matmul dweight"), &host(&g, d_dweight.all()), &dweight, 1e-4);
    assert_close(&format!("{matmul:?} matmul dbias"), &host(&g, d_dbias.all()), &dbias, 1e-4);

    // without dbias (the LM head): dbias must be left alone
    let d_dinp2 = dev(&g, &dinp0);
    g.matmul_backward(d_dinp2.all(), d_dweight.all(), None, d_dout.all(), d_inp.all(), d_weight.all(), bt, c, oc)
        .unwrap();
    assert_close(&format!("{matmul:?} matmul dbias untouched"), &host(&g, d_dbias.all()), &dbias, 1e-4);
}

fn matmul_version1_naive_matches_the_cpu() {
    check_matmul(Matmul::Naive);
}

fn matmul_version3_tiled_matches_the_cpu() {
    check_matmul(Matmul::Handwritten);
}

/// Split-K of the hand-written weight gradient (`matmul_backward_dweight3` + `matmul_splitk_reduce`)
/// against the CPU, in fp32 and bf16: a small dweight (OC, C) over many rows, cut into the slices
/// this GPU's SM count gives (`Gpu::matmul_dweight_slices`); and the same bits on a second run (the
/// partials are added in a fixed order, without atomics). Sizes: 2567 rows (the last slice shorter
/// than the others) with odd C and OC (number-by-number loads), and 1100 rows with C and OC
/// multiples of 4 (the 128-bit loads).
fn matmul_split_k_weight_gradient_matches_the_cpu_and_repeats_bit_for_bit() {
    let Some(mut g) = gpu(Matmul::Handwritten) else { return };
    g.reserve_matmul_scratch(1 << 20).unwrap();
    let mut rng = Rng::new(14);
    for (bt, c, oc) in [(2567, 77, 131), (1100, 132, 196)] {
        let slices = g.matmul_dweight_slices(bt, c, oc);
        println!("dweight ({oc}, {c}) over {bt} rows on {} SMs: {slices} slices", g.num_sms);
        assert!(slices > 1, "({bt}, {c}, {oc}) should split on {} SMs", g.num_sms);
        let (inp, weight, dout) = (
            random_bf16(&mut rng, bt * c, 1.0),
            random_bf16(&mut rng, oc * c, 1.0),
            random_bf16(&mut rng, bt * oc, 1.0),
        );
        let dweight0 = random_vec(&mut rng, oc * c, 1.0);
        // bf16 numbers, so that the fp32 and bf16 runs have the same exact products (only the
        // summation order differs from the CPU); K = BT terms of order 1
        let (mut dinp, mut dweight) = (vec![0.0; bt * c], dweight0.clone());
        matmul_backward(&mut dinp, &mut dweight, None, &dout, &inp, &weight, bt, c, oc);
        for precision in [Precision::Fp32, Precision::Bf16] {
            let mut runs = Vec::new();
            for _ in 0..2 {
                let d_dweight = dev(&g, &dweight0);
                match precision {
                    Precision::Fp32 => {
                        let (d_dinp, d_dout, d_inp, d_w) =
                            (g.alloc::<f32>(bt * c).unwrap(), dev(&g, &dout), dev(&g, &inp), dev(&g, &weight));
                        g.matmul_backward(
                            d_dinp.all(),
                            d_dweight.all(),
                            None,
                            d_dout.all(),
                            d_inp.all(),
                            d_w.all(),
                            bt,
                            c,
                            oc,
                        )
                        .unwrap();
                    }
                    Precision::Bf16 => {
                        let (d_dinp, d_dout, d_inp, d_w) =
                            (g.alloc::<Bf16>(bt * c).unwrap(), dev16(&g, &dout), dev16(&g, &inp), dev16(&g, &weight));
                        g.matmul_backward(
                            d_dinp.all(),
                            d_dweight.all(),
                            None,
                            d_dout.all(),
                            d_inp.all(),
                            d_w.all(),
                            bt,
                            c,
                            oc,
                        )
                        .unwrap();
                    }
                }
                runs.push(host(&g, d_dweight.all()));
            }
            let what = format!("{precision} split-K dweight ({bt},{c},{oc}), {slices} slices");
            assert_close(&what, &runs[0], &dweight, 1e-4);
            assert!(runs[0].iter().zip(&runs[1]).all(|(a, b)| a.to_bits() == b.to_bits()), "{what}: two runs differ");
        }
    }
}

fn matmul_cublas_matches_the_cpu() {
    check_matmul(Matmul::Cublas);
}

fn matmul_tiled_and_cublas_agree_on_gpt2_sized_layers() {
    let Some(mut g) = gpu(Matmul::Handwritten) else { return };
    g.enable_cublas().expect("cuBLAS");
    // a d12 MLP projection (4C -> C) over 2 sequences of 200 tokens, 400 = 3 * 128 + 16 rows
    let (bt, c, oc) = (400, 3072, 768);
    let mut rng = Rng::new(13);
    let (inp, weight, bias) =
        (random_vec(&mut rng, bt * c, 1.0), random_vec(&mut rng, oc * c, 0.02), random_vec(&mut rng, oc, 0.1));
    let dout = random_vec(&mut rng, bt * oc, 1.0);
    let (d_inp, d_weight, d_bias, d_dout) = (dev(&g, &inp), dev(&g, &weight), dev(&g, &bias), dev(&g, &dout));
    let mut results = Vec::new();
    for matmul in [Matmul::Handwritten, Matmul::Cublas] {
        g.matmul = matmul;
        let (out, dinp, dweight, dbias) =
            (g.alloc(bt * oc).unwrap(), g.alloc(bt * c).unwrap(), g.alloc(oc * c).unwrap(), g.alloc(oc).unwrap());
        g.matmul_forward(out.all(), d_inp.all(), d_weight.all(), Some(d_bias.all()), bt, c, oc).unwrap();
        g.matmul_backward(
            dinp.all(),
            dweight.all(),
            Some(dbias.all()),
            d_dout.all(),
            d_inp.all(),
            d_weight.all(),
            bt,
            c,
            oc,
        )
        .unwrap();
        results.push([out, dinp, dweight, dbias].map(|b| host(&g, b.all())));
    }
    // K = 3072 (forward), 768 (dinp), 400 (dweight): both sum in f32, in different orders
    for (i, name) in ["out", "dinp", "dweight", "dbias"].iter().enumerate() {
        assert_close(&format!("tiled vs cuBLAS {name}"), &results[0][i], &results[1][i], 1e-4);
    }
}

fn attention_forward_and_backward_match_the_cpu() {
    let Some(g) = gpu(Matmul::Handwritten) else { return };
    // 3 heads of 8 channels at T = 13 (less than one 32-wide tile), one GPT-2 head (64) at T = 71
    // (three tiles, the last partial), and the largest head (128) at T = 40
    for (b, t, c, nh) in [(2, 13, 24, 3), (1, 71, 64, 1), (2, 40, 256, 2)] {
        let mut rng = Rng::new(14);
        let inp = random_vec(&mut rng, b * t * 3 * c, 1.0);
        let dout = random_vec(&mut rng, b * t * c, 1.0);
        let dinp0 = random_vec(&mut rng, b * t * 3 * c, 1.0);
        let n_lse = b * nh * t;

        let (mut out, mut lse) = (vec![0.0; b * t * c], vec![0.0; n_lse]);
        attention_forward(&mut out, &mut lse, &inp, b, t, c, nh);
        let (mut dinp, mut delta) = (dinp0.clone(), vec![0.0; n_lse]);
        attention_backward(&mut dinp, &mut delta, &dout, &inp, &out, &lse, b, t, c, nh);

        let (d_out, d_lse, d_inp) = (g.alloc(b * t * c).unwrap(), g.alloc(n_lse).unwrap(), dev(&g, &inp));
        g.attention_forward(d_out.all(), d_lse.all(), d_inp.all(), b, t, c, nh).unwrap();
        let (d_dinp, d_delta, d_dout) = (dev(&g, &dinp0), g.alloc(n_lse).unwrap(), dev(&g, &dout));
        g.attention_backward(
            d_dinp.all(),
            d_delta.all(),
            d_dout.all(),
            d_inp.all(),
            d_out.all(),
            d_lse.all(),
            b,
            t,
            c,
            nh,
        )
        .unwrap();
        // dot products of up to 128 channels and softmaxes of up to 71 entries, GPU expf vs Rust exp,
        // in tiles vs one key at a time: 1e-5
        assert_close("attention out", &host(&g, d_out.all()), &out, 1e-5);
        assert_close("attention lse", &host(&g, d_lse.all()), &lse, 1e-5);
        assert_close("attention delta", &host(&g, d_delta.all()), &delta, 1e-5);
        assert_close("attention dinp", &host(&g, d_dinp.all()), &dinp, 1e-5);
    }
}

fn gelu_and_residual_forward_and_backward_match_the_cpu() {
    let Some(g) = gpu(Matmul::Handwritten) else { return };
    let n = 1000 + 7;
    let mut rng = Rng::new(15);
    let (x, y, dout) = (random_vec(&mut rng, n, 4.0), random_vec(&mut rng, n, 1.0), random_vec(&mut rng, n, 1.0));
    let (d1_0, d2_0) = (random_vec(&mut rng, n, 1.0), random_vec(&mut rng, n, 1.0));
    let (d_x, d_y, d_dout, d_out) = (dev(&g, &x), dev(&g, &y), dev(&g, &dout), g.alloc(n).unwrap());

    let mut out = vec![0.0; n];
    gelu_forward(&mut out, &x);
    g.gelu_forward(d_out.all(), d_x.all()).unwrap();
    // tanhf on the GPU and tanh in Rust differ by a couple of ulp; in the backward pass 1 - tanh^2
    // turns that into an absolute error of about 5e-7, times up to 5 (x = 4): 1e-5 for both
    assert_close("gelu out", &host(&g, d_out.all()), &out, 1e-5);
    let mut dinp = d1_0.clone();
    gelu_backward(&mut dinp, &x, &dout);
    let d_dinp = dev(&g, &d1_0);
    g.gelu_backward(d_dinp.all(), d_x.all(), d_dout.all()).unwrap();
    assert_close("gelu dinp", &host(&g, d_dinp.all()), &dinp, 1e-5);

    residual_forward(&mut out, &x, &y);
    g.residual_forward(d_out.all(), d_x.all(), d_y.all()).unwrap();
    assert_close("residual out", &host(&g, d_out.all()), &out, 0.0);
    let (mut d1, mut d2) = (d1_0.clone(), d2_0.clone());
    residual_backward(&mut d1, &mut d2, &dout);
    let (d_d1, d_d2) = (dev(&g, &d1_0), dev(&g, &d2_0));
    g.residual_backward(d_d1.all(), d_d2.all(), d_dout.all()).unwrap();
    assert_close("residual dinp1", &host(&g, d_d1.all()), &d1, 0.0);
    assert_close("residual dinp2", &host(&g, d_d2.all()), &d2, 0.0);
}

fn softmax_crossentropy_forward_and_backward_match_the_cpu() {
    let Some(g) = gpu(Matmul::Handwritten) else { return };
    let (bt, v, vp) = (5, 1000, 1031);
    let mut rng = Rng::new(16);
    let logits = random_vec(&mut rng, bt * vp, 5.0);
    let targets = random_tokens(&mut rng, bt, v);
    let dlosses = random_vec(&mut rng, bt, 1.0);
    let (mut losses, mut lse) = (vec![0.0; bt], vec![0.0; bt]);
    crossentropy_forward(&mut losses, &mut lse, &logits, &targets, bt, v, vp);
    let mut dlogits = logits.clone();
    crossentropy_softmax_backward(&mut dlogits, &dlosses, &lse, &targets, bt, v, vp);

    let (d_logits, d_targets, d_losses, d_lse) =
        (dev(&g, &logits), dev(&g, &targets), g.alloc(bt).unwrap(), g.alloc(bt).unwrap());
    // SAFETY: the targets are below V <= Vp.
    unsafe { g.crossentropy_forward(d_losses.all(), d_lse.all(), d_logits.all(), d_targets.all(), bt, v, vp).unwrap() };
    let d_dlosses = dev(&g, &dlosses);
    g.crossentropy_softmax_backward(d_logits.all(), d_dlosses.all(), d_lse.all(), d_targets.all(), bt, v, vp).unwrap();
    // the sum over 1000 exponentials is a tree on the GPU, a loop on the CPU: 1e-5
    assert_close("crossentropy losses", &host(&g, d_losses.all()), &losses, 1e-5);
    assert_close("crossentropy lse", &host(&g, d_lse.all()), &lse, 1e-5);
    assert_close("crossentropy dlogits (over the logits)", &host(&g, d_logits.all()), &dlogits, 1e-5);
}

// ----------------------------------------------------------------------------------- bf16 layers

/// A bf16 output of the GPU against the CPU's bf16 layer (`src/cpu/bf16.rs`), both bf16 numbers: as
/// dev/cuda_emu checks them. Only the order of the fp32 sums inside the layer differs, and that moves
/// a value across a bf16 rounding boundary rarely, so every value must be equal, one bf16 step apart
/// (2^-8 of it), or within `tol` of the layer's scale (where a sum cancels and the bf16 step gets
/// tiny), and at most `max_frac` of them may differ at all. A missing or doubled rounding, or
/// truncation instead of round-to-nearest-even, changes about half of the values.
fn assert_bf16_close(what: &str, gpu: &[f32], cpu: &[f32], tol: f32, max_frac: f64) {
    assert_eq!(gpu.len(), cpu.len(), "{what}: lengths differ");
    let scale = 1.0 + cpu.iter().fold(0.0f32, |m, &x| m.max(x.abs()));
    let (mut differ, mut bad, mut worst_steps) = (0usize, 0usize, 0.0f32);
    for (&g, &c) in gpu.iter().zip(cpu) {
        let d = (g - c).abs();
        if d == 0.0 {
            continue;
        }
        differ += 1;
        // one bf16 step at the larger of the two: 2^(e - 8) for |x| = m 2^e, m in [0.5, 1)
        let larger = g.abs().max(c.abs()).max(f32::MIN_POSITIVE);
        let step = 2f32.powi(larger.log2().floor() as i32 - 7);
        let steps = d / step;
        worst_steps = if steps.is_nan() { f32::INFINITY } else { worst_steps.max(steps) };
        if !(steps <= 1.0 || d <= tol * scale) {
            bad += 1;
        }
    }
    let frac = differ as f64 / cpu.len().max(1) as f64;
    println!(
        "{what:>40}: n {:>7} | differ {differ:>5} ({:.3}%, at most {:.1}%) | worst {worst_steps:.2} bf16 steps",
        cpu.len(),
        100.0 * frac,
        100.0 * max_frac
    );
    assert!(bad == 0, "{what}: {bad} values more than one bf16 step (and {tol:.0e} of the scale) from the CPU's");
    assert!(frac <= max_frac, "{what}: {differ} of {} values differ from the CPU's bf16 layer", cpu.len());
}

/// What may differ: elementwise layers compute exactly the CPU's numbers up to the GPU's own
/// expf/tanhf (a few fp32 ulps, rarely a bf16 step); layers that sum in another order differ in a
/// few values by one step (dev/cuda_emu measures up to 0.07%).
const BF16_FEW: f64 = 0.01;

/// A device copy of bf16 numbers held in f32s, as 16-bit words.
fn dev16(gpu: &Gpu, host: &[f32]) -> DeviceBuffer<Bf16> {
    dev(gpu, &to_storage::<Bf16>(host))
}

/// A host copy of bf16 words, widened to f32s.
fn host16(gpu: &Gpu, d: Dev<Bf16>) -> Vec<f32> {
    to_f32s(&gpu.download(d).expect("download"))
}

/// Random bf16 numbers, held in f32s.
fn random_bf16(rng: &mut Rng, n: usize, scale: f32) -> Vec<f32> {
    let mut v = random_vec(rng, n, scale);
    round_slice_bf16(&mut v);
    v
}

fn bf16_layers_match_the_cpu_bf16_layers() {
    let Some(mut g) = gpu(Matmul::Handwritten) else { return };
    let mut rng = Rng::new(21);

    // encoder: one addition per number, exact; dwte and dwpe fp32
    let (b, t, c, v, vp, maxt) = (3, 7, 37, 50, 53, 9);
    let inp = random_tokens(&mut rng, b * t, v);
    let (wte, wpe, dout) = (
        random_bf16(&mut rng, vp * c, 1.0),
        random_bf16(&mut rng, maxt * c, 1.0),
        random_bf16(&mut rng, b * t * c, 1.0),
    );
    let mut out = vec![0.0; b * t * c];
    cpu16::encoder_forward(&mut out, &inp, &wte, &wpe, b, t, c);
    let (d_out, d_inp, d_wte, d_wpe) =
        (g.alloc::<Bf16>(b * t * c).unwrap(), dev(&g, &inp), dev16(&g, &wte), dev16(&g, &wpe));
    // SAFETY: the tokens are below the vocabulary, the rows of wte
    unsafe { g.encoder_forward(d_out.all(), d_inp.all(), d_wte.all(), d_wpe.all(), b, t, c).unwrap() };
    assert_bf16_close("bf16 encoder out", &host16(&g, d_out.all()), &out, 0.0, 0.0);
    let (mut dwte, mut dwpe) = (vec![0.0; vp * c], vec![0.0; maxt * c]);
    encoder_backward(&mut dwte, &mut dwpe, &dout, &inp, b, t, c);
    let (d_dwte, d_dwpe, d_dout) =
        (g.alloc::<f32>(vp * c).unwrap(), g.alloc::<f32>(maxt * c).unwrap(), dev16(&g, &dout));
    // SAFETY: as above
    unsafe { g.encoder_backward(d_dwte.all(), d_dwpe.all(), d_dout.all(), d_inp.all(), b, t, c).unwrap() };
    assert_close("bf16 encoder dwte (fp32)", &host(&g, d_dwte.all()), &dwte, 1e-6);

    // layernorm: mean, rstd, dweight and dbias fp32
    let (bt, c) = (517, 95);
    let (x, w, bias) =
        (random_bf16(&mut rng, bt * c, 2.0), random_bf16(&mut rng, c, 1.0), random_bf16(&mut rng, c, 1.0));
    let (dout, dinp0) = (random_bf16(&mut rng, bt * c, 1.0), random_bf16(&mut rng, bt * c, 1.0));
    let (mut out, mut mean, mut rstd) = (vec![0.0; bt * c], vec![0.0; bt], vec![0.0; bt]);
    cpu16::layernorm_forward(&mut out, &mut mean, &mut rstd, &x, &w, &bias, bt, c);
    let (mut dinp, mut dw, mut db) = (dinp0.clone(), vec![0.0; c], vec![0.0; c]);
    cpu16::layernorm_backward(&mut dinp, &mut dw, &mut db, &dout, &x, &w, &mean, &rstd, bt, c);
    let (d_out, d_mean, d_rstd) =
        (g.alloc::<Bf16>(bt * c).unwrap(), g.alloc::<f32>(bt).unwrap(), g.alloc::<f32>(bt).unwrap());
    let (d_x, d_w, d_b) = (dev16(&g, &x), dev16(&g, &w), dev16(&g, &bias));
    g.layernorm_forward(d_out.all(), d_mean.all(), d_rstd.all(), d_x.all(), d_w.all(), d_b.all(), bt, c).unwrap();
    let (d_dinp, d_dw, d_db, d_dout) =
        (dev16(&g, &dinp0), g.alloc::<f32>(c).unwrap(), g.alloc::<f32>(c).unwrap(), dev16(&g, &dout));
    g.layernorm_backward(
        d_dinp.all(),
        d_dw.all(),
        d_db.all(),
        d_dout.all(),
        d_x.all(),
        d_w.all(),
        d_mean.all(),
        d_rstd.all(),
        bt,
        c,
    )
    .unwrap();
    assert_bf16_close("bf16 layernorm out", &host16(&g, d_out.all()), &out, 1e-5, BF16_FEW);
    assert_close("bf16 layernorm rstd (fp32)", &host(&g, d_rstd.all()), &rstd, 1e-5);
    assert_bf16_close("bf16 layernorm dinp", &host16(&g, d_dinp.all()), &dinp, 1e-5, BF16_FEW);
    assert_close("bf16 layernorm dweight (fp32)", &host(&g, d_dw.all()), &dw, 1e-4);

    // matmul, naive and tiled: dweight and dbias fp32
    let (bt, c, oc) = (131, 77, 259);
    let (x, w, bias) =
        (random_bf16(&mut rng, bt * c, 1.0), random_bf16(&mut rng, oc * c, 1.0), random_bf16(&mut rng, oc, 1.0));
    let (dout, dinp0) = (random_bf16(&mut rng, bt * oc, 1.0), random_bf16(&mut rng, bt * c, 1.0));
    let mut out = vec![0.0; bt * oc];
    cpu16::matmul_forward(&mut out, &x, &w, Some(&bias), bt, c, oc);
    let (mut dinp, mut dw, mut db) = (dinp0.clone(), vec![0.0; oc * c], vec![0.0; oc]);
    cpu16::matmul_backward(&mut dinp, &mut dw, Some(&mut db), &dout, &x, &w, bt, c, oc);
    let (d_x, d_w, d_bias, d_dout) = (dev16(&g, &x), dev16(&g, &w), dev16(&g, &bias), dev16(&g, &dout));
    for matmul in [Matmul::Naive, Matmul::Handwritten] {
        g.matmul = matmul;
        let d_out = g.alloc::<Bf16>(bt * oc).unwrap();
        g.matmul_forward(d_out.all(), d_x.all(), d_w.all(), Some(d_bias.all()), bt, c, oc).unwrap();
        let (d_dinp, d_dw, d_db) = (dev16(&g, &dinp0), g.alloc::<f32>(oc * c).unwrap(), g.alloc::<f32>(oc).unwrap());
        g.matmul_backward(d_dinp.all(), d_dw.all(), Some(d_db.all()), d_dout.all(), d_x.all(), d_w.all(), bt, c, oc)
            .unwrap();
        assert_bf16_close(&format!("bf16 {matmul:?} matmul out"), &host16(&g, d_out.all()), &out, 1e-5, BF16_FEW);
        assert_bf16_close(&format!("bf16 {matmul:?} matmul dinp"), &host16(&g, d_dinp.all()), &dinp, 1e-4, BF16_FEW);
        assert_close(&format!("bf16 {matmul:?} matmul dweight (fp32)"), &host(&g, d_dw.all()), &dw, 1e-4);
        assert_close(&format!("bf16 {matmul:?} matmul dbias (fp32)"), &host(&g, d_db.all()), &db, 1e-4);
    }
    g.matmul = Matmul::Handwritten;

    // attention: lse and delta fp32
    for (b, t, c, nh) in [(2, 13, 24, 3), (1, 71, 64, 1)] {
        let (x, dout, dinp0) = (
            random_bf16(&mut rng, b * t * 3 * c, 1.0),
            random_bf16(&mut rng, b * t * c, 1.0),
            random_bf16(&mut rng, b * t * 3 * c, 1.0),
        );
        let (mut out, mut lse) = (vec![0.0; b * t * c], vec![0.0; b * nh * t]);
        cpu16::attention_forward(&mut out, &mut lse, &x, b, t, c, nh);
        let (mut dinp, mut delta) = (dinp0.clone(), vec![0.0; b * nh * t]);
        cpu16::attention_backward(&mut dinp, &mut delta, &dout, &x, &out, &lse, b, t, c, nh);
        let (d_out, d_lse, d_x) =
            (g.alloc::<Bf16>(b * t * c).unwrap(), g.alloc::<f32>(b * nh * t).unwrap(), dev16(&g, &x));
        g.attention_forward(d_out.all(), d_lse.all(), d_x.all(), b, t, c, nh).unwrap();
        // the backward from the CPU's out, so that it checks the backward alone
        let (d_dinp, d_delta, d_dout, d_cpu_out, d_cpu_lse) =
            (dev16(&g, &dinp0), g.alloc::<f32>(b * nh * t).unwrap(), dev16(&g, &dout), dev16(&g, &out), dev(&g, &lse));
        g.attention_backward(
            d_dinp.all(),
            d_delta.all(),
            d_dout.all(),
            d_x.all(),
            d_cpu_out.all(),
            d_cpu_lse.all(),
            b,
            t,
            c,
            nh,
        )
        .unwrap();
        assert_bf16_close(&format!("bf16 attention out (T {t})"), &host16(&g, d_out.all()), &out, 1e-5, BF16_FEW);
        assert_close(&format!("bf16 attention lse (fp32) (T {t})"), &host(&g, d_lse.all()), &lse, 1e-5);
        assert_close(&format!("bf16 attention delta (fp32) (T {t})"), &host(&g, d_delta.all()), &delta, 1e-5);
        assert_bf16_close(&format!("bf16 attention dinp (T {t})"), &host16(&g, d_dinp.all()), &dinp, 1e-5, BF16_FEW);
    }

    // GELU and the residual
    let n = 1007;
    let (x, y, dout, d0) = (
        random_bf16(&mut rng, n, 4.0),
        random_bf16(&mut rng, n, 1.0),
        random_bf16(&mut rng, n, 1.0),
        random_bf16(&mut rng, n, 1.0),
    );
    let (d_x, d_y, d_dout, d_out) = (dev16(&g, &x), dev16(&g, &y), dev16(&g, &dout), g.alloc::<Bf16>(n).unwrap());
    let mut out = vec![0.0; n];
    cpu16::gelu_forward(&mut out, &x);
    g.gelu_forward(d_out.all(), d_x.all()).unwrap();
    assert_bf16_close("bf16 gelu out", &host16(&g, d_out.all()), &out, 1e-5, BF16_FEW);
    let mut dinp = d0.clone();
    cpu16::gelu_backward(&mut dinp, &x, &dout);
    let d_dinp = dev16(&g, &d0);
    g.gelu_backward(d_dinp.all(), d_x.all(), d_dout.all()).unwrap();
    assert_bf16_close("bf16 gelu dinp", &host16(&g, d_dinp.all()), &dinp, 1e-5, BF16_FEW);
    cpu16::residual_forward(&mut out, &x, &y);
    g.residual_forward(d_out.all(), d_x.all(), d_y.all()).unwrap();
    assert_bf16_close("bf16 residual out", &host16(&g, d_out.all()), &out, 0.0, 0.0);
    let (mut d1, mut d2) = (d0.clone(), dout.clone());
    cpu16::residual_backward(&mut d1, &mut d2, &y);
    let (d_d1, d_d2) = (dev16(&g, &d0), dev16(&g, &dout));
    g.residual_backward(d_d1.all(), d_d2.all(), d_y.all()).unwrap();
    assert_bf16_close("bf16 residual dinp1", &host16(&g, d_d1.all()), &d1, 0.0, 0.0);
    assert_bf16_close("bf16 residual dinp2", &host16(&g, d_d2.all()), &d2, 0.0, 0.0);

    // the classifier: bf16 logits in, fp32 losses and lse, bf16 dlogits over the logits
    let (bt, v, vp) = (5, 1000, 1031);
    let (logits, dlosses) = (random_bf16(&mut rng, bt * vp, 5.0), random_vec(&mut rng, bt, 1.0));
    let targets = random_tokens(&mut rng, bt, v);
    let (mut losses, mut lse) = (vec![0.0; bt], vec![0.0; bt]);
    crossentropy_forward(&mut losses, &mut lse, &logits, &targets, bt, v, vp);
    let mut dlogits = logits.clone();
    cpu16::crossentropy_softmax_backward(&mut dlogits, &dlosses, &lse, &targets, bt, v, vp);
    let (d_logits, d_targets, d_losses, d_lse) =
        (dev16(&g, &logits), dev(&g, &targets), g.alloc::<f32>(bt).unwrap(), g.alloc::<f32>(bt).unwrap());
    // SAFETY: the targets are below V <= Vp.
    unsafe { g.crossentropy_forward(d_losses.all(), d_lse.all(), d_logits.all(), d_targets.all(), bt, v, vp).unwrap() };
    let d_dlosses = dev(&g, &dlosses);
    g.crossentropy_softmax_backward(d_logits.all(), d_dlosses.all(), d_lse.all(), d_targets.all(), bt, v, vp).unwrap();
    assert_close("bf16 crossentropy losses (fp32)", &host(&g, d_losses.all()), &losses, 1e-5);
    assert_bf16_close("bf16 crossentropy dlogits", &host16(&g, d_logits.all()), &dlogits, 1e-5, BF16_FEW);

    // the bf16 weight copy: bit for bit precision.rs's rounding, ties, NaN and infinity included
    let mut params = random_vec(&mut rng, 10007, 1.0);
    for (i, bits) in [0x3F80_8000u32, 0x3F81_8000, 0x7F80_0001, 0x7F7F_FFFF, 0xFF80_0000].iter().enumerate() {
        params[i] = f32::from_bits(*bits);
    }
    let (d_params, d_weights) = (dev(&g, &params), g.alloc::<Bf16>(params.len()).unwrap());
    g.refresh_bf16_weights(d_weights.all(), d_params.all()).unwrap();
    let words = g.download(d_weights.all()).unwrap();
    let wrong = words.iter().zip(&params).filter(|(w, p)| w.0 != to_bf16_bits(**p)).count();
    println!("{:>40}: n {:>7} | bits differing from precision.rs: {wrong}", "bf16 weight copy", params.len());
    assert_eq!(wrong, 0, "the bf16 weight copy differs from src/precision.rs's rounding");
}

/// cuBLASLt's bf16 GEMMs (`--matmul cublas` in bf16) against the CPU's bf16 layers, as
/// `bf16_layers_match_the_cpu_bf16_layers` checks the hand-written ones: the matmul with its bias
/// epilogue, the matmul with the GELU fused (the aux output is the pre-GELU, the CPU's bf16 matmul;
/// the GELU is of the fp32 sums, rounded once), and the backward, which adds (+=, beta = 1) into
/// dinp, dweight and dbias that already hold numbers. Tolerances: as the hand-written bf16 matmul,
/// every value equal or one bf16 step apart, at most `BF16_FEW` of them differing (cuBLASLt sums in
/// its own order, maybe split over k); fp32 dweight and dbias to 1e-4 of their scale (the sums'
/// rounding, as `check_matmul`). cuBLASLt's GELU is its own fp32 code for the tanh approximation:
/// one bf16 step, in at most 5% of the values, is allowed there.
fn cublaslt_layers_match_the_cpu_layers_in_bf16() {
    let Some(g) = gpu(Matmul::Cublas) else { return };
    let mut rng = Rng::new(23);
    // OC a multiple of 8 (the fused GELU's aux leading dimension), the rest not multiples of anything
    let (bt, c, oc) = (131, 77, 264);
    let (x, w, bias) =
        (random_bf16(&mut rng, bt * c, 1.0), random_bf16(&mut rng, oc * c, 1.0), random_bf16(&mut rng, oc, 1.0));
    let (dout, dinp0) = (random_bf16(&mut rng, bt * oc, 1.0), random_bf16(&mut rng, bt * c, 1.0));
    let (dw0, db0) = (random_vec(&mut rng, oc * c, 1.0), random_vec(&mut rng, oc, 1.0));
    let (d_x, d_w, d_bias, d_dout) = (dev16(&g, &x), dev16(&g, &w), dev16(&g, &bias), dev16(&g, &dout));

    // the matmul, with the bias epilogue and without a bias
    for with_bias in [true, false] {
        let b = with_bias.then_some(&bias[..]);
        let mut out = vec![0.0; bt * oc];
        cpu16::matmul_forward(&mut out, &x, &w, b, bt, c, oc);
        let d_out = g.alloc::<Bf16>(bt * oc).unwrap();
        let d_b = with_bias.then(|| d_bias.all());
        g.cublaslt_matmul_forward(d_out.all(), d_x.all(), d_w.all(), d_b, bt, c, oc).unwrap();
        let what = if with_bias { "cuBLASLt bf16 matmul out (BIAS)" } else { "cuBLASLt bf16 matmul out (no bias)" };
        assert_bf16_close(what, &host16(&g, d_out.all()), &out, 1e-5, BF16_FEW);
    }

    // the matmul with the GELU fused: aux = the rounded fp32 sums, out = gelu of the unrounded sums
    let mut pre = vec![0.0; bt * oc];
    matmul_forward(&mut pre, &x, &w, Some(&bias), bt, c, oc);
    let (mut aux, mut out) = (pre.clone(), vec![0.0; bt * oc]);
    round_slice_bf16(&mut aux);
    gelu_forward(&mut out, &pre);
    round_slice_bf16(&mut out);
    let (d_pre, d_out) = (g.alloc::<Bf16>(bt * oc).unwrap(), g.alloc::<Bf16>(bt * oc).unwrap());
    g.cublaslt_matmul_gelu_forward(d_pre.all(), d_out.all(), d_x.all(), d_w.all(), Some(d_bias.all()), bt, c, oc)
        .unwrap();
    assert_bf16_close("cuBLASLt bf16 pre-GELU (aux)", &host16(&g, d_pre.all()), &aux, 1e-5, BF16_FEW);
    assert_bf16_close("cuBLASLt bf16 GELU out (GELU_AUX_BIAS)", &host16(&g, d_out.all()), &out, 1e-5, 0.05);

    // the backward, adding into gradients that hold numbers already
    let (mut dinp, mut dw, mut db) = (dinp0.clone(), dw0.clone(), db0.clone());
    cpu16::matmul_backward(&mut dinp, &mut dw, Some(&mut db), &dout, &x, &w, bt, c, oc);
    let (d_dinp, d_dw, d_db) = (dev16(&g, &dinp0), dev(&g, &dw0), dev(&g, &db0));
    g.cublaslt_matmul_backward(
        d_dinp.all(),
        d_dw.all(),
        Some(d_db.all()),
        d_dout.all(),
        d_x.all(),
        d_w.all(),
        bt,
        c,
        oc,
    )
    .unwrap();
    assert_bf16_close("cuBLASLt bf16 matmul dinp (+=)", &host16(&g, d_dinp.all()), &dinp, 1e-4, BF16_FEW);
    assert_close("cuBLASLt bf16 matmul dweight (fp32, +=)", &host(&g, d_dw.all()), &dw, 1e-4);
    assert_close("cuBLASLt bf16 matmul dbias (BGRADB, fp32, +=)", &host(&g, d_db.all()), &db, 1e-4);
    // and without a bias gradient (the DEFAULT epilogue on the dweight GEMM)
    let (mut dinp, mut dw) = (dinp0.clone(), dw0.clone());
    cpu16::matmul_backward(&mut dinp, &mut dw, None, &dout, &x, &w, bt, c, oc);
    let (d_dinp, d_dw) = (dev16(&g, &dinp0), dev(&g, &dw0));
    g.cublaslt_matmul_backward(d_dinp.all(), d_dw.all(), None, d_dout.all(), d_x.all(), d_w.all(), bt, c, oc).unwrap();
    assert_close("cuBLASLt bf16 matmul dweight (fp32, no dbias)", &host(&g, d_dw.all()), &dw, 1e-4);
}

/// The GPU model allocates exactly the buffers of `src/memory.rs`'s plan, byte for byte: what
/// `gpt2 memory` prints is what a run takes (plus the context, kernels and cuBLAS). On the host
/// stand-ins of dev/cuda_mock the count is of host allocations standing in for device ones.
/// A small GPT-2 whose sizes are not multiples of anything: 2 layers, 3 heads of 8 channels,
/// a vocabulary of 61 padded to 64, positions up to 16.
fn small_config() -> ModelConfig {
    ModelConfig { max_seq_len: 16, vocab_size: 61, padded_vocab_size: 64, num_layers: 2, num_heads: 3, channels: 24 }
}

fn memory_plan_is_what_the_gpu_model_allocates() {
    for precision in [Precision::Fp32, Precision::Bf16] {
        let Some(g) = gpu(Matmul::Handwritten) else { return };
        let config = small_config();
        let (b, t) = (3, 11);
        let params = gpt2_init(&config, 7);
        let before = g.allocated_bytes();
        let model = gpt2::cuda::CudaGpt2::new(g, config, &params, b, t, precision).unwrap();
        let allocated = model.gpu.allocated_bytes() - before;
        let plan = gpt2::memory::MemoryPlan::new(&config, b, t, precision).unwrap();
        println!("{precision}: allocated {allocated} bytes, the plan says {}", plan.total_bytes());
        assert_eq!(allocated, plan.total_bytes(), "{precision}: the GPU model's buffers differ from the memory plan");
    }
}

fn adamw_and_global_norm_match_the_cpu() {
    let Some(g) = gpu(Matmul::Handwritten) else { return };
    let config = small_config();
    let layout = ParamLayout::new(&config);
    let n = layout.total;
    let mut rng = Rng::new(17);
    let params0 = random_vec(&mut rng, n, 1.0);
    let (m0, v0) =
        (random_vec(&mut rng, n, 0.1), random_vec(&mut rng, n, 0.1).iter().map(|x| x.abs()).collect::<Vec<_>>());
    let mut model = gpt2::cuda::CudaGpt2::new(g, config, &params0, 1, 1, Precision::Fp32).unwrap();
    model.set_optimizer_state(&m0, &v0).unwrap();
    let (mut params, mut m, mut v) = (params0.clone(), m0.clone(), v0.clone());
    let adamw = AdamWConfig::default();
    for t in 1..=3 {
        let grads = random_vec(&mut rng, n, 2.0);
        model.set_grads(&grads).unwrap();
        // the norm: squares summed in f64 on both sides
        let (cpu_norm, gpu_norm) = (global_norm(&grads), model.grad_norm().unwrap());
        println!("global norm: cpu {cpu_norm} gpu {gpu_norm}");
        assert!((cpu_norm - gpu_norm).abs() <= 1e-6 * cpu_norm, "global norm: cpu {cpu_norm} gpu {gpu_norm}");
        let scale = clip_scale(cpu_norm, 1.0);
        adamw_update(&mut params, &grads, &mut m, &mut v, &layout, &adamw, 1e-2, t, scale);
        model.update(&adamw, 1e-2, t, scale).unwrap();
    }
    // elementwise, a handful of flops each (the GPU may fuse multiply-adds): 1e-6
    let (gm, gv) = model.optimizer_state().unwrap();
    assert_close("adamw params", &model.params().unwrap(), &params, 1e-6);
    assert_close("adamw m", &gm, &m, 1e-6);
    assert_close("adamw v", &gv, &v, 1e-6);
}

// ------------------------------------------------------------------------------- whole model

/// The GPU backend for `config` with `params`, or None when there is no GPU (see `gpu`).
fn cuda_backend(matmul: Matmul, config: ModelConfig, params: &[f32], b: usize, t: usize) -> Option<CudaBackend> {
    cuda_backend_in(Precision::Fp32, matmul, config, params, b, t)
}

/// `cuda_backend` in `precision`.
fn cuda_backend_in(
    precision: Precision,
    matmul: Matmul,
    config: ModelConfig,
    params: &[f32],
    b: usize,
    t: usize,
) -> Option<CudaBackend> {
    if !have_gpu() {
        return None;
    }
    Some(CudaBackend::new(0, matmul, precision, config, params, b, t).expect("CUDA backend"))
}

/// One training step as the loop in `src/train.rs` does it; returns (loss, norm).
fn step(backend: &mut dyn Backend, inputs: &[u32], targets: &[u32], b: usize, t: usize, n: u64) -> (f32, f32) {
    backend.zero_grad().unwrap();
    let loss = backend.forward_backward(inputs, targets, b, t, 1.0).unwrap();
    let norm = backend.grad_norm().unwrap();
    backend.update(&AdamWConfig::default(), 1e-3, n, clip_scale(norm, 1.0)).unwrap();
    (loss, norm)
}

fn check_training_step(matmul: Matmul) {
    let config = small_config();
    let (b, t) = (3, 11);
    let params = gpt2_init(&config, 7);
    let Some(mut gpu_backend) = cuda_backend(matmul, config, &params, b, t) else { return };
    let mut cpu_backend = CpuBackend::new(config, params.clone());
    let mut rng = Rng::new(18);
    let inputs = random_tokens(&mut rng, b * t, config.vocab_size);
    let targets = random_tokens(&mut rng, b * t, config.vocab_size);

    // one step, looked at closely: loss, every gradient, the norm, the updated parameters
    cpu_backend.zero_grad().unwrap();
    gpu_backend.zero_grad().unwrap();
    let cpu_loss = cpu_backend.forward_backward(&inputs, &targets, b, t, 1.0).unwrap();
    let gpu_loss = gpu_backend.forward_backward(&inputs, &targets, b, t, 1.0).unwrap();
    println!("{matmul:?} step 1 loss: cpu {cpu_loss} gpu {gpu_loss}");
    assert!((cpu_loss - gpu_loss).abs() <= 1e-5 * cpu_loss, "loss: cpu {cpu_loss} gpu {gpu_loss}");
    let gpu_grads = gpu_backend.model.grads().unwrap();
    let layout = ParamLayout::new(&config);
    for (i, name) in gpt2::model::PARAM_NAMES.iter().enumerate() {
        let r = layout.range(i);
        // each gradient is a chain of the layers' sums: 1e-4 of its largest entry
        assert_close(&format!("{matmul:?} grad {name}"), &gpu_grads[r.clone()], &cpu_backend.model.grads[r], 1e-4);
    }
    let (cpu_norm, gpu_norm) = (cpu_backend.grad_norm().unwrap(), gpu_backend.grad_norm().unwrap());
    assert!((cpu_norm - gpu_norm).abs() <= 1e-4 * cpu_norm, "norm: cpu {cpu_norm} gpu {gpu_norm}");
    let adamw = AdamWConfig::default();
    cpu_backend.update(&adamw, 1e-3, 1, clip_scale(cpu_norm, 1.0)).unwrap();
    gpu_backend.update(&adamw, 1e-3, 1, clip_scale(cpu_norm, 1.0)).unwrap();
    // AdamW's first step moves each parameter by lr * g / (|g| + eps), about lr * sign(g): a gradient
    // that is zero up to rounding may move its parameter anywhere in [-lr, lr] on either side, so
    // the parameters are compared to lr (1e-3). The AdamW kernel itself is checked to 1e-6 above.
    assert_close(
        &format!("{matmul:?} params after 1 step"),
        &gpu_backend.params().unwrap(),
        &cpu_backend.params().unwrap(),
        1e-3,
    );

    // nine more steps on the same batch: the loss falls the same way on both
    for n in 2..=10 {
        let (cpu_loss, _) = step(&mut cpu_backend, &inputs, &targets, b, t, n);
        let (gpu_loss, _) = step(&mut gpu_backend, &inputs, &targets, b, t, n);
        println!("{matmul:?} step {n:>2} loss: cpu {cpu_loss:.6} gpu {gpu_loss:.6}");
        // rounding differences feed back through 10 updates: 1e-3 relative
        assert!((cpu_loss - gpu_loss).abs() <= 1e-3 * cpu_loss, "step {n}: cpu {cpu_loss} gpu {gpu_loss}");
    }
    let final_cpu = cpu_backend.loss(&inputs, &targets, b, t).unwrap();
    let final_gpu = gpu_backend.loss(&inputs, &targets, b, t).unwrap();
    assert!(final_gpu < cpu_loss, "the GPU's loss did not fall: {cpu_loss} -> {final_gpu}");
    assert!((final_cpu - final_gpu).abs() <= 1e-3 * final_cpu, "after 10 steps: cpu {final_cpu} gpu {final_gpu}");
}

fn training_steps_match_the_cpu_with_the_tiled_matmul() {
    check_training_step(Matmul::Handwritten);
}

fn training_steps_match_the_cpu_with_the_naive_matmul() {
    check_training_step(Matmul::Naive);
}

fn training_steps_match_the_cpu_with_cublas() {
    check_training_step(Matmul::Cublas);
}

// ------------------------------------------------------------------------------- bf16, whole model

/// The CPU model in `precision` with `kernels` (src/cpu/layers.rs picks the layers).
fn cpu_backend_in(precision: Precision, kernels: CpuKernels, config: ModelConfig, params: &[f32]) -> CpuBackend {
    let mut backend = CpuBackend::new(config, params.to_vec());
    backend.model.kernels = kernels;
    backend.model.set_precision(precision);
    backend
}

/// Asserts that every |got - want| <= tol * max |want|, the largest difference relative to the
/// tensor's largest entry (gradients of different tensors differ in size by 100x), and prints it.
fn assert_relative(what: &str, got: &[f32], want: &[f32], tol: f32) -> f32 {
    assert_eq!(got.len(), want.len(), "{what}: lengths differ");
    let largest = want.iter().fold(0.0f32, |m, &x| m.max(x.abs()));
    let worst = got
        .iter()
        .zip(want)
        .fold(0.0f32, |m, (&g, &w)| if (g - w).abs() > m || g.is_nan() { (g - w).abs() } else { m });
    let relative = if largest > 0.0 { worst / largest } else { worst };
    println!("{what:>52}: n {:>6} | max|want| {largest:>9.3e} | max diff {worst:>9.2e} | relative {relative:.2e} | tol {tol:.0e}", want.len());
    assert!(relative <= tol, "{what}: differs by {relative:.2e} of its largest entry, more than {tol:.0e}");
    relative
}

/// A GPT-2 large enough that the CPU's fast layers sum in other orders than its reference layers
/// (at `small_config`'s 24 channels they happen to agree bit for bit): 2 layers, 4 heads of 32
/// channels, a vocabulary of 200 padded to 256.
fn bf16_config() -> ModelConfig {
    ModelConfig { max_seq_len: 64, vocab_size: 200, padded_vocab_size: 256, num_layers: 2, num_heads: 4, channels: 128 }
}

/// bf16 on the GPU against bf16 on the CPU, and against fp32, over ten training steps.
///
/// Against the CPU in bf16 the two follow one definition (`src/precision.rs`) and differ only in
/// the order fp32 sums are added up inside a layer. But a different last fp32 bit now and then moves
/// a value across a bf16 rounding boundary, a difference of one bf16 step (2^-8, 0.4% of the value),
/// which every layer after it carries along, so whole steps differ by much more than the kernels do
/// (those are compared value by value in dev/cuda_emu). How much more is measured here on the CPU:
/// its fast layers sum in other orders than its reference layers, as a GPU does, and their difference
/// is printed as "CPU fast vs reference" (measured at this size: gradients up to 4e-3 of each
/// tensor's largest entry, losses up to 2.4e-4 relative, parameters after 10 steps up to 1e-2 =
/// 10 lr, where AdamW's step of about lr * sign(g) follows a near-zero gradient whose sign flipped).
/// The tolerances against the CPU's bf16 are those, with a margin of about 2.5. Against fp32 the
/// difference is bf16's own rounding of every stored value (gradients up to 1e-2, losses up to 9e-4):
/// the loose tolerances are those with the same margin. On the host stand-ins (dev/cuda_mock), which
/// call the CPU's bf16 reference layers, the GPU path must match those exactly: the lines
/// "vs CPU bf16 reference" must say 0 there (dev/cuda_mock/run.sh checks it).
fn check_bf16_steps(matmul: Matmul) {
    let config = bf16_config();
    let (b, t) = (4, 64);
    let params = gpt2_init(&config, 7);
    let Some(mut gpu_bf16) = cuda_backend_in(Precision::Bf16, matmul, config, &params, b, t) else { return };
    let mut cpu_bf16 = cpu_backend_in(Precision::Bf16, CpuKernels::Fast, config, &params);
    let mut cpu_bf16_reference = cpu_backend_in(Precision::Bf16, CpuKernels::Reference, config, &params);
    let mut cpu_fp32 = cpu_backend_in(Precision::Fp32, CpuKernels::Fast, config, &params);
    let mut rng = Rng::new(18);
    let inputs = random_tokens(&mut rng, b * t, config.vocab_size);
    let targets = random_tokens(&mut rng, b * t, config.vocab_size);
    let adamw = AdamWConfig::default();
    let layout = ParamLayout::new(&config);

    // cuBLASLt fuses the GELU (on the fp32 sums), so its "reference" is not exact: named otherwise,
    // so that dev/cuda_mock/run.sh's exact check of "vs CPU bf16 reference" skips it
    let vs_reference =
        if matmul == Matmul::Cublas { "vs CPU bf16 ref. layers (GELU fused)" } else { "vs CPU bf16 reference" };
    // and its gradients' tolerance against the CPU's bf16 is wider: the fused GELU alone moves them
    // by up to 6.4e-3 of each tensor's largest entry (measured on the stand-ins, where nothing else
    // differs), the GPU's summation orders by up to 4e-3 more (as "CPU fast vs reference"): about
    // 1e-2, with the margin of 2.5 of the others
    let tight = if matmul == Matmul::Cublas { 2.5e-2 } else { 1e-2 };
    let mut first_loss = 0.0;
    for n in 1..=10 {
        let mut losses = Vec::new();
        for backend in [
            &mut gpu_bf16 as &mut dyn Backend,
            &mut cpu_bf16 as &mut dyn Backend,
            &mut cpu_bf16_reference as &mut dyn Backend,
            &mut cpu_fp32 as &mut dyn Backend,
        ] {
            backend.zero_grad().unwrap();
            losses.push(backend.forward_backward(&inputs, &targets, b, t, 1.0).unwrap());
        }
        let [gpu_loss, cpu_loss, reference_loss, fp32_loss] = losses[..] else { unreachable!() };
        println!(
            "{matmul:?} bf16 step {n:>2} loss: gpu {gpu_loss:.6} cpu {cpu_loss:.6} (reference layers {reference_loss:.6}) \
             fp32 {fp32_loss:.6} | {vs_reference}: max diff {:.2e}",
            (gpu_loss - reference_loss).abs()
        );
        // tight: bf16 against bf16; loose: bf16 against fp32
        assert!((gpu_loss - cpu_loss).abs() <= 1e-3 * cpu_loss, "bf16 step {n}: gpu {gpu_loss} cpu {cpu_loss}");
        assert!((gpu_loss - fp32_loss).abs() <= 3e-3 * fp32_loss, "bf16 vs fp32, step {n}: {gpu_loss} vs {fp32_loss}");
        if n == 1 {
            first_loss = gpu_loss;
            // the first step's gradients, tensor by tensor
            let gpu_grads = gpu_bf16.model.grads().unwrap();
            for (i, name) in gpt2::model::PARAM_NAMES.iter().enumerate() {
                let r = layout.range(i);
                let gpu = &gpu_grads[r.clone()];
                let (cpu, reference) = (&cpu_bf16.model.grads[r.clone()], &cpu_bf16_reference.model.grads[r.clone()]);
                assert_relative(&format!("bf16 grad {name}: CPU fast vs reference"), cpu, reference, 1e-2);
                assert_relative(&format!("{matmul:?} bf16 grad {name} {vs_reference}"), gpu, reference, tight);
                assert_relative(&format!("{matmul:?} bf16 grad {name} vs CPU bf16"), gpu, cpu, tight);
                assert_relative(&format!("{matmul:?} bf16 grad {name} vs fp32"), gpu, &cpu_fp32.model.grads[r], 3e-2);
            }
        }
        // AdamW on the fp32 master, then (GPU and CPU alike) the bf16 copy refreshed from it
        for backend in [
            &mut gpu_bf16 as &mut dyn Backend,
            &mut cpu_bf16 as &mut dyn Backend,
            &mut cpu_bf16_reference as &mut dyn Backend,
            &mut cpu_fp32 as &mut dyn Backend,
        ] {
            let norm = backend.grad_norm().unwrap();
            backend.update(&adamw, 1e-3, n, clip_scale(norm, 1.0)).unwrap();
        }
    }
    // the master weights after ten steps (up to 10 steps of 2 lr apart; see above)
    let gpu_params = gpu_bf16.params().unwrap();
    let max_abs = |a: &[f32], b: &[f32]| a.iter().zip(b).fold(0.0f32, |m, (x, y)| m.max((x - y).abs()));
    let (cpu_params, reference_params) = (cpu_bf16.params().unwrap(), cpu_bf16_reference.params().unwrap());
    println!(
        "bf16 params after 10 steps: CPU fast vs reference: max diff {:.2e}",
        max_abs(&cpu_params, &reference_params)
    );
    let params_diff = max_abs(&gpu_params, &reference_params);
    println!("{matmul:?} bf16 params after 10 steps {vs_reference}: max diff {params_diff:.2e} | tol 2e-2");
    assert!(params_diff <= 2e-2, "bf16 parameters after 10 steps differ from the CPU's by {params_diff}");
    let final_gpu = gpu_bf16.loss(&inputs, &targets, b, t).unwrap();
    assert!(final_gpu < first_loss, "the GPU's bf16 loss did not fall: {first_loss} -> {final_gpu}");
}

fn bf16_steps_match_the_cpu_with_the_tiled_matmul() {
    check_bf16_steps(Matmul::Handwritten);
}

fn bf16_steps_match_the_cpu_with_the_naive_matmul() {
    check_bf16_steps(Matmul::Naive);
}

/// `--matmul cublas` in bf16: cuBLASLt with the bias, the GELU and the bias gradient fused. Its GELU
/// reads the fp32 sums where the CPU's bf16 layers round the pre-GELU first, so against the CPU's
/// bf16 reference layers it is not exact even on the stand-ins (dev/cuda_mock), and its lines say
/// "vs CPU bf16 ref. layers (GELU fused)"; the tolerances are those of the other bf16 steps.
fn cublaslt_steps_match_the_cpu_in_bf16() {
    check_bf16_steps(Matmul::Cublas);
}

/// cuBLASLt's epilogues read the bias and write the pre-GELU at 16-byte aligned addresses, which
/// GPT-2's layout gives when C is a multiple of 8: otherwise a clear error before anything runs.
fn cublaslt_with_channels_not_a_multiple_of_8_is_a_clear_error() {
    let config = ModelConfig {
        max_seq_len: 16,
        vocab_size: 61,
        padded_vocab_size: 64,
        num_layers: 2,
        num_heads: 3,
        channels: 12,
    };
    let params = gpt2_init(&config, 7);
    if !have_gpu() {
        return;
    }
    let err = CudaBackend::new(0, Matmul::Cublas, Precision::Bf16, config, &params, 2, 5).err().expect("an error");
    println!("{err:#}");
    assert!(format!("{err:#}").contains("multiple of 8"), "{err:#}");
}

fn checkpoints_move_between_gpu_and_cpu() {
    let config = small_config();
    let (b, t) = (2, 9);
    let params = gpt2_init(&config, 8);
    let Some(mut gpu_backend) = cuda_backend(Matmul::Handwritten, config, &params, b, t) else { return };
    let mut cpu_backend = CpuBackend::new(config, params.clone());
    let mut rng = Rng::new(19);
    let inputs = random_tokens(&mut rng, b * t, config.vocab_size);
    let targets = random_tokens(&mut rng, b * t, config.vocab_size);
    let dir = tempfile::tempdir().unwrap();
    let state = TrainState { step: 2, b: b as u32, t: t as u32, ..Default::default() };

    // GPU -> file -> CPU: the same numbers, bit for bit, and the same loss on the CPU
    for n in 1..=2 {
        step(&mut gpu_backend, &inputs, &targets, b, t, n);
    }
    let (gpu_params, (m, v)) = (gpu_backend.params().unwrap(), gpu_backend.optimizer_state().unwrap());
    let path = dir.path().join("from_gpu.ckpt");
    save_checkpoint(&path, &config, &gpu_params, &m, &v, &state).unwrap();
    let ckpt = checkpoint::load(&path).unwrap();
    assert_eq!(ckpt.params, gpu_params);
    let (cm, cv, _) = ckpt.optimizer.unwrap();
    assert!(cm == m && cv == v);
    let mut on_cpu = CpuBackend::new(config, ckpt.params);
    on_cpu.set_optimizer_state(&cm, &cv).unwrap();
    let (gpu_loss, cpu_loss) =
        (gpu_backend.loss(&inputs, &targets, b, t).unwrap(), on_cpu.loss(&inputs, &targets, b, t).unwrap());
    println!("GPU checkpoint: loss on gpu {gpu_loss}, on cpu {cpu_loss}");
    assert!((gpu_loss - cpu_loss).abs() <= 1e-5 * cpu_loss);

    // CPU -> file -> GPU
    for n in 1..=2 {
        step(&mut cpu_backend, &inputs, &targets, b, t, n);
    }
    let (cpu_params, (m, v)) = (cpu_backend.params().unwrap(), cpu_backend.optimizer_state().unwrap());
    let path = dir.path().join("from_cpu.ckpt");
    save_checkpoint(&path, &config, &cpu_params, &m, &v, &state).unwrap();
    let ckpt = checkpoint::load(&path).unwrap();
    let (cm, cv, _) = ckpt.optimizer.unwrap();
    let mut on_gpu = cuda_backend(Matmul::Handwritten, config, &ckpt.params, b, t).unwrap();
    on_gpu.set_optimizer_state(&cm, &cv).unwrap();
    assert_eq!(on_gpu.params().unwrap(), cpu_params);
    assert_eq!(on_gpu.optimizer_state().unwrap(), (m, v));
    let (gpu_loss, cpu_loss) =
        (on_gpu.loss(&inputs, &targets, b, t).unwrap(), cpu_backend.loss(&inputs, &targets, b, t).unwrap());
    println!("CPU checkpoint: loss on gpu {gpu_loss}, on cpu {cpu_loss}");
    assert!((gpu_loss - cpu_loss).abs() <= 1e-5 * cpu_loss);
}

// ----------------------------------------------------------------------------- device choice

/// Runs the `gpt2` binary's `train` with these arguments (and data that does not exist, so that it
/// stops right after choosing the device); returns (success, stderr).
fn train_command(args: &[&str]) -> (bool, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_gpt2"))
        .arg("train")
        .args(args)
        .args(["--train-data", "/nonexistent/shard.bin", "--steps", "1", "--no-save"])
        .output()
        .expect("the gpt2 binary runs");
    (out.status.success(), String::from_utf8_lossy(&out.stderr).into_owned())
}

fn without_a_gpu_device_cuda_is_a_clear_error_and_auto_falls_back_to_the_cpu() {
    if gpt2::cuda::availability().is_ok() {
        println!("skipping: this machine has a GPU");
        return;
    }
    let (ok, stderr) = train_command(&["--device", "cuda"]);
    println!("--device cuda: {stderr}");
    assert!(!ok && stderr.contains("--device cuda, but CUDA is not usable here"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    // a missing library is named, with every place it was looked for (src/cuda/libs.rs)
    if stderr.contains("was not found; looked in:") {
        assert!(stderr.contains("libcuda.so.1") || stderr.contains("libnvrtc.so.13"), "{stderr}");
        for place in ["the dynamic linker's search by name", "/usr/local/cuda/lib64", "the linker cache"] {
            assert!(stderr.contains(place), "--device cuda does not say it looked in {place}: {stderr}");
        }
    }
    let (_, stderr) = train_command(&["--device", "auto"]);
    println!("--device auto: {stderr}");
    // the fallback is the first line, with the reason
    let first = stderr.lines().next().unwrap_or_default();
    assert!(first.starts_with("device: CPU (--device auto found no usable GPU: ") && first.ends_with(')'), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

// ----------------------------------------------------------------------------------- harness

/// The tests of this file. Without a usable GPU those that need one are reported as ignored, with
/// the reason, and counted as ignored (not as passed); GPT_REQUIRE_CUDA=1 makes that a failure.
fn main() {
    use harness::Needs::{It as Gpu, ItsAbsence as NoGpu};
    let present = gpt2::cuda::why_unavailable().map(|_| ()).map_err(|why| format!("no usable GPU: {}", why.short()));
    let requirement = harness::Requirement { what: "a usable GPU", present, require_var: "GPT_REQUIRE_CUDA" };
    harness::run(
        include_str!("cuda.rs"),
        requirement,
        harness::tests![
            Gpu => [
                encoder_forward_and_backward_match_the_cpu,
                layernorm_forward_and_backward_match_the_cpu,
                matmul_version1_naive_matches_the_cpu,
                matmul_version3_tiled_matches_the_cpu,
                matmul_split_k_weight_gradient_matches_the_cpu_and_repeats_bit_for_bit,
                matmul_cublas_matches_the_cpu,
                matmul_tiled_and_cublas_agree_on_gpt2_sized_layers,
                attention_forward_and_backward_match_the_cpu,
                gelu_and_residual_forward_and_backward_match_the_cpu,
                softmax_crossentropy_forward_and_backward_match_the_cpu,
                bf16_layers_match_the_cpu_bf16_layers,
                cublaslt_layers_match_the_cpu_layers_in_bf16,
                memory_plan_is_what_the_gpu_model_allocates,
                adamw_and_global_norm_match_the_cpu,
                training_steps_match_the_cpu_with_the_tiled_matmul,
                training_steps_match_the_cpu_with_the_naive_matmul,
                training_steps_match_the_cpu_with_cublas,
                bf16_steps_match_the_cpu_with_the_tiled_matmul,
                bf16_steps_match_the_cpu_with_the_naive_matmul,
                cublaslt_steps_match_the_cpu_in_bf16,
                cublaslt_with_channels_not_a_multiple_of_8_is_a_clear_error,
                checkpoints_move_between_gpu_and_cpu,
            ];
            NoGpu => [without_a_gpu_device_cuda_is_a_clear_error_and_auto_falls_back_to_the_cpu];
        ],
    )
}
