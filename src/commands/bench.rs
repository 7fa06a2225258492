//! `bench`: how fast is a training step, and where does the time go.
//!
//! It times whole training steps (forward, backward, AdamW) on random tokens, then times each kind
//! of layer on its own at the shapes and call counts of one step, so the table shows what a step is
//! made of. The last line is one JSON object for scripts: `{"ms_per_step", "tok_per_s", "gflops"}`.

use anyhow::{bail, Result};
use gpt2::config::ModelConfig;
use gpt2::cpu::gpt2::CpuKernels;
use gpt2::cpu::layers::Layers;
use gpt2::cuda::{KernelTime, Matmul};
use gpt2::device::{choose_precision, cpu_kernels, make_backend, select_device, Compute, Device};
use gpt2::model::{init::gpt2_init, ParamLayout};
use gpt2::optim::{adamw_update, AdamWConfig};
use gpt2::precision::{round_bf16, Precision};
use gpt2::rng::Rng;
use gpt2::train::Backend;
use rayon::prelude::*;
use std::time::Instant;

#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    /// Where to run: the GPU when one is usable (auto), the CPU, or the GPU (cuda).
    #[arg(long, default_value = "auto", value_parser = super::choice::<Device>())]
    pub device: Device,
    /// The GPU's matmul (see the values below).
    #[arg(long, default_value = "handwritten", value_parser = super::choice::<Matmul>())]
    pub matmul: Matmul,
    /// Model size: tiny, d6, d12, d24, d36, d48 or L<l>H<h>C<c>.
    #[arg(long, default_value = "d12")]
    pub model: String,
    /// Sequences per batch.
    #[arg(long, default_value_t = 4)]
    pub batch: usize,
    /// Tokens per sequence.
    #[arg(long, default_value_t = 64)]
    pub seq: usize,
    /// Timed steps, after one untimed warm-up step.
    #[arg(long, default_value_t = 3)]
    pub steps: usize,
    /// CPU layer implementations: the readable reference or the fast ones [default: fast]. CPU only:
    /// on the GPU it is an error (there --matmul picks the matmul kernels).
    #[arg(long, value_parser = super::choice::<CpuKernels>())]
    pub kernels: Option<CpuKernels>,
    /// fp32, or bf16 mixed precision (src/precision.rs)
    /// [default: bf16 on a GPU of compute capability 8.0 or newer, fp32 on older GPUs and the CPU].
    #[arg(long, value_parser = super::choice::<Precision>())]
    pub precision: Option<Precision>,
    /// Skip the per-layer table (CPU) or the per-kernel table of one profiled step (GPU): whole steps only.
    #[arg(long)]
    pub no_layers: bool,
}

/// Runs `f` `reps` times and returns the mean milliseconds (after one warm-up run).
fn time_ms(reps: usize, mut f: impl FnMut()) -> f64 {
    f();
    let start = Instant::now();
    for _ in 0..reps {
        f();
    }
    start.elapsed().as_secs_f64() * 1e3 / reps as f64
}

pub fn run(args: &Args) -> Result<()> {
    let device = select_device(args.device)?;
    let cfg = ModelConfig::from_name(&args.model).map_err(anyhow::Error::msg)?;
    let (b, t) = (args.batch, args.seq);
    if b == 0 || t == 0 || t > cfg.max_seq_len {
        bail!("--batch must be positive and --seq in 1..={}", cfg.max_seq_len);
    }
    if args.steps == 0 {
        bail!("--steps must be at least 1");
    }
    let mut rng = Rng::new(1);
    let tokens: Vec<u32> = (0..b * t + 1).map(|_| rng.below(cfg.vocab_size) as u32).collect();
    let (inputs, targets) = (&tokens[..b * t], &tokens[1..]);
    let kernels = cpu_kernels(args.kernels, device)?;
    let (precision, precision_note) = choose_precision(args.precision, device)?;
    let compute = Compute { device, matmul: args.matmul, kernels, precision, precision_note };
    let mut backend: Box<dyn Backend> = make_backend(&compute, cfg, gpt2_init(&cfg, 1), b, t)?;
    let adamw = AdamWConfig::default();
    let kernels_line =
        if device == Device::Cpu { format!("{kernels:?} CPU layers, {precision}, ") } else { String::new() };
    println!(
        "bench: {cfg} ({:.1}M params), B={b} T={t}, {kernels_line}{}",
        cfg.num_parameters_unpadded() as f64 / 1e6,
        backend.describe()
    );

    // whole steps: forward + backward + AdamW
    let mut step = 0u64;
    let mut one_step = |backend: &mut Box<dyn Backend>| -> Result<()> {
        step += 1;
        backend.zero_grad()?;
        backend.forward_backward(inputs, targets, b, t, 1.0)?;
        backend.update(&adamw, 1e-4, step, 1.0)
    };
    one_step(&mut backend)?; // warm-up: allocates activations, touches every page
    let start = Instant::now();
    for _ in 0..args.steps {
        one_step(&mut backend)?;
    }
    let ms_per_step = start.elapsed().as_secs_f64() * 1e3 / args.steps as f64;
    let tok_per_s = (b * t) as f64 / (ms_per_step / 1e3);
    let gflops = cfg.flops_per_token(t) * tok_per_s / 1e9;

    // the per-layer table times the CPU layers; on a GPU, one more step with every kernel timed
    if !args.no_layers && device == Device::Cpu {
        layer_table(&cfg, b, t, kernels, precision, ms_per_step);
    }
    if !args.no_layers && device == Device::Cuda {
        backend.start_profile();
        one_step(&mut backend)?;
        if let Some(rows) = backend.finish_profile()? {
            kernel_table(&rows, ms_per_step);
        }
    }
    let mfu = backend.mfu_peak().map(|peak| gflops * 1e9 / peak.flops);
    let mfu_text = mfu.map_or(String::new(), |m| format!(", MFU {:.1}%", 100.0 * m));
    println!("step: {ms_per_step:.1} ms, {tok_per_s:.0} tok/s, {gflops:.1} GFLOP/s{mfu_text} (model FLOPs 6N + 6LTC per token)");
    let mut result = serde_json::json!({"ms_per_step": ms_per_step, "tok_per_s": tok_per_s, "gflops": gflops});
    if let Some(m) = mfu {
        result["mfu"] = serde_json::json!(m);
    }
    println!("{result}");
    Ok(())
}

/// Prints the per-kernel times of one profiled GPU step (CUDA events around each launch), slowest
/// first, beside the step time measured without events.
fn kernel_table(rows: &[KernelTime], step_ms: f64) {
    let mut rows = rows.to_vec();
    rows.sort_by(|a, b| b.ms.total_cmp(&a.ms));
    let total: f64 = rows.iter().map(|r| r.ms).sum();
    println!("{:<34} {:>6} {:>10} {:>8} {:>7}", "kernel (one step, CUDA events)", "calls", "ms", "us/call", "% step");
    for r in &rows {
        let share = 100.0 * r.ms / step_ms;
        println!("{:<34} {:>6} {:>10.3} {:>8.1} {share:>6.1}%", r.name, r.calls, r.ms, 1e3 * r.ms / r.calls as f64);
    }
    println!(
        "{:<34} {:>6} {:>10.3} {:>8} {:>6.1}%  (the rest of the step: copies, memsets, launch gaps)",
        "all kernels",
        rows.iter().map(|r| r.calls).sum::<usize>(),
        total,
        "",
        100.0 * total / step_ms
    );
}

/// Times each layer kind alone at one step's shapes and call counts, and prints a table.
fn layer_table(cfg: &ModelConfig, b: usize, t: usize, kernels: CpuKernels, precision: Precision, step_ms: f64) {
    let mut rng = Rng::new(2);
    // in bf16 the layers read bf16 numbers: give them bf16 inputs
    let bf16 = precision == Precision::Bf16;
    let mut rand = |n: usize| {
        (0..n).map(|_| 0.1 * rng.normal()).map(|x| if bf16 { round_bf16(x) } else { x }).collect::<Vec<f32>>()
    };
    // the functions the model calls for these kernels at this precision
    let layers = Layers::new(kernels, precision);
    let mut rows = time_block_layers(cfg, b, t, &layers, &mut rand);
    rows.extend(time_head_and_update(cfg, b, t, &layers, bf16, &mut rand));
    print_layer_rows(&rows, step_ms);
}

/// One row of the layer table: the layer kind, its forward and backward milliseconds in a step.
type LayerRow = (&'static str, f64, f64);

/// Repetitions of each timed call (the table takes the mean).
const LAYER_REPS: usize = 2;

/// The layers inside the blocks: matmul, attention, layernorm, GELU, residual, each timed at one
/// step's shapes and multiplied by its calls in a step.
fn time_block_layers(
    cfg: &ModelConfig,
    b: usize,
    t: usize,
    layers: &Layers,
    rand: &mut impl FnMut(usize) -> Vec<f32>,
) -> Vec<LayerRow> {
    let (l, nh, c, vp) = (cfg.num_layers, cfg.num_heads, cfg.channels, cfg.padded_vocab_size);
    let (bt, reps) = (b * t, LAYER_REPS);
    let (mm_fwd, mm_bwd) = (layers.matmul_forward, layers.matmul_backward);
    let (gelu_fwd, gelu_bwd) = (layers.gelu_forward, layers.gelu_backward);
    let (att_fwd, att_bwd) = (layers.attention_forward, layers.attention_backward);
    let mut rows: Vec<LayerRow> = Vec::new();

    // matmuls: 4 per layer plus the LM head, as (C_in, C_out, count)
    let shapes = [(c, 3 * c, l), (c, c, l), (c, 4 * c, l), (4 * c, c, l), (c, vp, 1)];
    let (mut fwd, mut bwd) = (0.0, 0.0);
    for (ci, co, count) in shapes {
        let (inp, w, bias, dout) = (rand(bt * ci), rand(co * ci), rand(co), rand(bt * co));
        let (mut out, mut dinp, mut dw, mut db) =
            (vec![0.0; bt * co], vec![0.0; bt * ci], vec![0.0; co * ci], vec![0.0; co]);
        fwd += count as f64 * time_ms(reps, || mm_fwd(&mut out, &inp, &w, Some(&bias), bt, ci, co));
        bwd += count as f64 * time_ms(reps, || mm_bwd(&mut dinp, &mut dw, Some(&mut db), &dout, &inp, &w, bt, ci, co));
    }
    rows.push(("matmul", fwd, bwd));

    // attention, once per layer
    let (qkv, dout) = (rand(bt * 3 * c), rand(bt * c));
    let (mut out, mut lse) = (vec![0.0; bt * c], vec![0.0; b * nh * t]);
    let (mut dqkv, mut delta) = (vec![0.0; bt * 3 * c], vec![0.0; b * nh * t]);
    let fwd = l as f64 * time_ms(reps, || att_fwd(&mut out, &mut lse, &qkv, b, t, c, nh));
    let bwd = l as f64 * time_ms(reps, || att_bwd(&mut dqkv, &mut delta, &dout, &qkv, &out, &lse, b, t, c, nh));
    rows.push(("attention", fwd, bwd));

    // layernorm: 2 per layer plus the final one
    let (x, w, bias, dout) = (rand(bt * c), rand(c), rand(c), rand(bt * c));
    let (mut out, mut mean, mut rstd) = (vec![0.0; bt * c], vec![0.0; bt], vec![0.0; bt]);
    let (mut dx, mut dw, mut db) = (vec![0.0; bt * c], vec![0.0; c], vec![0.0; c]);
    let n = (2 * l + 1) as f64;
    let fwd = n * time_ms(reps, || (layers.layernorm_forward)(&mut out, &mut mean, &mut rstd, &x, &w, &bias, bt, c));
    let bwd = n * time_ms(reps, || {
        (layers.layernorm_backward)(&mut dx, &mut dw, &mut db, &dout, &x, &w, &mean, &rstd, bt, c)
    });
    rows.push(("layernorm", fwd, bwd));

    // GELU, once per layer over (BT, 4C)
    let (x, dout) = (rand(bt * 4 * c), rand(bt * 4 * c));
    let (mut out, mut dx) = (vec![0.0; bt * 4 * c], vec![0.0; bt * 4 * c]);
    let fwd = l as f64 * time_ms(reps, || gelu_fwd(&mut out, &x));
    let bwd = l as f64 * time_ms(reps, || gelu_bwd(&mut dx, &x, &dout));
    rows.push(("gelu", fwd, bwd));

    // residual, twice per layer
    let (x1, x2) = (rand(bt * c), rand(bt * c));
    let (mut out, mut d1, mut d2) = (vec![0.0; bt * c], vec![0.0; bt * c], vec![0.0; bt * c]);
    let fwd = 2.0 * l as f64 * time_ms(reps, || (layers.residual_forward)(&mut out, &x1, &x2));
    let bwd = 2.0 * l as f64 * time_ms(reps, || (layers.residual_backward)(&mut d1, &mut d2, &x1));
    rows.push(("residual", fwd, bwd));

    rows
}

/// The layers outside the blocks (softmax + cross-entropy, the embeddings) and the update (AdamW,
/// and in bf16 the weight copy's refresh).
fn time_head_and_update(
    cfg: &ModelConfig,
    b: usize,
    t: usize,
    layers: &Layers,
    bf16: bool,
    rand: &mut impl FnMut(usize) -> Vec<f32>,
) -> Vec<LayerRow> {
    let (c, v, vp) = (cfg.channels, cfg.vocab_size, cfg.padded_vocab_size);
    let (bt, reps) = (b * t, LAYER_REPS);
    let (xent_fwd, xent_bwd) = (layers.crossentropy_forward, layers.crossentropy_softmax_backward);
    let mut rows: Vec<LayerRow> = Vec::new();

    // softmax + cross-entropy over the vocabulary (the backward writes over a copy of the logits)
    let logits = rand(bt * vp);
    let targets: Vec<u32> = (0..bt).map(|i| (i * 7 % v) as u32).collect();
    let (mut losses, mut lse, mut dlogits) = (vec![0.0; bt], vec![0.0; bt], logits.clone());
    let dlosses = vec![1.0 / bt as f32; bt];
    let fwd = time_ms(reps, || xent_fwd(&mut losses, &mut lse, &logits, &targets, bt, v, vp));
    let bwd = time_ms(reps, || xent_bwd(&mut dlogits, &dlosses, &lse, &targets, bt, v, vp));
    rows.push(("softmax+xent", fwd, bwd));

    // embeddings
    let tokens: Vec<u32> = (0..bt).map(|i| (i * 13 % v) as u32).collect();
    let layout = ParamLayout::new(cfg);
    let (wte, wpe) = (rand(layout.numel(0)), rand(layout.numel(1)));
    let (mut out, dout) = (vec![0.0; bt * c], rand(bt * c));
    let (mut dwte, mut dwpe) = (vec![0.0; wte.len()], vec![0.0; wpe.len()]);
    let fwd = time_ms(reps, || (layers.encoder_forward)(&mut out, &tokens, &wte, &wpe, b, t, c));
    let bwd = time_ms(reps, || (layers.encoder_backward)(&mut dwte, &mut dwpe, &dout, &tokens, b, t, c));
    rows.push(("encoder", fwd, bwd));
    drop((wte, wpe, dwte, dwpe));

    // AdamW over every parameter
    let n = layout.total;
    let (mut p, g, mut m, mut vv) = (vec![0.01f32; n], vec![0.001f32; n], vec![0.0f32; n], vec![0.0f32; n]);
    let adamw = AdamWConfig::default();
    let opt = time_ms(reps, || adamw_update(&mut p, &g, &mut m, &mut vv, &layout, &adamw, 1e-4, 1, 1.0));
    rows.push(("adamw", opt, 0.0));
    if bf16 {
        // after every update: the bf16 copy of the weights, rounded from the fp32 master
        let mut copy = vec![0.0f32; n];
        let refresh = time_ms(reps, || {
            copy.par_iter_mut().zip(p.par_iter()).for_each(|(w, &x)| *w = round_bf16(x));
        });
        rows.push(("bf16 weights", refresh, 0.0));
    }

    rows
}

/// Prints the rows with each one's share of the measured step, and what they leave over.
fn print_layer_rows(rows: &[LayerRow], step_ms: f64) {
    println!("{:<14} {:>10} {:>10} {:>10} {:>7}", "layer", "fwd ms", "bwd ms", "total ms", "share");
    let sum: f64 = rows.iter().map(|r| r.1 + r.2).sum();
    for (name, f, bw) in rows {
        println!("{name:<14} {f:>10.1} {bw:>10.1} {:>10.1} {:>6.1}%", f + bw, 100.0 * (f + bw) / step_ms);
    }
    println!(
        "{:<14} {:>10} {:>10} {:>10.1} {:>6.1}%  (the rest: zeroing gradients, memory traffic, scheduling)",
        "other",
        "",
        "",
        step_ms - sum,
        100.0 * (step_ms - sum) / step_ms
    );
}
