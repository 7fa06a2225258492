//! Checkpoints of a training run: saving one (weights, AdamW's moments, the step, the data position
//! and the RNG, so that a resumed run continues bit for bit) and picking up from one.

use super::TrainConfig;
use crate::backend::Backend;
use crate::config::ModelConfig;
use crate::data::{DataLoader, Position};
use crate::model::checkpoint::{save_checkpoint_with_tokenizer, save_llmc_with_tokenizer, TrainState};
use crate::rng::Rng;
use anyhow::{bail, Result};
use std::path::PathBuf;

/// Writes the checkpoint of `cfg.save` (and the llm.c file of `cfg.export_llmc`) after `step`
/// optimizer steps, with the loader at `position` and the run's RNG `rng`. Weights that are not
/// finite are never written over a good file. Returns the checkpoint written, if any.
pub fn save(
    backend: &mut dyn Backend,
    cfg: &TrainConfig,
    step: usize,
    position: Position,
    rng: &Rng,
) -> Result<Option<PathBuf>> {
    let model_cfg: ModelConfig = *backend.config();
    backend.with_state(&mut |params, m, v| {
        // an update with finite gradients can still overflow a weight: never save that over a good file
        if let Some((what, i)) = first_non_finite(&[("weight", params), ("AdamW m", m), ("AdamW v", v)]) {
            bail!(
                "after step {step} {what} {i} is not a finite number; stopped without saving, so the last \
                 checkpoint stays the last good one. Likely cause: a learning rate too high (try a lower --lr)"
            );
        }
        if let Some(path) = &cfg.save {
            let state = train_state(cfg, step, position, rng);
            save_checkpoint_with_tokenizer(path, &model_cfg, params, m, v, &state, cfg.tokenizer_digest)?;
        }
        if let Some(path) = &cfg.export_llmc {
            save_llmc_with_tokenizer(path, &model_cfg, params, cfg.tokenizer_digest)?;
        }
        Ok(())
    })?;
    Ok(cfg.save.clone())
}

/// What a checkpoint records of the run besides the weights.
fn train_state(cfg: &TrainConfig, step: usize, position: Position, rng: &Rng) -> TrainState {
    TrainState {
        step: step as u64,
        epoch: position.epoch,
        shard: position.shard,
        batch: position.batch,
        rng: rng.state,
        b: cfg.batch as u32,
        t: cfg.seq as u32,
        total_batch: cfg.total_batch as u64,
        seed: cfg.seed,
        shuffle: cfg.shuffle,
    }
}

/// Picks up a run from its checkpoint's `state`: checks that the batch shape, seed and order are the
/// run's, moves `loader` to where the run was, and returns the step to start at and the RNG.
pub fn resume(state: &TrainState, cfg: &TrainConfig, loader: &mut DataLoader) -> Result<(usize, Rng)> {
    let saved = (state.b as usize, state.t as usize, state.total_batch as usize, state.seed, state.shuffle);
    if saved != (cfg.batch, cfg.seq, cfg.total_batch, cfg.seed, cfg.shuffle) {
        bail!(
            "the checkpoint was trained with --batch {} --seq {} --total-batch {} --seed {} {}; resume with the same",
            state.b,
            state.t,
            state.total_batch,
            state.seed,
            if state.shuffle { "--shuffle" } else { "--no-shuffle" }
        );
    }
    let position = Position { epoch: state.epoch, shard: state.shard, batch: state.batch };
    loader.resume_at(position).map_err(|e| {
        anyhow::anyhow!("cannot resume on this --train-data: {e}; was the checkpoint made with other data?")
    })?;
    Ok((state.step as usize, Rng::new(state.rng)))
}

/// The first value that is NaN or infinite, as (the name of its tensor, its index).
fn first_non_finite<'a>(tensors: &[(&'a str, &[f32])]) -> Option<(&'a str, usize)> {
    tensors.iter().find_map(|&(name, values)| values.iter().position(|x| !x.is_finite()).map(|i| (name, i)))
}
