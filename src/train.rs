//! The training loop, the same for every device: a `Backend` (`src/cpu/backend.rs`, `src/cuda/backend.rs`) does
//! the math, this file decides what happens when: batches, gradient accumulation, clipping, the
//! learning rate, validation, logging and checkpoints.

use crate::config::ModelConfig;
use crate::data::{DataLoader, Position};
use crate::model::checkpoint::{save_checkpoint_with_tokenizer, save_llmc_with_tokenizer, TrainState};
use crate::optim::{clip_scale, learning_rate, AdamWConfig, Schedule};
use crate::rng::Rng;
use anyhow::{bail, Context, Result};
use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

/// A function given (params, m, v), as `Backend::with_state` lends them.
pub type StateVisitor<'a> = dyn FnMut(&[f32], &[f32], &[f32]) -> Result<()> + 'a;

/// What a device must do for the training loop.
///
/// Every method that touches the device returns a `Result`: on the CPU it is always `Ok`, on a GPU
/// a failed kernel launch or copy (a fault, a lost device, memory gone) comes back as an error that
/// names what failed, and the loop ends the run with it instead of panicking.
pub trait Backend {
    /// One line naming the device, for the console.
    fn describe(&self) -> String;
    fn config(&self) -> &ModelConfig;
    /// Forward and backward of one micro-batch, adding the gradient of `loss_scale * loss` to the
    /// parameter gradients; returns the mean loss.
    fn forward_backward(&mut self, inputs: &[u32], targets: &[u32], b: usize, t: usize, loss_scale: f32)
        -> Result<f32>;
    /// The mean loss of a batch, without gradients.
    fn loss(&mut self, inputs: &[u32], targets: &[u32], b: usize, t: usize) -> Result<f32>;
    /// The B*T per-position losses of a batch, without gradients (HellaSwag scores endings with them).
    fn position_losses(&mut self, inputs: &[u32], targets: &[u32], b: usize, t: usize) -> Result<Vec<f32>>;
    fn zero_grad(&mut self) -> Result<()>;
    /// The global L2 norm of the gradients.
    fn grad_norm(&mut self) -> Result<f32>;
    /// One AdamW update (`t` = 1, 2, ...) with gradients multiplied by `grad_scale`.
    fn update(&mut self, adamw: &AdamWConfig, lr: f32, t: u64, grad_scale: f32) -> Result<()>;
    /// Copies of the parameters and of AdamW's two moments, for checkpoints.
    fn params(&mut self) -> Result<Vec<f32>>;
    fn optimizer_state(&mut self) -> Result<(Vec<f32>, Vec<f32>)>;
    fn set_optimizer_state(&mut self, m: &[f32], v: &[f32]) -> Result<()>;
    /// Calls `f` with the parameters and AdamW's moments m and v, for writing a checkpoint. The CPU
    /// lends its own buffers (no copy of a model that may be most of memory); a GPU copies to the host.
    fn with_state(&mut self, f: &mut StateVisitor) -> Result<()> {
        let params = self.params()?;
        let (m, v) = self.optimizer_state()?;
        f(&params, &m, &v)
    }
    /// The device's peak FLOP/s for the precision it trains in, when known: the console then shows
    /// MFU (model FLOPs utilization, `ModelConfig::flops_per_token` x tokens/s over this peak).
    fn peak_flops(&self) -> Option<f64> {
        None
    }
    /// Starts timing each kernel launch (a GPU's; `bench --device cuda` prints the table). The CPU
    /// does nothing here: `bench` times its layers one by one instead.
    fn start_profile(&mut self) {}
    /// Ends what `start_profile` started: the time of each kernel since then, summed by name, or
    /// `None` for a backend that does not profile.
    fn finish_profile(&mut self) -> Result<Option<Vec<crate::cuda::KernelTime>>> {
        Ok(None)
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
    /// Keep a console line every N steps (0: about 20 lines a run); the log file has every step.
    pub print_every: usize,
    /// End this run after this many steps, as if interrupted (the schedule still spans `steps`).
    pub stop_at: Option<usize>,
    pub quiet: bool,
    /// The digest of the tokenizer of the training data (`Tokenizer::digest`), recorded in every
    /// saved file; 0: GPT-2's.
    pub tokenizer_digest: i32,
}

/// Set by Ctrl-C (see `commands::train`): the loop finishes the step it is in, saves, and returns.
pub static STOP_REQUESTED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

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

/// An evaluation run every `every` steps, before the step's update as validation is (HellaSwag, in
/// `commands::train`): `run` returns named scores, which go on the console line and into the log record.
pub struct EvalHook<'a> {
    pub every: usize,
    pub run: Box<EvalFn<'a>>,
}

/// What an `EvalHook` runs: named scores of the model as it is.
pub type EvalFn<'a> = dyn FnMut(&mut dyn Backend) -> Result<Vec<(&'static str, f64)>> + 'a;

fn format_duration(seconds: f64) -> String {
    let s = seconds.max(0.0).round() as u64;
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
    }
}

/// The first value that is NaN or infinite, as (the name of its tensor, its index).
fn first_non_finite<'a>(tensors: &[(&'a str, &[f32])]) -> Option<(&'a str, usize)> {
    tensors.iter().find_map(|&(name, values)| values.iter().position(|x| !x.is_finite()).map(|i| (name, i)))
}

/// f32 -> f64 through the shortest decimal, so 5e-5 is logged as 5e-5, not 5.0000002e-5.
fn shortest(x: f32) -> f64 {
    x.to_string().parse::<f64>().unwrap_or(f64::NAN)
}

/// Appends one JSON record to the log and flushes it, so a crash loses at most the step it was in.
fn write_record(log: &mut impl Write, record: &serde_json::Value) -> Result<()> {
    writeln!(log, "{record}").context("cannot write to the log file")?;
    log.flush().context("cannot write to the log file")
}

/// The mean loss over the first `batches` batches of `loader` (validation always reads the same ones).
#[allow(clippy::too_many_arguments)]
fn validate(
    backend: &mut dyn Backend,
    loader: &mut DataLoader,
    batches: usize,
    inputs: &mut [u32],
    targets: &mut [u32],
    b: usize,
    t: usize,
) -> Result<f32> {
    loader.seek(Position::default());
    let mut sum = 0.0;
    for _ in 0..batches {
        loader.next_batch(inputs, targets);
        sum += backend.loss(inputs, targets, b, t).context("validation")?;
    }
    Ok(sum / batches.max(1) as f32)
}

/// Trains `backend` as `cfg` says, starting from `resume` (a training state) when given.
pub fn train(
    backend: &mut dyn Backend,
    cfg: &TrainConfig,
    resume: Option<TrainState>,
    sample: Option<&mut SampleHook>,
) -> Result<TrainSummary> {
    train_with_eval(backend, cfg, resume, sample, None)
}

/// `train`, with an evaluation hook (`EvalHook`) run every `hook.every` steps.
pub fn train_with_eval(
    backend: &mut dyn Backend,
    cfg: &TrainConfig,
    resume: Option<TrainState>,
    mut sample: Option<&mut SampleHook>,
    mut eval: Option<&mut EvalHook>,
) -> Result<TrainSummary> {
    let model_cfg = *backend.config();
    let (b, t) = (cfg.batch, cfg.seq);
    if b == 0 || t == 0 {
        bail!("--batch and --seq must be positive");
    }
    let Some(bt) = b.checked_mul(t).filter(|bt| bt.checked_mul(model_cfg.padded_vocab_size).is_some()) else {
        bail!("--batch {b} times --seq {t} is too large");
    };
    if cfg.val_data.is_some() && cfg.val_every > 0 && cfg.val_batches == 0 {
        bail!("--val-batches must be at least 1 (or turn validation off with --val-every 0)");
    }
    if t > model_cfg.max_seq_len {
        bail!("--seq {t} is longer than the model's maximum sequence length {}", model_cfg.max_seq_len);
    }
    if cfg.total_batch == 0 || !cfg.total_batch.is_multiple_of(bt) {
        bail!("--total-batch {} must be a positive multiple of batch * seq = {bt}", cfg.total_batch);
    }
    let accum = cfg.total_batch / bt;
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
        let saved = (state.b as usize, state.t as usize, state.total_batch as usize, state.seed, state.shuffle);
        if saved != (b, t, cfg.total_batch, cfg.seed, cfg.shuffle) {
            bail!(
                "the checkpoint was trained with --batch {} --seq {} --total-batch {} --seed {} {}; resume with the same",
                state.b,
                state.t,
                state.total_batch,
                state.seed,
                if state.shuffle { "--shuffle" } else { "--no-shuffle" }
            );
        }
        start_step = state.step as usize;
        let position = Position { epoch: state.epoch, shard: state.shard, batch: state.batch };
        train_loader.resume_at(position).map_err(|e| {
            anyhow::anyhow!("cannot resume on this --train-data: {e}; was the checkpoint made with other data?")
        })?;
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
        let validation = match (cfg.val_every, val_batches) {
            (0, _) | (_, 0) => "no validation".to_string(),
            (every, n) => format!("validation every {every} steps on {n} batches"),
        };
        eprintln!(
            "training {} ({:.1}M parameters) on {} | B={b} T={t} accumulation={accum} ({} tokens/step) | {} train tokens, {validation}",
            model_cfg,
            model_cfg.num_parameters_unpadded() as f64 / 1e6,
            backend.describe(),
            cfg.total_batch,
            train_loader.num_tokens(),
        );
    }

    let mut inputs = vec![0u32; b * t];
    let mut targets = vec![0u32; b * t];
    let mut summary = TrainSummary::default();
    let mut total_ms = 0.0;
    let mut timed_steps = 0usize;

    let save = |backend: &mut dyn Backend, step: usize, pos: Position, rng: &Rng| -> Result<()> {
        backend.with_state(&mut |params, m, v| {
            // an update with finite gradients can still overflow a weight: never save that over a good file
            if let Some((what, i)) = first_non_finite(&[("weight", params), ("AdamW m", m), ("AdamW v", v)]) {
                bail!(
                    "after step {step} {what} {i} is not a finite number; stopped without saving, so the last \
                     checkpoint stays the last good one. Likely cause: a learning rate too high (try a lower --lr)"
                );
            }
            if let Some(path) = &cfg.save {
                let state = TrainState {
                    step: step as u64,
                    epoch: pos.epoch,
                    shard: pos.shard,
                    batch: pos.batch,
                    rng: rng.state,
                    b: b as u32,
                    t: t as u32,
                    total_batch: cfg.total_batch as u64,
                    seed: cfg.seed,
                    shuffle: cfg.shuffle,
                };
                save_checkpoint_with_tokenizer(path, &model_cfg, params, m, v, &state, cfg.tokenizer_digest)?;
            }
            if let Some(path) = &cfg.export_llmc {
                save_llmc_with_tokenizer(path, &model_cfg, params, cfg.tokenizer_digest)?;
            }
            Ok(())
        })
    };

    let end_step = cfg.stop_at.map_or(cfg.steps, |s| s.min(cfg.steps));
    // the console keeps about 20 step lines of a run (plus validations); the JSONL log has every step
    let print_every = if cfg.print_every > 0 { cfg.print_every } else { cfg.steps.div_ceil(20).max(1) };
    let tty = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let mut steps_done = start_step;
    for step in start_step..end_step {
        // validation, before this step's update
        let mut val_loss = None;
        if let Some(loader) = val_loader.as_mut().filter(|_| cfg.val_every > 0 && step % cfg.val_every == 0) {
            let loss = validate(backend, loader, val_batches, &mut inputs, &mut targets, b, t)?;
            summary.val_losses.push((step, loss));
            val_loss = Some(loss);
        }
        let mut scores = Vec::new();
        if let Some(hook) = eval.as_mut().filter(|h| h.every > 0 && step % h.every == 0) {
            scores = (hook.run)(backend)?;
        }

        // one optimizer step: accumulate gradients over `accum` micro-batches
        let started = Instant::now();
        let in_step = || format!("step {}", step + 1);
        backend.zero_grad().with_context(in_step)?;
        let mut train_loss = 0.0;
        for _ in 0..accum {
            train_loader.next_batch(&mut inputs, &mut targets);
            let loss = backend.forward_backward(&inputs, &targets, b, t, 1.0 / accum as f32).with_context(in_step)?;
            train_loss += loss / accum as f32;
        }
        let norm = backend.grad_norm().with_context(in_step)?;
        let lr = learning_rate(cfg.schedule, cfg.lr, step, cfg.warmup, cfg.steps, cfg.min_lr_frac);
        // NaN guard, before the update: a NaN or infinite loss or gradient would poison every weight.
        // Stopping here returns before any save, so the last checkpoint on disk stays the last good one.
        if !train_loss.is_finite() || !norm.is_finite() {
            let not_saved = cfg.save.as_ref().map_or(String::new(), |p| {
                format!(" and without saving (any checkpoint in {} is from before this step)", p.display())
            });
            // the first step after a resume that breaks points at the checkpoint, not the schedule
            let causes = if start_step > 0 && step == start_step {
                "This is the first step after resuming from a checkpoint, and the run broke at once: the \
                 checkpoint's weights or AdamW moments are the likely cause (written by another version, \
                 damaged, or from another run), or the data (check the shards of --train-data)"
                    .to_string()
            } else {
                format!(
                    "Likely causes: a learning rate too high for this model (try a lower --lr, a longer --warmup, \
                     or --grad-clip 1.0; now --lr {} is {lr:.3e} at this step) or bad data (check the shards of \
                     --train-data)",
                    cfg.lr
                )
            };
            bail!(
                "step {}: the training loss is {train_loss} and the gradient norm {norm}, not finite numbers; stopped \
                 before updating the weights{not_saved}. {causes}",
                step + 1,
            );
        }
        backend.update(&cfg.adamw, lr, step as u64 + 1, clip_scale(norm, cfg.grad_clip)).with_context(in_step)?;
        let ms = started.elapsed().as_secs_f64() * 1e3;
        let tok_per_s = cfg.total_batch as f64 / (ms / 1e3);
        let mfu = backend.peak_flops().map(|peak| model_cfg.flops_per_token(t) * tok_per_s / peak);
        // the first step pays for allocation and warm-up; leave it out of the average
        if step > start_step || end_step - start_step == 1 {
            total_ms += ms;
            timed_steps += 1;
        }
        summary.train_losses.push(train_loss);

        if let Some(log) = log.as_mut() {
            let f = shortest;
            let mut record = serde_json::json!({
                "step": step, "train_loss": f(train_loss), "lr": f(lr), "norm": f(norm), "ms": ms, "tok_per_s": tok_per_s,
            });
            if let Some(v) = val_loss {
                record["val_loss"] = serde_json::json!(f(v));
            }
            if let Some(mfu) = mfu {
                record["mfu"] = serde_json::json!(mfu);
            }
            for (name, score) in &scores {
                record[*name] = serde_json::json!(score);
            }
            write_record(log, &record)?;
        }
        if !cfg.quiet {
            let avg_ms = if timed_steps > 0 { total_ms / timed_steps as f64 } else { ms };
            let left = format_duration(avg_ms / 1e3 * (end_step - step - 1) as f64);
            let mut val = val_loss.map_or(String::new(), |v| format!(" | val {v:.4}"));
            scores.iter().for_each(|(name, score)| val += &format!(" | {name} {score:.4}"));
            let mfu = mfu.map_or(String::new(), |m| format!(" | mfu {:.1}%", 100.0 * m));
            let line = format!(
                "step {:>5}/{} | train {train_loss:.4}{val} | lr {lr:.2e} | norm {norm:.3} | {ms:.0} ms | {tok_per_s:.0} tok/s{mfu} | {left} left",
                step + 1,
                cfg.steps,
            );
            // A line stays on screen at the first and last step, at every validation and every
            // `print_every` steps; on a terminal the line in between is rewritten in place each step.
            let keep =
                step == start_step || step + 1 == end_step || val_loss.is_some() || (step + 1) % print_every == 0;
            if keep {
                eprintln!("{}{line}", if tty { "\r\x1b[2K" } else { "" });
            } else if tty {
                eprint!("\r\x1b[2K{line}");
            }
        }
        let done = step + 1;
        steps_done = done;
        // sample before saving, so the saved RNG state is the one the next step starts with
        if cfg.sample_every > 0 && done % cfg.sample_every == 0 {
            if let Some(hook) = sample.as_mut() {
                hook(backend, &mut rng)?;
            }
        }
        if STOP_REQUESTED.load(std::sync::atomic::Ordering::Relaxed) {
            eprintln!("stopping after step {done} as asked");
            break;
        }
        if cfg.save_every > 0 && done % cfg.save_every == 0 && done < end_step {
            save(backend, done, train_loader.position, &rng)?;
        }
    }
    // the model as it ends: validated once more, so the last number on screen is the final model's
    if let Some(loader) = val_loader.as_mut().filter(|_| cfg.val_every > 0 && steps_done > start_step) {
        let loss = validate(backend, loader, val_batches, &mut inputs, &mut targets, b, t)?;
        summary.val_losses.push((steps_done, loss));
        if let Some(log) = log.as_mut() {
            write_record(log, &serde_json::json!({ "step": steps_done, "val_loss": shortest(loss) }))?;
        }
        if !cfg.quiet {
            eprintln!("after step {steps_done}: val {loss:.4}");
        }
    }
    if steps_done > start_step {
        save(backend, steps_done, train_loader.position, &rng)?;
    }
    summary.mean_ms_per_step = if timed_steps > 0 { total_ms / timed_steps as f64 } else { 0.0 };
    summary.tokens_per_second =
        if summary.mean_ms_per_step > 0.0 { cfg.total_batch as f64 / (summary.mean_ms_per_step / 1e3) } else { 0.0 };
    Ok(summary)
}
