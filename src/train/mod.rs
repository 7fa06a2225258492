//! The training loop, the same for every device: a `Backend` (`src/backend.rs`; the CPU's in
//! `src/cpu/backend.rs`, CUDA's in `src/cuda/backend.rs`) does the math, this module decides what
//! happens when. Read `train_with_eval` below, then `step.rs` (one optimizer step, llm.c's loop body),
//! `report.rs` (the console and the JSONL log) and `checkpointing.rs` (save and resume).

mod checkpointing;
pub mod per_byte;
mod report;
mod step;

pub use crate::backend::{Backend, StateVisitor};
pub use per_byte::ValText;
pub use step::{train_step, Batch, StepStats};

use crate::config::ModelConfig;
use crate::data::{DataLoader, Position};
use crate::model::checkpoint::TrainState;
use crate::optim::{AdamWConfig, Schedule};
use crate::rng::Rng;
use anyhow::{bail, Context, Result};
use report::{Report, StepLine};
use std::path::PathBuf;
use std::time::Instant;

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

/// Set by Ctrl-C (see the `train` command): the loop finishes the step it is in, saves, and returns.
pub static STOP_REQUESTED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// What a finished run reports.
#[derive(Clone, Debug, Default)]
pub struct TrainSummary {
    pub train_losses: Vec<f32>,
    /// (step, loss): step 0 is the model before training, step N after N updates.
    pub val_losses: Vec<(usize, f32)>,
    pub mean_ms_per_step: f64,
    pub tokens_per_second: f64,
    /// The optimizer steps done in all, counting those before a resume.
    pub steps_done: usize,
    /// The checkpoint written at the end, if one was.
    pub saved: Option<PathBuf>,
    /// The run stopped early because Ctrl-C asked it to.
    pub interrupted: bool,
}

/// Called every `sample_every` steps with the backend, the step (1-based) and the run's RNG, to print a short generation.
pub type SampleHook<'a> = dyn FnMut(&mut dyn Backend, usize, &mut Rng) -> Result<()> + 'a;

/// An evaluation run every `every` steps, before the step's update as validation is (HellaSwag, in
/// `commands::train`): `run` returns named scores, which go on the console line and into the log record.
pub struct EvalHook<'a> {
    pub every: usize,
    pub run: Box<EvalFn<'a>>,
}

/// What an `EvalHook` runs: named scores of the model as it is.
pub type EvalFn<'a> = dyn FnMut(&mut dyn Backend) -> Result<Vec<(&'static str, f64)>> + 'a;

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
///
/// The loop, as llm.c's: every step is `train_step` (zero grads, forward + backward per micro-batch,
/// clip, update); after it, when due, validation and the evaluation hook, the step's report, a sample,
/// a checkpoint. Steps are numbered from 1 (`report.rs`); the model before training is step 0.
pub fn train_with_eval(
    backend: &mut dyn Backend,
    cfg: &TrainConfig,
    resume: Option<TrainState>,
    mut sample: Option<&mut SampleHook>,
    mut eval: Option<&mut EvalHook>,
) -> Result<TrainSummary> {
    let model_cfg = *backend.config();
    let accum = check_shapes(cfg, &model_cfg)?;
    let mut train_loader =
        DataLoader::new(&cfg.train_data, cfg.batch, cfg.seq, model_cfg.vocab_size, cfg.shuffle, cfg.seed)?;
    let mut val = Validation::open(cfg, model_cfg.vocab_size)?;
    let (start_step, mut rng) = match &resume {
        Some(state) => checkpointing::resume(state, cfg, &mut train_loader)?,
        None => (0, Rng::new(cfg.seed)),
    };
    let end_step = cfg.stop_at.map_or(cfg.steps, |s| s.min(cfg.steps));
    let mut report = Report::open(cfg, start_step + 1, end_step)?;
    report.header(&format!(
        "training {} ({:.1}M parameters) on {} | B={} T={} accumulation={accum} ({} tokens/step) | {} train tokens, {}",
        model_cfg,
        model_cfg.num_parameters_unpadded() as f64 / 1e6,
        backend.describe(),
        cfg.batch,
        cfg.seq,
        cfg.total_batch,
        train_loader.num_tokens(),
        val.describe(cfg.val_every),
    ));
    let mut batch = Batch::new(cfg.batch, cfg.seq);
    let peak = backend.mfu_peak();
    let mut summary = TrainSummary { steps_done: start_step, ..Default::default() };
    // step 0: the model before training, so that the curve starts where the model did
    if start_step == 0 && end_step > 0 {
        let (val_loss, scores) = evaluate(backend, &mut val, eval.as_deref_mut(), &mut batch, cfg, 0, true)?; // always validated
        val_loss.iter().for_each(|&v| summary.val_losses.push((0, v)));
        report.before_training(val_loss, &scores)?;
    }

    for step in start_step..end_step {
        let n = step + 1;
        let started = Instant::now();
        let stats =
            train_step(backend, &mut train_loader, &mut batch, cfg, step, resume.is_some() && step == start_step)?;
        let ms = started.elapsed().as_secs_f64() * 1e3;
        summary.train_losses.push(stats.loss);
        summary.steps_done = n;
        let stopping = STOP_REQUESTED.load(std::sync::atomic::Ordering::Relaxed);
        let last = n == end_step || stopping;
        let (val_loss, scores) = evaluate(backend, &mut val, eval.as_deref_mut(), &mut batch, cfg, n, last)?;
        val_loss.iter().for_each(|&v| summary.val_losses.push((n, v)));
        let tok_per_s = cfg.total_batch as f64 / (ms / 1e3);
        let mfu = peak.as_ref().map(|p| (model_cfg.flops_per_token(cfg.seq) * tok_per_s / p.flops, p.name.as_str()));
        report.step(&StepLine { step: n, stats, ms, tok_per_s, mfu, val_loss, scores: &scores })?;
        // sample before saving, so the saved RNG state is the one the next step starts with
        if let Some(hook) = sample.as_mut().filter(|_| cfg.sample_every > 0 && n % cfg.sample_every == 0) {
            hook(backend, n, &mut rng)?;
        }
        if stopping {
            eprintln!("stopping after step {n} as asked");
            summary.interrupted = true;
            break;
        }
        if cfg.save_every > 0 && n % cfg.save_every == 0 && n < end_step {
            checkpointing::save(backend, cfg, n, train_loader.position, &rng)?;
        }
    }
    if summary.steps_done > start_step {
        summary.saved = checkpointing::save(backend, cfg, summary.steps_done, train_loader.position, &rng)?;
    }
    summary.mean_ms_per_step = report.mean_ms().unwrap_or(0.0);
    summary.tokens_per_second =
        if summary.mean_ms_per_step > 0.0 { cfg.total_batch as f64 / (summary.mean_ms_per_step / 1e3) } else { 0.0 };
    Ok(summary)
}

/// Checks the batch shape against the model before any work; returns the gradient accumulation steps.
fn check_shapes(cfg: &TrainConfig, model_cfg: &ModelConfig) -> Result<usize> {
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
    Ok(cfg.total_batch / bt)
}

/// The validation data: always the same first batches of the val shards.
struct Validation {
    loader: Option<DataLoader>,
    batches: usize,
}

impl Validation {
    fn open(cfg: &TrainConfig, vocab: usize) -> Result<Self> {
        let loader = match &cfg.val_data {
            Some(pattern) => Some(DataLoader::new(pattern, cfg.batch, cfg.seq, vocab, false, 0)?),
            None => None,
        };
        let batches = loader.as_ref().map_or(0, |l| cfg.val_batches.min(l.batches_per_epoch()));
        Ok(Validation { loader, batches })
    }

    fn describe(&self, every: usize) -> String {
        match (every, self.batches) {
            (0, _) | (_, 0) => "no validation".to_string(),
            (every, n) => format!("validation every {every} steps on {n} batches"),
        }
    }

    /// The mean loss over the validation batches.
    fn loss(&mut self, backend: &mut dyn Backend, batch: &mut Batch) -> Result<Option<f32>> {
        let Some(loader) = self.loader.as_mut() else { return Ok(None) };
        loader.seek(Position::default());
        let mut sum = 0.0;
        for _ in 0..self.batches {
            loader.next_batch(&mut batch.inputs, &mut batch.targets);
            sum += backend.loss(&batch.inputs, &batch.targets, batch.b, batch.t).context("validation")?;
        }
        Ok(Some(sum / self.batches.max(1) as f32))
    }
}

/// Named evaluation scores (HellaSwag's), as an `EvalHook` returns them.
type Scores = Vec<(&'static str, f64)>;

/// After step `n` (0: before training): the validation loss every `val_every` steps and whenever
/// `always` (before training and after the last step), and the hook's scores every `hook.every` steps.
fn evaluate(
    backend: &mut dyn Backend,
    val: &mut Validation,
    hook: Option<&mut EvalHook>,
    batch: &mut Batch,
    cfg: &TrainConfig,
    n: usize,
    always: bool,
) -> Result<(Option<f32>, Scores)> {
    let val_loss = match cfg.val_every {
        0 => None,
        every if n.is_multiple_of(every) || always => val.loss(backend, batch)?,
        _ => None,
    };
    let scores = match hook {
        Some(hook) if hook.every > 0 && n.is_multiple_of(hook.every) => (hook.run)(backend)?,
        _ => Vec::new(),
    };
    Ok((val_loss, scores))
}
