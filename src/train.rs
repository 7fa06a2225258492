//! The training loop, the same for every device: a `Backend` (CPU here, CUDA in `src/cuda/`) does
//! the math, this file decides what happens when: batches, gradient accumulation, clipping, the
//! learning rate, validation, logging and checkpoints.

use crate::config::ModelConfig;
use crate::cpu::gpt2::Gpt2;
use crate::data::{DataLoader, Position};
use crate::model::checkpoint::{save_checkpoint, save_llmc, TrainState};
use crate::optim::{adamw_update, clip_scale, global_norm, learning_rate, AdamWConfig, Schedule};
use crate::rng::Rng;
use anyhow::{bail, Context, Result};
use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

/// What a device must do for the training loop.
pub trait Backend {
    /// One line naming the device, for the console.
    fn describe(&self) -> String;
    fn config(&self) -> &ModelConfig;
    /// Forward and backward of one micro-batch, adding the gradient of `loss_scale * loss` to the
    /// parameter gradients; returns the mean loss.
    fn forward_backward(&mut self, inputs: &[u32], targets: &[u32], b: usize, t: usize, loss_scale: f32) -> f32;
    /// The mean loss of a batch, without gradients.
    fn loss(&mut self, inputs: &[u32], targets: &[u32], b: usize, t: usize) -> f32;
    fn zero_grad(&mut self);
    /// The global L2 norm of the gradients.
    fn grad_norm(&mut self) -> f32;
    /// One AdamW update (`t` = 1, 2, ...) with gradients multiplied by `grad_scale`.
    fn update(&mut self, adamw: &AdamWConfig, lr: f32, t: u64, grad_scale: f32);
    /// Copies of the parameters and of AdamW's two moments, for checkpoints.
    fn params(&mut self) -> Vec<f32>;
    fn optimizer_state(&mut self) -> (Vec<f32>, Vec<f32>);
    fn set_optimizer_state(&mut self, m: &[f32], v: &[f32]);
    /// The device's peak FLOP/s for the precision it trains in, when known: the console then shows
    /// MFU (model FLOPs utilization, `ModelConfig::flops_per_token` x tokens/s over this peak).
    fn peak_flops(&self) -> Option<f64> {
        None
    }
}

/// The CPU reference as a backend.
pub struct CpuBackend {
    pub model: Gpt2,
    m: Vec<f32>,
    v: Vec<f32>,
}

impl CpuBackend {
    pub fn new(config: ModelConfig, params: Vec<f32>) -> Self {
        let n = params.len();
        CpuBackend { model: Gpt2::new(config, params), m: vec![0.0; n], v: vec![0.0; n] }
    }
}

impl Backend for CpuBackend {
    fn describe(&self) -> String {
        format!("CPU ({} threads)", rayon::current_num_threads())
    }
    fn config(&self) -> &ModelConfig {
        &self.model.config
    }
    fn forward_backward(&mut self, inputs: &[u32], targets: &[u32], b: usize, t: usize, loss_scale: f32) -> f32 {
        let loss = self.model.forward(inputs, Some(targets), b, t).expect("targets given");
        self.model.backward(loss_scale);
        loss
    }
    fn loss(&mut self, inputs: &[u32], targets: &[u32], b: usize, t: usize) -> f32 {
        self.model.forward(inputs, Some(targets), b, t).expect("targets given")
    }
    fn zero_grad(&mut self) {
        self.model.zero_grad();
    }
    fn grad_norm(&mut self) -> f32 {
        global_norm(&self.model.grads)
    }
    fn update(&mut self, adamw: &AdamWConfig, lr: f32, t: u64, grad_scale: f32) {
        let model = &mut self.model;
        adamw_update(
            &mut model.params,
            &model.grads,
            &mut self.m,
            &mut self.v,
            &model.layout,
            adamw,
            lr,
            t,
            grad_scale,
        );
    }
    fn params(&mut self) -> Vec<f32> {
        self.model.params.clone()
    }
    fn optimizer_state(&mut self) -> (Vec<f32>, Vec<f32>) {
        (self.m.clone(), self.v.clone())
    }
    fn set_optimizer_state(&mut self, m: &[f32], v: &[f32]) {
        self.m.copy_from_slice(m);
        self.v.copy_from_slice(v);
    }
}

/// Everything the loop needs to know, resolved from the command line.
#[derive(Clone, Debug)]
pub struct TrainConfig {
    pub train_data: String,
    pub val_data: Option<String>,
    pub batch: usize,
    pub seq: usize,
    /// Tokens per optimizer step; a multiple of batch * seq (the rest is gradient accumulation).
    pub total_batch: usize,
    pub steps: usize,
    pub lr: f32,
    pub warmup: usize,
    pub schedule: Schedule,
    pub min_lr_frac: f32,
    pub adamw: AdamWConfig,
    pub grad_clip: f32,
    pub val_every: usize,
    pub val_batches: usize,
    pub shuffle: bool,
    pub seed: u64,
    pub log: Option<PathBuf>,
    pub save: Option<PathBuf>,
    pub save_every: usize,
    /// Also write an llm.c model file here when saving.
    pub export_llmc: Option<PathBuf>,
    pub sample_every: usize,
    pub quiet: bool,
}

/// What a finished run reports.
#[derive(Clone, Debug, Default)]
pub struct TrainSummary {
    pub train_losses: Vec<f32>,
    pub val_losses: Vec<(usize, f32)>,
    pub mean_ms_per_step: f64,
    pub tokens_per_second: f64,
}

/// Called every `sample_every` steps with the backend and the run's RNG, to print a short generation.
pub type SampleHook<'a> = dyn FnMut(&mut dyn Backend, &mut Rng) -> Result<()> + 'a;

fn format_duration(seconds: f64) -> String {
    let s = seconds.max(0.0).round() as u64;
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
    }
}

/// Trains `backend` as `cfg` says, starting from `resume` (a training state) when given.
pub fn train(
    backend: &mut dyn Backend,
    cfg: &TrainConfig,
    resume: Option<TrainState>,
    mut sample: Option<&mut SampleHook>,
) -> Result<TrainSummary> {
    let model_cfg = *backend.config();
    let (b, t) = (cfg.batch, cfg.seq);
    if b == 0 || t == 0 {
        bail!("--batch and --seq must be positive");
    }
    if t > model_cfg.max_seq_len {
        bail!("--seq {t} is longer than the model's maximum sequence length {}", model_cfg.max_seq_len);
    }
    if cfg.total_batch == 0 || !cfg.total_batch.is_multiple_of(b * t) {
        bail!("--total-batch {} must be a positive multiple of batch * seq = {}", cfg.total_batch, b * t);
    }
    let accum = cfg.total_batch / (b * t);
    let vocab = model_cfg.vocab_size;
    let mut train_loader = DataLoader::new(&cfg.train_data, b, t, vocab, cfg.shuffle, cfg.seed)?;
    let mut val_loader = match &cfg.val_data {
        Some(pattern) => Some(DataLoader::new(pattern, b, t, vocab, false, 0)?),
        None => None,
    };
    let val_batches = val_loader.as_ref().map_or(0, |l| cfg.val_batches.min(l.batches_per_epoch()));
    let mut rng = Rng::new(cfg.seed);
    let mut start_step = 0;
    if let Some(state) = resume {
        if (state.b as usize, state.t as usize) != (b, t) {
            bail!("the checkpoint was trained with --batch {} --seq {}; resume with the same", state.b, state.t);
        }
        start_step = state.step as usize;
        train_loader.seek(Position { epoch: state.epoch, shard: state.shard, batch: state.batch });
        rng = Rng::new(state.rng);
    }
    let mut log = match &cfg.log {
        Some(path) => Some(std::io::BufWriter::new(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .with_context(|| format!("{}: cannot open the log file", path.display()))?,
        )),
        None => None,
    };
    if !cfg.quiet {
        eprintln!(
            "training {} ({:.1}M parameters) on {} | B={b} T={t} accumulation={accum} ({} tokens/step) | {} train tokens, {} val batches",
            model_cfg,
            model_cfg.num_parameters_unpadded() as f64 / 1e6,
            backend.describe(),
            cfg.total_batch,
            train_loader.num_tokens(),
            val_batches,
        );
    }

    let mut inputs = vec![0u32; b * t];
    let mut targets = vec![0u32; b * t];
    let mut summary = TrainSummary::default();
    let mut total_ms = 0.0;
    let mut timed_steps = 0usize;

    let save = |backend: &mut dyn Backend, step: usize, pos: Position, rng: &Rng| -> Result<()> {
        let params = backend.params();
        if let Some(path) = &cfg.save {
            let (m, v) = backend.optimizer_state();
            let state = TrainState {
                step: step as u64,
                epoch: pos.epoch,
                shard: pos.shard,
                batch: pos.batch,
                rng: rng.state,
                b: b as u32,
                t: t as u32,
            };
            save_checkpoint(path, &model_cfg, &params, &m, &v, &state)?;
        }
        if let Some(path) = &cfg.export_llmc {
            save_llmc(path, &model_cfg, &params)?;
        }
        Ok(())
    };

    for step in start_step..cfg.steps {
        // validation, before this step's update
        let mut val_loss = None;
        if let Some(loader) = val_loader.as_mut().filter(|_| cfg.val_every > 0 && step % cfg.val_every == 0) {
            loader.seek(Position::default());
            let mut sum = 0.0;
            for _ in 0..val_batches {
                loader.next_batch(&mut inputs, &mut targets);
                sum += backend.loss(&inputs, &targets, b, t);
            }
            let loss = sum / val_batches.max(1) as f32;
            summary.val_losses.push((step, loss));
            val_loss = Some(loss);
        }

        // one optimizer step: accumulate gradients over `accum` micro-batches
        let started = Instant::now();
        backend.zero_grad();
        let mut train_loss = 0.0;
        for _ in 0..accum {
            train_loader.next_batch(&mut inputs, &mut targets);
            train_loss += backend.forward_backward(&inputs, &targets, b, t, 1.0 / accum as f32) / accum as f32;
        }
        let norm = backend.grad_norm();
        let lr = learning_rate(cfg.schedule, cfg.lr, step, cfg.warmup, cfg.steps, cfg.min_lr_frac);
        backend.update(&cfg.adamw, lr, step as u64 + 1, clip_scale(norm, cfg.grad_clip));
        let ms = started.elapsed().as_secs_f64() * 1e3;
        let tok_per_s = cfg.total_batch as f64 / (ms / 1e3);
        let mfu = backend.peak_flops().map(|peak| model_cfg.flops_per_token(t) * tok_per_s / peak);
        // the first step pays for allocation and warm-up; leave it out of the average
        if step > start_step || cfg.steps - start_step == 1 {
            total_ms += ms;
            timed_steps += 1;
        }
        summary.train_losses.push(train_loss);

        if let Some(log) = log.as_mut() {
            let mut record = serde_json::json!({
                "step": step, "train_loss": train_loss, "lr": lr, "ms": ms, "tok_per_s": tok_per_s,
            });
            if let Some(v) = val_loss {
                record["val_loss"] = serde_json::json!(v);
            }
            if let Some(mfu) = mfu {
                record["mfu"] = serde_json::json!(mfu);
            }
            writeln!(log, "{record}").context("cannot write to the log file")?;
            log.flush().context("cannot write to the log file")?;
        }
        if !cfg.quiet {
            let avg_ms = if timed_steps > 0 { total_ms / timed_steps as f64 } else { ms };
            let left = format_duration(avg_ms / 1e3 * (cfg.steps - step - 1) as f64);
            let val = val_loss.map_or(String::new(), |v| format!(" | val {v:.4}"));
            let mfu = mfu.map_or(String::new(), |m| format!(" | mfu {:.1}%", 100.0 * m));
            eprintln!(
                "step {:>5}/{} | train {train_loss:.4}{val} | lr {lr:.2e} | norm {norm:.3} | {ms:.0} ms | {tok_per_s:.0} tok/s{mfu} | {left} left",
                step + 1,
                cfg.steps,
            );
        }
        if !train_loss.is_finite() {
            bail!("the training loss became {train_loss} at step {step}: try a lower --lr or --grad-clip 1.0");
        }

        let done = step + 1;
        if cfg.save_every > 0 && done % cfg.save_every == 0 && done < cfg.steps {
            save(backend, done, train_loader.position, &rng)?;
        }
        if cfg.sample_every > 0 && done % cfg.sample_every == 0 {
            if let Some(hook) = sample.as_mut() {
                hook(backend, &mut rng)?;
            }
        }
    }
    if cfg.steps > start_step {
        save(backend, cfg.steps, train_loader.position, &rng)?;
    }
    summary.mean_ms_per_step = if timed_steps > 0 { total_ms / timed_steps as f64 } else { 0.0 };
    summary.tokens_per_second =
        if summary.mean_ms_per_step > 0.0 { cfg.total_batch as f64 / (summary.mean_ms_per_step / 1e3) } else { 0.0 };
    Ok(summary)
}
