//! File formats: round trips, and for each malformed input an error that names the file and says
//! what is wrong (never a panic).

mod common;
use common::*;
use gpt2::config::ModelConfig;
use gpt2::data::{write_shard, DataLoader, Position, Shard};
use gpt2::files::header_bytes;
use gpt2::model::checkpoint::{load, save_checkpoint, save_llmc, TrainState};
use gpt2::model::init::gpt2_init;
use gpt2::rng::Rng;
use std::path::Path;

fn small_config() -> ModelConfig {
    ModelConfig { max_seq_len: 16, vocab_size: 60, padded_vocab_size: 64, num_layers: 2, num_heads: 2, channels: 8 }
}

/// The error message of a failed result, which must name `path` and contain `what`.
fn assert_error_mentions<T, E: std::fmt::Display>(result: Result<T, E>, path: &Path, what: &str) {
    let Err(e) = result else { panic!("expected an error mentioning '{what}'") };
    let msg = e.to_string();
    println!("{msg}");
    assert!(msg.contains(&path.display().to_string()), "error does not name the file: {msg}");
    assert!(msg.contains(what), "error does not say '{what}': {msg}");
}

#[test]
fn llmc_model_file_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.bin");
    let config = small_config();
    let params = gpt2_init(&config, 3);
    save_llmc(&path, &config, &params).unwrap();
    assert_eq!(std::fs::metadata(&path).unwrap().len() as usize, 1024 + 4 * config.num_parameters());
    let ckpt = load(&path).unwrap();
    assert_eq!(ckpt.config, config);
    assert_eq!(ckpt.params, params);
    assert!(ckpt.optimizer.is_none());
}

#[test]
fn checkpoint_round_trips_with_optimizer_state() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ckpt.bin");
    let config = small_config();
    let n = config.num_parameters();
    let mut rng = Rng::new(9);
    let (p, m, v) = (random_vec(&mut rng, n, 1.0), random_vec(&mut rng, n, 1.0), random_vec(&mut rng, n, 1.0));
    let state = TrainState {
        step: (1 << 33) + 5,
        epoch: 2,
        shard: 1,
        batch: 7,
        rng: u64::MAX - 3,
        b: 4,
        t: 8,
        total_batch: 64,
        seed: 1 << 40,
        shuffle: true,
    };
    save_checkpoint(&path, &config, &p, &m, &v, &state).unwrap();
    let ckpt = load(&path).unwrap();
    let (m2, v2, state2) = ckpt.optimizer.unwrap();
    let fields: [(&str, &[f32], &[f32]); 3] = [("params", &ckpt.params, &p), ("m", &m2, &m), ("v", &v2, &v)];
    if let Err(e) = compare_fields("checkpoint round trip", &fields) {
        panic!("{e}");
    }
    // the training state, field by field
    let named = |s: &TrainState| {
        [
            ("step", s.step),
            ("epoch", s.epoch as u64),
            ("shard", s.shard as u64),
            ("batch", s.batch as u64),
            ("rng", s.rng),
            ("b", s.b as u64),
            ("t", s.t as u64),
            ("total_batch", s.total_batch),
            ("seed", s.seed),
            ("shuffle", s.shuffle as u64),
        ]
    };
    for ((name, got), (_, want)) in named(&state2).into_iter().zip(named(&state)) {
        assert_eq!(got, want, "checkpoint round trip: the training state's `{name}` differs");
    }
    assert_eq!(state2, state, "checkpoint round trip: a TrainState field not compared above differs");
    // no temporary file is left behind
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
}

#[test]
fn bf16_llmc_model_files_load_as_f32() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bf16.bin");
    let config = small_config();
    let params = gpt2_init(&config, 4);
    let c = &config;
    let h = [20240326, 5, 16, 60, 2, 2, 8, 64];
    assert_eq!((c.max_seq_len, c.vocab_size, c.num_layers), (16, 60, 2));
    let mut bytes = header_bytes(&h);
    for p in &params {
        bytes.extend_from_slice(&((p.to_bits() >> 16) as u16).to_le_bytes());
    }
    std::fs::write(&path, bytes).unwrap();
    let ckpt = load(&path).unwrap();
    for (a, b) in ckpt.params.iter().zip(&params) {
        // bf16 keeps 8 bits of mantissa: truncation changes a value by less than 2^-7 of itself
        approx::assert_relative_eq!(a, b, max_relative = 1.0 / 128.0);
    }
}

#[test]
fn malformed_model_files_give_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let config = small_config();
    let params = gpt2_init(&config, 5);
    let good = dir.path().join("good.bin");
    save_llmc(&good, &config, &params).unwrap();
    let bytes = std::fs::read(&good).unwrap();
    let write = |name: &str, data: &[u8]| {
        let p = dir.path().join(name);
        std::fs::write(&p, data).unwrap();
        p
    };

    let mut bad_magic = bytes.clone();
    bad_magic[0] = 7;
    let p = write("magic.bin", &bad_magic);
    assert_error_mentions(load(&p), &p, "bad magic number");

    let mut bad_version = bytes.clone();
    bad_version[4] = 4;
    let p = write("version.bin", &bad_version);
    assert_error_mentions(load(&p), &p, "unsupported llm.c model version 4");

    let p = write("truncated.bin", &bytes[..bytes.len() - 10]);
    assert_error_mentions(load(&p), &p, "truncated");

    let mut long = bytes.clone();
    long.extend_from_slice(&[0; 8]);
    let p = write("long.bin", &long);
    assert_error_mentions(load(&p), &p, "too long");

    let p = write("short.bin", &bytes[..100]);
    assert_error_mentions(load(&p), &p, "too short for the 1024-byte header");

    let mut bad_heads = bytes.clone();
    bad_heads[20..24].copy_from_slice(&3i32.to_le_bytes()); // NH = 3 does not divide C = 8
    let p = write("heads.bin", &bad_heads);
    assert_error_mentions(load(&p), &p, "not divisible");

    let mut negative = bytes.clone();
    negative[12..16].copy_from_slice(&(-5i32).to_le_bytes()); // V = -5
    let p = write("negative.bin", &negative);
    assert_error_mentions(load(&p), &p, "V = -5");

    let p = dir.path().join("missing.bin");
    assert_error_mentions(load(&p), &p, "cannot read");
}

#[test]
fn malformed_token_shards_give_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.bin");
    let tokens: Vec<u16> = (0..100).map(|i| (i % 50) as u16).collect();
    write_shard(&good, &tokens).unwrap();
    let shard = Shard::open(&good, 60).unwrap();
    assert_eq!(shard.num_tokens, 100);
    assert_eq!(shard.token(51), 1);
    let bytes = std::fs::read(&good).unwrap();
    let write = |name: &str, data: &[u8]| {
        let p = dir.path().join(name);
        std::fs::write(&p, data).unwrap();
        p
    };

    let mut bad_magic = bytes.clone();
    bad_magic[0] ^= 1;
    let p = write("magic.bin", &bad_magic);
    assert_error_mentions(Shard::open(&p, 60), &p, "bad magic number");

    let mut bad_version = bytes.clone();
    bad_version[4] = 2;
    let p = write("version.bin", &bad_version);
    assert_error_mentions(Shard::open(&p, 60), &p, "unsupported shard version 2");

    let p = write("truncated.bin", &bytes[..bytes.len() - 1]);
    assert_error_mentions(Shard::open(&p, 60), &p, "truncated");

    let p = write("header.bin", &bytes[..1000]);
    assert_error_mentions(Shard::open(&p, 60), &p, "too short");

    assert_error_mentions(Shard::open(&good, 40), &good, "token 40 at position 40 is out of range");

    // a shard too small for one batch of B*T+1 tokens
    assert_error_mentions(DataLoader::new(good.to_str().unwrap(), 10, 10, 60, false, 0), &good, "fewer than one batch");

    let missing = dir.path().join("nothing_*.bin");
    assert_error_mentions(DataLoader::new(missing.to_str().unwrap(), 2, 4, 60, false, 0), &missing, "no file matches");
}

#[test]
fn loader_wraps_around_and_shuffles_reproducibly() {
    let dir = tempfile::tempdir().unwrap();
    let (b, t) = (2, 3);
    // two shards, 3 and 2 batches of B*T = 6 tokens (+1)
    write_shard(&dir.path().join("s_0.bin"), &(0..19).collect::<Vec<u16>>()).unwrap();
    write_shard(&dir.path().join("s_1.bin"), &(100..113).collect::<Vec<u16>>()).unwrap();
    let pattern = dir.path().join("s_*.bin");
    let pattern = pattern.to_str().unwrap();
    let first_tokens = |shuffle: bool, seed: u64, n: usize| {
        let mut loader = DataLoader::new(pattern, b, t, 200, shuffle, seed).unwrap();
        assert_eq!(loader.batches_per_epoch(), 5);
        let (mut x, mut y) = (vec![0; b * t], vec![0; b * t]);
        (0..n)
            .map(|_| {
                loader.next_batch(&mut x, &mut y);
                assert!(x.iter().zip(&y).all(|(a, b)| b == &(a + 1)), "targets are inputs shifted by one");
                x[0]
            })
            .collect::<Vec<u32>>()
    };
    // in order: shard 0's batches, shard 1's, then around again
    assert_eq!(first_tokens(false, 0, 7), vec![0, 6, 12, 100, 106, 0, 6]);
    // shuffled: every batch once per epoch, the same order for the same seed
    let shuffled = first_tokens(true, 5, 10);
    assert_eq!(shuffled, first_tokens(true, 5, 10));
    let mut epoch: Vec<u32> = shuffled[..5].to_vec();
    epoch.sort();
    assert_eq!(epoch, vec![0, 6, 12, 100, 106]);
    // ...in an order that is not the file order, and differs between epochs and seeds
    assert_ne!(shuffled[..5], [0, 6, 12, 100, 106]);
    assert_ne!(shuffled[..5], shuffled[5..]);
    assert_ne!(shuffled, first_tokens(true, 6, 10));
    println!("shuffled order over two epochs: {shuffled:?}");
}

#[test]
fn a_shard_of_exactly_bt_plus_one_tokens_is_one_batch() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("one.bin");
    write_shard(&path, &(0..13).collect::<Vec<u16>>()).unwrap(); // B*T+1 = 4*3+1
    let mut loader = DataLoader::new(path.to_str().unwrap(), 4, 3, 50, false, 0).unwrap();
    assert_eq!(loader.batches_per_epoch(), 1);
    let (mut x, mut y) = (vec![0; 12], vec![0; 12]);
    for _ in 0..3 {
        loader.next_batch(&mut x, &mut y);
        assert_eq!(x, (0..12).collect::<Vec<u32>>());
        assert_eq!(y, (1..13).collect::<Vec<u32>>());
    }
}

/// The first token of every batch of `epochs` epochs, one Vec per epoch (B = 1, T = 2).
fn epoch_orders(pattern: &str, seed: u64, epochs: usize) -> Vec<Vec<u32>> {
    let mut loader = DataLoader::new(pattern, 1, 2, 1000, true, seed).unwrap();
    let n = loader.batches_per_epoch();
    let (mut x, mut y) = (vec![0; 2], vec![0; 2]);
    (0..epochs)
        .map(|_| {
            (0..n)
                .map(|_| {
                    loader.next_batch(&mut x, &mut y);
                    x[0]
                })
                .collect()
        })
        .collect()
}

#[test]
fn shuffled_orders_change_every_epoch_and_repeat_for_the_same_seed_and_epoch() {
    let dir = tempfile::tempdir().unwrap();
    // 8 shards of one batch each: only the shard order moves (shard k's batch starts with token 10k)
    for k in 0..8u16 {
        write_shard(&dir.path().join(format!("one_{k}.bin")), &[10 * k, 10 * k + 1, 10 * k + 2]).unwrap();
    }
    // one shard of 8 batches: only the batch order moves (batch j starts with token 2j)
    write_shard(&dir.path().join("many.bin"), &(0..17).collect::<Vec<u16>>()).unwrap();
    for (what, pattern) in [("shard order", "one_*.bin"), ("batch order", "many.bin")] {
        let pattern = dir.path().join(pattern);
        let pattern = pattern.to_str().unwrap();
        let orders = epoch_orders(pattern, 21, 4);
        println!("{what} of epochs 0..4: {orders:?}");
        for (e, order) in orders.iter().enumerate() {
            let mut sorted = order.clone();
            sorted.sort();
            assert_eq!(sorted.len(), 8, "{what}: epoch {e} visits every batch once");
            sorted.dedup();
            assert_eq!(sorted.len(), 8, "{what}: epoch {e} visits every batch once: {order:?}");
        }
        for e in 1..orders.len() {
            assert_ne!(
                orders[e],
                orders[e - 1],
                "{what}: epochs {} and {e} are shuffled the same way: is the epoch part of the seed?",
                e - 1
            );
        }
        // the same seed gives the same epochs; another seed other ones
        assert_eq!(orders, epoch_orders(pattern, 21, 4), "{what}: the same seed must give the same order");
        assert_ne!(orders, epoch_orders(pattern, 22, 4), "{what}: another seed should give another order");
        // a loader that jumps straight to epoch 2 (as a resumed run does) sees epoch 2's order
        let mut loader = DataLoader::new(pattern, 1, 2, 1000, true, 21).unwrap();
        loader.resume_at(Position { epoch: 2, shard: 0, batch: 0 }).unwrap();
        let (mut x, mut y) = (vec![0; 2], vec![0; 2]);
        let jumped: Vec<u32> = (0..8)
            .map(|_| {
                loader.next_batch(&mut x, &mut y);
                x[0]
            })
            .collect();
        assert_eq!(jumped, orders[2], "{what}: epoch 2's order depends only on (seed, epoch)");
    }
}
