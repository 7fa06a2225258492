//! NaN guards: a loss, a gradient norm or a weight that becomes NaN or infinite stops training with a
//! message naming the step and the likely cause, and the checkpoint on disk stays the last good one.
//!
//! The fault is injected by a backend that wraps the CPU model and turns one number bad at a chosen
//! step, so each guard is tested on its own.

use gpt2::config::ModelConfig;
use gpt2::cpu::backend::CpuBackend;
use gpt2::data::write_shard;
use gpt2::model::checkpoint::load;
use gpt2::model::init::gpt2_init;
use gpt2::optim::{AdamWConfig, Schedule};
use gpt2::rng::Rng;
use gpt2::train::{train, Backend, StateVisitor, TrainConfig};
use std::path::Path;

fn config() -> ModelConfig {
    ModelConfig { max_seq_len: 16, vocab_size: 50, padded_vocab_size: 64, num_layers: 1, num_heads: 2, channels: 16 }
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Fault {
    Loss(f32),
    GradNorm(f32),
    /// A weight that overflows in the update of this step.
    Weight(f32),
    /// The device fails (as a GPU kernel fault does) when the gradient norm is read at this step.
    DeviceError,
}

/// The CPU backend, with `fault` at optimizer step `at` (1-based, as the console counts).
struct Faulty {
    inner: CpuBackend,
    fault: Fault,
    at: usize,
    /// Optimizer steps begun (zero_grad calls).
    step: usize,
}

impl Backend for Faulty {
    fn describe(&self) -> String {
        "faulty CPU".into()
    }
    fn config(&self) -> &ModelConfig {
        self.inner.config()
    }
    fn forward_backward(
        &mut self,
        inputs: &[u32],
        targets: &[u32],
        b: usize,
        t: usize,
        loss_scale: f32,
    ) -> anyhow::Result<f32> {
        let loss = self.inner.forward_backward(inputs, targets, b, t, loss_scale)?;
        match self.fault {
            Fault::Loss(bad) if self.step == self.at => Ok(bad),
            _ => Ok(loss),
        }
    }
    fn loss(&mut self, inputs: &[u32], targets: &[u32], b: usize, t: usize) -> anyhow::Result<f32> {
        self.inner.loss(inputs, targets, b, t)
    }
    fn position_losses(&mut self, inputs: &[u32], targets: &[u32], b: usize, t: usize) -> anyhow::Result<Vec<f32>> {
        self.inner.position_losses(inputs, targets, b, t)
    }
    fn zero_grad(&mut self) -> anyhow::Result<()> {
        self.step += 1;
        self.inner.zero_grad()
    }
    fn grad_norm(&mut self) -> anyhow::Result<f32> {
        match self.fault {
            Fault::GradNorm(bad) if self.step == self.at => Ok(bad),
            // what a GPU backend returns when a kernel faults (`src/cuda/backend.rs` adds the context)
            Fault::DeviceError if self.step == self.at => Err(anyhow::anyhow!(
                "a CUDA kernel or copy failed: DriverError(CUDA_ERROR_ILLEGAL_ADDRESS, \"an illegal memory access was encountered\")"
            )
            .context("GPU gradient norm")),
            _ => self.inner.grad_norm(),
        }
    }
    fn update(&mut self, adamw: &AdamWConfig, lr: f32, t: u64, grad_scale: f32) -> anyhow::Result<()> {
        self.inner.update(adamw, lr, t, grad_scale)
    }
    fn params(&mut self) -> anyhow::Result<Vec<f32>> {
        self.inner.params()
    }
    fn optimizer_state(&mut self) -> anyhow::Result<(Vec<f32>, Vec<f32>)> {
        self.inner.optimizer_state()
    }
    fn set_optimizer_state(&mut self, m: &[f32], v: &[f32]) -> anyhow::Result<()> {
        self.inner.set_optimizer_state(m, v)
    }
    fn with_state(&mut self, f: &mut StateVisitor) -> anyhow::Result<()> {
        let mut params = self.inner.params()?;
        let (m, v) = self.inner.optimizer_state()?;
        if let Fault::Weight(bad) = self.fault {
            if self.step >= self.at {
                params[123] = bad;
            }
        }
        f(&params, &m, &v)
    }
}

fn setup(dir: &Path, steps: usize) -> TrainConfig {
    let mut rng = Rng::new(3);
    let tokens: Vec<u16> = (0..3000).map(|_| rng.below(50) as u16).collect();
    write_shard(&dir.join("train.bin"), &tokens).unwrap();
    TrainConfig {
        train_data: dir.join("train.bin").display().to_string(),
        val_data: None,
        batch: 2,
        seq: 16,
        total_batch: 64,
        steps,
        lr: 3e-3,
        warmup: 2,
        schedule: Schedule::Cosine,
        min_lr_frac: 0.1,
        adamw: AdamWConfig::default(),
        grad_clip: 1.0,
        val_every: 0,
        val_batches: 1,
        shuffle: false,
        seed: 5,
        log: None,
        save: Some(dir.join("ck.bin")),
        save_every: 1,
        export_llmc: None,
        sample_every: 0,
        print_every: 0,
        stop_at: None,
        quiet: true,
        tokenizer_digest: 0,
    }
}

#[test]
fn a_nan_or_infinite_loss_gradient_or_weight_stops_the_run_and_keeps_the_last_good_checkpoint() {
    for fault in [
        Fault::Loss(f32::NAN),
        Fault::Loss(f32::INFINITY),
        Fault::GradNorm(f32::NAN),
        Fault::GradNorm(f32::NEG_INFINITY),
        Fault::Weight(f32::NAN),
        Fault::Weight(f32::INFINITY),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let cfg = setup(dir.path(), 10);
        let at = 4;
        let mut backend = Faulty { inner: CpuBackend::new(config(), gpt2_init(&config(), 1)), fault, at, step: 0 };
        let err = train(&mut backend, &cfg, None, None).expect_err("training must stop").to_string();
        println!("{fault:?}: {err}");
        // the message names the step and the likely causes
        assert!(err.contains(&format!("step {at}")), "{fault:?}: the message does not name step {at}: {err}");
        assert!(err.contains("--lr"), "{fault:?}: no likely cause in: {err}");
        if !matches!(fault, Fault::Weight(_)) {
            assert!(err.contains("--train-data"), "{fault:?}: bad data not named as a cause in: {err}");
        }
        // the checkpoint on disk is the one saved after step at-1, and it is all finite
        let ck = load(&cfg.save.clone().unwrap()).unwrap();
        let (m, v, state) = ck.optimizer.unwrap();
        assert_eq!(state.step as usize, at - 1, "{fault:?}: the last good checkpoint was overwritten");
        assert!(ck.params.iter().chain(&m).chain(&v).all(|x| x.is_finite()), "{fault:?}: a non-finite value was saved");
    }
}

#[test]
fn a_run_without_bad_numbers_is_not_stopped() {
    // the guard itself must not fire on healthy training (the fault is scheduled after the last step)
    let dir = tempfile::tempdir().unwrap();
    let cfg = setup(dir.path(), 6);
    let mut backend = Faulty {
        inner: CpuBackend::new(config(), gpt2_init(&config(), 1)),
        fault: Fault::Loss(f32::NAN),
        at: 99,
        step: 0,
    };
    let summary = train(&mut backend, &cfg, None, None).unwrap();
    assert_eq!(summary.train_losses.len(), 6);
    assert_eq!(load(&cfg.save.unwrap()).unwrap().optimizer.unwrap().2.step, 6);
}

#[test]
fn a_run_that_breaks_right_after_resuming_blames_the_checkpoint_not_the_learning_rate() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = setup(dir.path(), 3);
    let mut healthy =
        Faulty { inner: CpuBackend::new(config(), gpt2_init(&config(), 1)), fault: Fault::Loss(1.0), at: 99, step: 0 };
    train(&mut healthy, &cfg, None, None).unwrap();
    // resume for 3 more steps; the first of them goes bad (as a checkpoint with a damaged v would)
    let ck = load(&cfg.save.clone().unwrap()).unwrap();
    let (m, v, state) = ck.optimizer.unwrap();
    let mut inner = CpuBackend::new(ck.config, ck.params);
    inner.set_optimizer_state(&m, &v).unwrap();
    let mut resumed = Faulty { inner, fault: Fault::GradNorm(f32::NAN), at: 1, step: 0 };
    let cfg = TrainConfig { steps: 6, ..cfg };
    let err = train(&mut resumed, &cfg, Some(state), None).expect_err("training must stop").to_string();
    println!("{err}");
    assert!(err.contains("step 4"), "the message does not name step 4: {err}");
    assert!(err.contains("resuming from a checkpoint"), "the checkpoint is not named as the likely cause: {err}");
    assert!(!err.contains("--lr"), "the learning rate is blamed for a run that broke right after resuming: {err}");
}

#[test]
fn a_device_error_mid_training_ends_the_run_with_an_error_naming_the_step_and_the_failure() {
    // a GPU backend returns kernel faults as errors (no panic); the loop adds the step and stops
    // before the update, so the checkpoint on disk stays the one from the step before
    let dir = tempfile::tempdir().unwrap();
    let cfg = setup(dir.path(), 10);
    let at = 3;
    let mut backend =
        Faulty { inner: CpuBackend::new(config(), gpt2_init(&config(), 1)), fault: Fault::DeviceError, at, step: 0 };
    let err = format!("{:#}", train(&mut backend, &cfg, None, None).expect_err("training must stop"));
    println!("{err}");
    assert!(err.starts_with(&format!("step {at}: GPU gradient norm: ")), "no step and stage in: {err}");
    assert!(err.contains("CUDA_ERROR_ILLEGAL_ADDRESS"), "the driver's error is lost: {err}");
    let ck = load(&cfg.save.clone().unwrap()).unwrap();
    assert_eq!(ck.optimizer.unwrap().2.step as usize, at - 1, "the last good checkpoint was overwritten");
}
