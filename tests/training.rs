//! The training loop end to end on a small model: the loss falls, gradient accumulation is the same
//! as one big batch, and resuming from a checkpoint continues bit for bit.

mod common;
use common::compare_fields;
use gpt2::config::ModelConfig;
use gpt2::cpu::backend::CpuBackend;
use gpt2::data::write_shard;
use gpt2::model::checkpoint::load;
use gpt2::model::init::gpt2_init;
use gpt2::optim::{AdamWConfig, Schedule};
use gpt2::rng::Rng;
use gpt2::train::{train, Backend, TrainConfig};
use std::path::Path;

fn config() -> ModelConfig {
    ModelConfig { max_seq_len: 32, vocab_size: 50, padded_vocab_size: 64, num_layers: 2, num_heads: 2, channels: 16 }
}

/// A shard of "text" with structure to learn: token i+1 usually follows token i.
fn make_shard(path: &Path, n: usize, seed: u64) {
    let mut rng = Rng::new(seed);
    let mut tok = 0u16;
    let tokens: Vec<u16> = (0..n)
        .map(|_| {
            tok = if rng.next_f32() < 0.8 { (tok + 1) % 50 } else { rng.below(50) as u16 };
            tok
        })
        .collect();
    write_shard(path, &tokens).unwrap();
}

fn train_config(dir: &Path, steps: usize) -> TrainConfig {
    TrainConfig {
        train_data: dir.join("train.bin").to_str().unwrap().to_string(),
        val_data: Some(dir.join("val.bin").to_str().unwrap().to_string()),
        batch: 2,
        seq: 16,
        total_batch: 64,
        steps,
        lr: 3e-3,
        warmup: 3,
        schedule: Schedule::Cosine,
        min_lr_frac: 0.1,
        adamw: AdamWConfig::default(),
        grad_clip: 1.0,
        val_every: 5,
        val_batches: 3,
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

fn data_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    make_shard(&dir.path().join("train.bin"), 2000, 1);
    make_shard(&dir.path().join("val.bin"), 500, 2);
    dir
}

#[test]
fn training_lowers_the_loss() {
    let dir = data_dir();
    let mut backend = CpuBackend::new(config(), gpt2_init(&config(), 1));
    let cfg = TrainConfig { lr: 1e-2, ..train_config(dir.path(), 80) };
    let summary = train(&mut backend, &cfg, None, None).unwrap();
    let first = summary.val_losses.first().unwrap().1;
    let last = summary.val_losses.last().unwrap().1;
    println!("val losses: {:?}", summary.val_losses);
    // ln(50) = 3.9 at the start; the 80%-predictable next token is learnable
    assert!(first > 3.5 && last < first - 1.0, "val loss went from {first} to {last}");
}

#[test]
fn resuming_continues_bit_for_bit() {
    let dir = data_dir();
    // 62 batches of 32 tokens per epoch, 2 per step: 40 steps cross an epoch boundary (at step 31)
    let (n, total) = (20, 40);
    // a sample hook that draws from the run's RNG, as printing a sample does
    let draws = std::cell::RefCell::new(Vec::new());
    let mut hook = |_: &mut dyn Backend, _step: usize, rng: &mut Rng| {
        draws.borrow_mut().push(rng.next_u64());
        Ok(())
    };
    let cfg = TrainConfig { sample_every: 5, ..train_config(dir.path(), total) };

    // all steps straight
    let mut straight = CpuBackend::new(config(), gpt2_init(&config(), 2));
    let whole = train(&mut straight, &cfg, None, Some(&mut hook)).unwrap();
    let straight_draws = draws.take();

    // N steps with periodic saves, "crash", then a new process loads and continues
    let ckpt_path = dir.path().join("ckpt.bin");
    let mut first_half = CpuBackend::new(config(), gpt2_init(&config(), 2));
    let cfg1 = TrainConfig { save: Some(ckpt_path.clone()), save_every: 10, stop_at: Some(n + 3), ..cfg.clone() };
    let part1 = train(&mut first_half, &cfg1, None, Some(&mut hook)).unwrap();
    let ckpt = load(&ckpt_path).unwrap(); // the final save, at N + 3
    let (m, v, state) = ckpt.optimizer.unwrap();
    assert_eq!(state.step, (n + 3) as u64, "the checkpoint's step");
    // the checkpoint holds what the run had when it stopped (else resuming would start elsewhere)
    let (m1, v1) = first_half.optimizer_state().unwrap();
    let p1 = first_half.params().unwrap();
    let saved: [(&str, &[f32], &[f32]); 3] = [("params", &ckpt.params, &p1), ("m", &m, &m1), ("v", &v, &v1)];
    if let Err(e) = compare_fields("the checkpoint saved at the end of the first run", &saved) {
        panic!("{e}");
    }
    let mut resumed = CpuBackend::new(ckpt.config, ckpt.params);
    resumed.set_optimizer_state(&m, &v).unwrap();
    let part2 = train(&mut resumed, &cfg, Some(state), Some(&mut hook)).unwrap();

    let joined: Vec<f32> = part1.train_losses.iter().chain(&part2.train_losses).copied().collect();
    assert_eq!(joined.len(), whole.train_losses.len(), "steps run in the two parts");
    if let Some(step) = (0..joined.len()).find(|&i| joined[i].to_bits() != whole.train_losses[i].to_bits()) {
        let when = if step < n + 3 { "before the checkpoint" } else { "after resuming" };
        panic!(
            "step {step} ({when}; resumed at step {}) is the first that differs: loss {} straight, {} stopped and resumed",
            n + 3,
            whole.train_losses[step],
            joined[step]
        );
    }
    let (sp, rp) = (straight.params().unwrap(), resumed.params().unwrap());
    let ((sm, sv), (rm, rv)) = (straight.optimizer_state().unwrap(), resumed.optimizer_state().unwrap());
    let end: [(&str, &[f32], &[f32]); 3] = [("params", &rp, &sp), ("m", &rm, &sm), ("v", &rv, &sv)];
    if let Err(e) = compare_fields("resumed vs straight run after the last step", &end) {
        panic!("{e}");
    }
    assert_eq!(straight_draws, draws.take(), "the RNG continues where it was");
}

#[test]
fn resuming_on_other_data_or_settings_is_refused() {
    let dir = data_dir();
    let ckpt_path = dir.path().join("ckpt.bin");
    let mut backend = CpuBackend::new(config(), gpt2_init(&config(), 2));
    let cfg = TrainConfig { save: Some(ckpt_path.clone()), stop_at: Some(25), ..train_config(dir.path(), 40) };
    train(&mut backend, &cfg, None, None).unwrap();
    let state = load(&ckpt_path).unwrap().optimizer.unwrap().2;
    // a smaller data set: the saved position (batch 50 of the shard) is not in it
    make_shard(&dir.path().join("small.bin"), 300, 3);
    let small = TrainConfig { train_data: dir.path().join("small.bin").to_str().unwrap().into(), ..cfg.clone() };
    let err = train(&mut backend, &small, Some(state), None).unwrap_err().to_string();
    assert!(err.contains("cannot resume on this --train-data"), "{err}");
    // another seed would give another shuffle order
    let err = train(&mut backend, &TrainConfig { seed: 12, ..cfg.clone() }, Some(state), None).unwrap_err();
    assert!(err.to_string().contains("resume with the same"), "{err}");
}

#[test]
fn the_loop_accumulates_micro_batches_like_one_big_batch() {
    let dir = data_dir();
    // one micro-batch of 4 sequences vs 4 micro-batches of 1 sequence: the same rows, no shuffle
    let big = TrainConfig { batch: 4, seq: 8, total_batch: 32, shuffle: false, ..train_config(dir.path(), 5) };
    let small = TrainConfig { batch: 1, ..big.clone() };
    let mut a = CpuBackend::new(config(), gpt2_init(&config(), 4));
    let mut b = CpuBackend::new(config(), gpt2_init(&config(), 4));
    let la = train(&mut a, &big, None, None).unwrap().train_losses;
    let lb = train(&mut b, &small, None, None).unwrap().train_losses;
    println!("one batch of 4: {la:?}\n4 batches of 1: {lb:?}");
    // same sums in another order: f32 rounding, slightly amplified by 5 AdamW steps
    for (x, y) in la.iter().zip(&lb) {
        approx::assert_abs_diff_eq!(x, y, epsilon = 1e-4);
    }
    let diff = a.params().unwrap().iter().zip(b.params().unwrap()).fold(0.0f32, |m, (x, y)| m.max((x - y).abs()));
    assert!(diff < 1e-4, "parameters differ by {diff}");
}

#[test]
fn zero_validation_batches_is_an_error() {
    let dir = data_dir();
    let mut backend = CpuBackend::new(config(), gpt2_init(&config(), 2));
    let cfg = TrainConfig { val_batches: 0, ..train_config(dir.path(), 2) };
    let err = train(&mut backend, &cfg, None, None).unwrap_err().to_string();
    assert!(err.contains("--val-batches must be at least 1"), "{err}");
}

#[test]
fn gradient_accumulation_matches_one_big_batch() {
    // 4 micro-batches of 1 sequence accumulate the same gradient as 1 batch of 4 sequences
    let cfg = config();
    let mut rng = Rng::new(3);
    let (b, t) = (4, 8);
    let inputs = common::random_tokens(&mut rng, b * t, cfg.vocab_size);
    let targets = common::random_tokens(&mut rng, b * t, cfg.vocab_size);
    let mut big = CpuBackend::new(cfg, gpt2_init(&cfg, 3));
    big.zero_grad().unwrap();
    let big_loss = big.forward_backward(&inputs, &targets, b, t, 1.0).unwrap();
    let mut small = CpuBackend::new(cfg, gpt2_init(&cfg, 3));
    small.zero_grad().unwrap();
    let mut small_loss = 0.0;
    for i in 0..b {
        let r = i * t..(i + 1) * t;
        small_loss += small.forward_backward(&inputs[r.clone()], &targets[r], 1, t, 1.0 / b as f32).unwrap() / b as f32;
    }
    approx::assert_abs_diff_eq!(big_loss, small_loss, epsilon = 1e-5);
    let diff = big.model.grads.iter().zip(&small.model.grads).fold(0.0f32, |m, (a, b)| m.max((a - b).abs()));
    // the same sums in a different order: f32 rounding only
    assert!(diff < 1e-6, "gradients differ by {diff}");
}

#[test]
fn the_memory_estimate_counts_every_buffer() {
    use gpt2::memory::{cpu_training_bytes, cpu_training_bytes_in};
    use gpt2::model::{activation_sizes, gradient_sizes};
    use gpt2::precision::Precision;
    for (cfg, b, t) in [(config(), 3, 7), (ModelConfig::from_name("d12").unwrap(), 4, 64)] {
        let acts: usize = activation_sizes(&cfg, b, t).iter().sum();
        let grad_acts: usize = gradient_sizes(&cfg, b, t).iter().sum();
        // params, grads, m, v (4 floats a parameter) + the activations + the activation gradients
        // (the head's and one block's, reused by every block) + the input and target token ids
        let expected = 16 * cfg.num_parameters() + 4 * acts + 4 * grad_acts + 8 * b * t;
        assert_eq!(cpu_training_bytes(&cfg, b, t), Some(expected));
        assert!(grad_acts < acts, "activation gradients are kept for one block at a time");
        // bf16 on the CPU: the same buffers (bf16 values in f32 slots) and the bf16 weight copy
        let mut model = gpt2::cpu::gpt2::Gpt2::new(cfg, vec![0.0; cfg.num_parameters()]);
        model.set_precision(Precision::Bf16);
        let copy = 4 * model.weights().len();
        assert_eq!(copy, 4 * cfg.num_parameters());
        assert_eq!(cpu_training_bytes_in(&cfg, b, t, Precision::Bf16), Some(expected + copy));
        assert_eq!(cpu_training_bytes_in(&cfg, b, t, Precision::Fp32), Some(expected));
    }
    assert_eq!(cpu_training_bytes(&config(), usize::MAX / 2, 8), None);
}
