//! Checksummed checkpoints: a checkpoint changed after it was written is refused with a message that
//! names it ("corrupted: checksum mismatch"), `GPT2_IGNORE_CHECKSUM=1` loads it anyway, and version 1
//! checkpoints (from before the checksum) still load.

use gpt2::config::ModelConfig;
use gpt2::data::write_shard;
use gpt2::files::header_bytes;
use gpt2::model::checkpoint::{load, load_with, save_checkpoint, save_llmc, TrainState, CHECKSUM_INDEX};
use gpt2::model::init::gpt2_init;
use gpt2::rng::Rng;
use std::path::Path;
use std::process::Command;

fn config() -> ModelConfig {
    ModelConfig { max_seq_len: 16, vocab_size: 64, padded_vocab_size: 64, num_layers: 1, num_heads: 2, channels: 16 }
}

fn state() -> TrainState {
    TrainState { step: 3, epoch: 0, shard: 0, batch: 3, rng: 42, b: 2, t: 16, total_batch: 32, seed: 7, shuffle: false }
}

/// Writes a checkpoint and returns its parameters.
fn write_checkpoint(path: &Path) -> Vec<f32> {
    let n = config().num_parameters();
    let params = gpt2_init(&config(), 1);
    save_checkpoint(path, &config(), &params, &vec![0.5; n], &vec![0.25; n], &state()).unwrap();
    params
}

/// Overwrites 7 bytes in the middle of the weights, as the issue did by hand.
fn corrupt(path: &Path) {
    let mut bytes = std::fs::read(path).unwrap();
    let middle = 1024 + 4 * config().num_parameters() / 2;
    bytes[middle..middle + 7].copy_from_slice(b"garbage");
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn seven_bytes_overwritten_in_the_weights_are_caught_on_load() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ck.bin");
    let params = write_checkpoint(&path);
    assert_eq!(load(&path).unwrap().params, params);
    corrupt(&path);
    let err = load(&path).err().expect("a corrupted checkpoint must not load").to_string();
    println!("{err}");
    assert!(err.starts_with(&path.display().to_string()), "{err}");
    assert!(err.contains("corrupted: checksum mismatch") && err.contains("GPT2_IGNORE_CHECKSUM=1"), "{err}");
    // for forensics: loads anyway, with the damaged weights as they are
    let forced = load_with(&path, true).unwrap();
    assert_ne!(forced.params, params);
    assert_eq!(forced.optimizer.unwrap().2, state());
}

#[test]
fn a_version_1_checkpoint_without_checksum_still_loads() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v2.bin");
    let params = write_checkpoint(&path);
    // version 1 is version 2 with 1 in the version field and 0 where the checksum is
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[4..8].copy_from_slice(&1i32.to_le_bytes());
    bytes[4 * CHECKSUM_INDEX..4 * CHECKSUM_INDEX + 4].fill(0);
    let old = dir.path().join("v1.bin");
    std::fs::write(&old, &bytes).unwrap();
    let ck = load(&old).unwrap();
    assert_eq!(ck.params, params);
    assert_eq!(ck.optimizer.unwrap().2, state());
    // but a version 2 file whose version number was damaged to 1 is not taken for an old one
    bytes[4 * CHECKSUM_INDEX..4 * CHECKSUM_INDEX + 4].copy_from_slice(&std::fs::read(&path).unwrap()[88..92]);
    std::fs::write(&old, &bytes).unwrap();
    let err = load(&old).err().expect("refused").to_string();
    assert!(err.contains("corrupted") && err.contains("version"), "{err}");
}

#[test]
fn llmc_model_files_have_no_checksum_and_load_as_before() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.bin");
    let params = gpt2_init(&config(), 2);
    save_llmc(&path, &config(), &params).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    assert_eq!(&bytes[..1024], &header_bytes(&[20240326, 3, 16, 64, 1, 2, 16, 64])[..]);
    assert_eq!(load(&path).unwrap().params, params);
}

#[test]
fn train_refuses_to_resume_a_corrupted_checkpoint_unless_told_to_ignore_the_checksum() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ck.bin");
    write_checkpoint(&path);
    corrupt(&path);
    let mut rng = Rng::new(1);
    let tokens: Vec<u16> = (0..2000).map(|_| rng.below(64) as u16).collect();
    let data = dir.path().join("train.bin");
    write_shard(&data, &tokens).unwrap();
    let resume = |ignore: bool| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_gpt2"));
        cmd.args(["train", "--device", "cpu", "--resume"]).arg(&path).arg("--train-data").arg(&data);
        cmd.args(["--steps", "4", "--val-every", "0", "--sample-every", "0"]);
        if ignore {
            cmd.env("GPT2_IGNORE_CHECKSUM", "1");
        }
        cmd.output().unwrap()
    };
    let refused = resume(false);
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success());
    assert!(err.contains(&path.display().to_string()) && err.contains("corrupted: checksum mismatch"), "{err}");
    let forced = resume(true);
    let err = String::from_utf8_lossy(&forced.stderr);
    assert!(forced.status.success(), "{err}");
    assert!(err.contains("loading it anyway"), "no warning: {err}");
    // the run saved a fresh checkpoint, with a checksum that matches again
    assert_eq!(load(&path).unwrap().optimizer.unwrap().2.step, 4);
}
