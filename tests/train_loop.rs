//! The training loop's wiring, checked directly: `train` drives a backend that does no math and
//! records every call, so each decision of `src/train.rs` is visible on its own: the clipping
//! scale passed to the update, the loss scale of each micro-batch, one `zero_grad` per step, and
//! the learning rate and step number of each update. (tests/training.rs checks the same loop end
//! to end on a real model, where a wrong scale only shows as a slightly different loss.)

use anyhow::Result;
use approx::assert_relative_eq;
use gpt2::config::ModelConfig;
use gpt2::data::write_shard;
use gpt2::optim::{learning_rate, AdamWConfig, Schedule};
use gpt2::train::{train, Backend, TrainConfig};
use std::path::Path;

/// One call the loop made.
#[derive(Clone, Debug, PartialEq)]
enum Call {
    ZeroGrad,
    ForwardBackward { loss_scale: f32 },
    GradNorm,
    Update { lr: f32, t: u64, grad_scale: f32 },
}

/// A backend that records calls; `grad_norm` returns the next of `norms` (cycling).
struct Recorder {
    config: ModelConfig,
    calls: Vec<Call>,
    norms: Vec<f32>,
    n: usize,
}

impl Recorder {
    fn new(norms: &[f32]) -> Self {
        let config = ModelConfig {
            max_seq_len: 8,
            vocab_size: 50,
            padded_vocab_size: 64,
            num_layers: 1,
            num_heads: 1,
            channels: 4,
        };
        let n = gpt2::model::ParamLayout::new(&config).total;
        Recorder { config, calls: Vec::new(), norms: norms.to_vec(), n }
    }

    fn updates(&self) -> Vec<(f32, u64, f32)> {
        let f = |c: &Call| match *c {
            Call::Update { lr, t, grad_scale } => Some((lr, t, grad_scale)),
            _ => None,
        };
        self.calls.iter().filter_map(f).collect()
    }
}

impl Backend for Recorder {
    fn describe(&self) -> String {
        "recorder".into()
    }
    fn config(&self) -> &ModelConfig {
        &self.config
    }
    fn forward_backward(&mut self, _: &[u32], _: &[u32], _: usize, _: usize, loss_scale: f32) -> Result<f32> {
        self.calls.push(Call::ForwardBackward { loss_scale });
        Ok(2.0)
    }
    fn loss(&mut self, _: &[u32], _: &[u32], _: usize, _: usize) -> Result<f32> {
        Ok(2.0)
    }
    fn position_losses(&mut self, _: &[u32], _: &[u32], b: usize, t: usize) -> Result<Vec<f32>> {
        Ok(vec![2.0; b * t])
    }
    fn zero_grad(&mut self) -> Result<()> {
        self.calls.push(Call::ZeroGrad);
        Ok(())
    }
    fn grad_norm(&mut self) -> Result<f32> {
        let steps_so_far = self.calls.iter().filter(|c| **c == Call::GradNorm).count();
        self.calls.push(Call::GradNorm);
        Ok(self.norms[steps_so_far % self.norms.len()])
    }
    fn update(&mut self, _: &AdamWConfig, lr: f32, t: u64, grad_scale: f32) -> Result<()> {
        self.calls.push(Call::Update { lr, t, grad_scale });
        Ok(())
    }
    fn params(&mut self) -> Result<Vec<f32>> {
        Ok(vec![0.0; self.n])
    }
    fn optimizer_state(&mut self) -> Result<(Vec<f32>, Vec<f32>)> {
        Ok((vec![0.0; self.n], vec![0.0; self.n]))
    }
    fn set_optimizer_state(&mut self, _: &[f32], _: &[f32]) -> Result<()> {
        Ok(())
    }
}

fn config(dir: &Path, steps: usize, total_batch: usize, grad_clip: f32) -> TrainConfig {
    let shard = dir.join("train.bin");
    if !shard.exists() {
        write_shard(&shard, &(0..400).map(|i| (i % 50) as u16).collect::<Vec<u16>>()).unwrap();
    }
    TrainConfig {
        train_data: shard.to_str().unwrap().to_string(),
        val_data: None,
        batch: 2,
        seq: 4,
        total_batch,
        steps,
        lr: 1e-3,
        warmup: 2,
        schedule: Schedule::Cosine,
        min_lr_frac: 0.1,
        adamw: AdamWConfig::default(),
        grad_clip,
        val_every: 0,
        val_batches: 1,
        shuffle: false,
        seed: 1,
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

#[test]
fn the_update_gets_clip_over_norm_above_the_limit_and_one_below() {
    let dir = tempfile::tempdir().unwrap();
    // norms above, below and at the limit of 1.0
    let mut backend = Recorder::new(&[4.0, 0.5, 1.0, 2.5]);
    train(&mut backend, &config(dir.path(), 4, 8, 1.0), None, None).unwrap();
    let scales: Vec<f32> = backend.updates().iter().map(|u| u.2).collect();
    // clip / norm = 1/4 when the norm is 4; no scaling (1) at or below the limit
    assert_eq!(scales, [0.25, 1.0, 1.0, 0.4], "grad_scale passed to update for norms [4, 0.5, 1, 2.5], clip 1");
    // --grad-clip 0 turns clipping off
    let mut backend = Recorder::new(&[4.0]);
    train(&mut backend, &config(dir.path(), 2, 8, 0.0), None, None).unwrap();
    assert!(backend.updates().iter().all(|u| u.2 == 1.0), "with --grad-clip 0: {:?}", backend.updates());
}

#[test]
fn each_step_zeroes_once_then_accumulates_micro_batches_at_one_over_accum() {
    let dir = tempfile::tempdir().unwrap();
    // total batch 32 tokens of B*T = 8: 4 micro-batches a step, each loss scaled by 1/4
    let mut backend = Recorder::new(&[0.5]);
    let summary = train(&mut backend, &config(dir.path(), 3, 32, 1.0), None, None).unwrap();
    let micro = Call::ForwardBackward { loss_scale: 0.25 };
    let mut expected = Vec::new();
    for step in 0..3 {
        expected.push(Call::ZeroGrad);
        expected.extend([micro.clone(), micro.clone(), micro.clone(), micro.clone()]);
        expected.push(Call::GradNorm);
        let lr = learning_rate(Schedule::Cosine, 1e-3, step, 2, 3, 0.1);
        expected.push(Call::Update { lr, t: step as u64 + 1, grad_scale: 1.0 });
    }
    assert_eq!(backend.calls, expected, "the calls of 3 steps with 4 micro-batches each");
    // the reported loss is the mean of the micro-batches' losses (each 2.0 here)
    for loss in summary.train_losses {
        assert_relative_eq!(loss, 2.0, max_relative = 1e-6);
    }
}

#[test]
fn each_update_gets_the_scheduled_learning_rate_and_its_step_number() {
    let dir = tempfile::tempdir().unwrap();
    let (steps, warmup) = (12, 3);
    let cfg = TrainConfig { warmup, ..config(dir.path(), steps, 8, 1.0) };
    let mut backend = Recorder::new(&[0.5]);
    train(&mut backend, &cfg, None, None).unwrap();
    let updates = backend.updates();
    assert_eq!(updates.len(), steps);
    for (step, &(lr, t, _)) in updates.iter().enumerate() {
        let want = learning_rate(Schedule::Cosine, cfg.lr, step, warmup, steps, cfg.min_lr_frac);
        assert_eq!(lr, want, "learning rate of step {step}");
        assert_eq!(t, step as u64 + 1, "AdamW's t at step {step} (1-based, for bias correction)");
    }
    // and the schedule itself: warmup from lr/3, the peak, the floor at the last step
    assert_relative_eq!(updates[0].0, 1e-3 / 3.0, max_relative = 1e-6);
    assert_relative_eq!(updates[warmup].0, 1e-3, max_relative = 1e-6);
    assert_relative_eq!(updates[steps - 1].0, 1e-4, max_relative = 1e-5);
}
