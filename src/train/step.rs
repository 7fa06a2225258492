//! One optimizer step, as llm.c's training loop body writes it: zero the gradients, forward and
//! backward over the micro-batches (gradient accumulation), the gradient norm for clipping, and the
//! AdamW update. Everything around it (validation, the console, checkpoints) is in the loop
//! (`mod.rs`), `report.rs` and `checkpointing.rs`.

use super::TrainConfig;
use crate::backend::Backend;
use crate::data::DataLoader;
use crate::optim::{clip_scale, learning_rate};
use anyhow::{bail, Context, Result};

/// The token buffers of one micro-batch: `inputs` and `targets` are (B, T), reused every step.
pub struct Batch {
    pub inputs: Vec<u32>,
    pub targets: Vec<u32>,
    pub b: usize,
    pub t: usize,
}

impl Batch {
    pub fn new(b: usize, t: usize) -> Self {
        Batch { inputs: vec![0; b * t], targets: vec![0; b * t], b, t }
    }
}

/// What one step measured.
#[derive(Clone, Copy, Debug)]
pub struct StepStats {
    /// The mean training loss over the step's micro-batches.
    pub loss: f32,
    /// The gradient's global L2 norm, before clipping.
    pub norm: f32,
    /// The learning rate the update used.
    pub lr: f32,
}

/// Optimizer step `step` (0-based; the console and the log call it step `step + 1`): the gradient of
/// the mean loss over `cfg.total_batch` tokens, read as `accum` micro-batches of `batch`, then one
/// AdamW update. A loss or norm that is not finite stops before the update (`non_finite`);
/// `first_after_resume` says whether to blame the checkpoint rather than the learning rate.
pub fn train_step(
    backend: &mut dyn Backend,
    loader: &mut DataLoader,
    batch: &mut Batch,
    cfg: &TrainConfig,
    step: usize,
    first_after_resume: bool,
) -> Result<StepStats> {
    let accum = cfg.total_batch / (batch.b * batch.t);
    let in_step = || format!("step {}", step + 1);
    // 1. zero the gradients: every micro-batch below adds into them
    backend.zero_grad().with_context(in_step)?;
    // 2. forward and backward, each micro-batch adding the gradient of loss / accum
    let mut loss = 0.0;
    for _ in 0..accum {
        loader.next_batch(&mut batch.inputs, &mut batch.targets);
        let micro_loss = backend
            .forward_backward(&batch.inputs, &batch.targets, batch.b, batch.t, 1.0 / accum as f32)
            .with_context(in_step)?;
        loss += micro_loss / accum as f32;
    }
    // 3. the gradient's global norm: clipping scales the gradients down to at most cfg.grad_clip
    let norm = backend.grad_norm().with_context(in_step)?;
    // 4. a NaN here would poison every weight: stop before the update
    if !loss.is_finite() || !norm.is_finite() {
        bail!(non_finite(cfg, step, loss, norm, first_after_resume));
    }
    // 5. AdamW at this step's learning rate
    let lr = learning_rate(cfg.schedule, cfg.lr, step, cfg.warmup, cfg.steps, cfg.min_lr_frac);
    backend.update(&cfg.adamw, lr, step as u64 + 1, clip_scale(norm, cfg.grad_clip)).with_context(in_step)?;
    Ok(StepStats { loss, norm, lr })
}

/// The error for a step whose loss or gradient norm is NaN or infinite: the step, the numbers, that
/// nothing was saved (so the last checkpoint on disk stays the last good one), and the likely causes.
/// The first step after a resume that breaks at once points at the checkpoint, not the schedule.
fn non_finite(cfg: &TrainConfig, step: usize, loss: f32, norm: f32, first_after_resume: bool) -> String {
    let not_saved = cfg.save.as_ref().map_or(String::new(), |p| {
        format!(" and without saving (any checkpoint in {} is from before this step)", p.display())
    });
    let causes = if first_after_resume {
        "This is the first step after resuming from a checkpoint, and the run broke at once: the checkpoint's \
         weights or AdamW moments are the likely cause (written by another version, damaged, or from another \
         run), or the data (check the shards of --train-data)"
            .to_string()
    } else {
        let lr = learning_rate(cfg.schedule, cfg.lr, step, cfg.warmup, cfg.steps, cfg.min_lr_frac);
        format!(
            "Likely causes: a learning rate too high for this model (try a lower --lr, a longer --warmup, or \
             --grad-clip 1.0; now --lr {} is {lr:.3e} at this step) or bad data (check the shards of --train-data)",
            cfg.lr
        )
    };
    format!(
        "step {}: the training loss is {loss} and the gradient norm {norm}, not finite numbers; stopped before \
         updating the weights{not_saved}. {causes}",
        step + 1
    )
}
