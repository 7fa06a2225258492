//! Crash-tested saves, with the real binary: a `train --save-every 1` process is killed with SIGKILL
//! at random moments, and each time the checkpoint on disk must load (its checksum verified) and
//! resume to exactly the bytes of an uninterrupted run; the temporary file of a save the kill cut
//! short must be gone after the next save. And a full disk while saving (a file-size limit on the
//! process) must be a clear error that leaves the previous checkpoint as it was.
//!
//! The model is tiny (2 layers, 16 channels, a 64-token vocabulary: a 96 KB checkpoint), so a run of
//! 40 steps with 40 saves takes a fraction of a second after start-up.
//! `cargo test --release --test crash -- --nocapture` prints what each round found; the `#[ignore]`d test runs
//! 200 rounds.

use gpt2::config::ModelConfig;
use gpt2::data::write_shard;
use gpt2::model::checkpoint::{load, save_llmc};
use gpt2::model::init::gpt2_init;
use gpt2::rng::Rng;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const STEPS: usize = 40;

/// The files every run shares: an llm.c model to start from and a token shard.
struct Setup {
    dir: tempfile::TempDir,
    model: PathBuf,
    train: PathBuf,
}

fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let config = ModelConfig {
        max_seq_len: 16,
        vocab_size: 64,
        padded_vocab_size: 64,
        num_layers: 2,
        num_heads: 2,
        channels: 16,
    };
    let model = dir.path().join("init.bin");
    save_llmc(&model, &config, &gpt2_init(&config, 1)).unwrap();
    let mut rng = Rng::new(2);
    let tokens: Vec<u16> = (0..5000).map(|_| rng.below(64) as u16).collect();
    let train = dir.path().join("train.bin");
    write_shard(&train, &tokens).unwrap();
    Setup { dir, model, train }
}

/// `gpt2 train` for `steps` steps with the flags every run here shares, then `extra`.
fn train_command(s: &Setup, steps: usize, extra: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_gpt2"));
    cmd.args(["train", "--device", "cpu", "--train-data"]).arg(&s.train);
    cmd.args(["--batch", "2", "--seq", "16", "--sample-every", "0", "--val-every", "0", "--shuffle", "--seed", "7"]);
    cmd.args(["--warmup", "5", "--steps", &steps.to_string()]).args(extra);
    cmd
}

fn run(mut cmd: Command) -> Output {
    let out = cmd.output().expect("the binary runs");
    assert!(out.status.success(), "{cmd:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    out
}

/// The temporary files of crashed writes of `path` (`.NAME.PID.N.tmp`).
fn temporaries(path: &Path) -> Vec<PathBuf> {
    let prefix = format!(".{}.", path.file_name().unwrap().to_string_lossy());
    let dir = path.parent().unwrap();
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let name = p.file_name().unwrap().to_string_lossy();
            name.starts_with(&prefix) && name.ends_with(".tmp")
        })
        .collect();
    found.sort();
    found
}

/// What the kill rounds found.
#[derive(Debug, Default)]
struct Tally {
    rounds: usize,
    /// Killed before the first checkpoint was written: nothing to load.
    before_first_save: usize,
    /// Killed with a checkpoint on disk, which loaded and resumed bit-exactly.
    resumed: usize,
    /// Of those, rounds where the kill cut a save short (a temporary file was left).
    mid_save: usize,
    /// The run had finished before the kill.
    finished: usize,
    steps_seen: Vec<u64>,
}

/// Waits until `ready` says yes or the child exits; returns whether `ready` said yes.
fn wait_for(child: &mut std::process::Child, ready: impl Fn() -> bool) -> bool {
    let start = Instant::now();
    loop {
        if ready() {
            return true;
        }
        if child.try_wait().unwrap().is_some() || start.elapsed() > Duration::from_secs(120) {
            return false;
        }
        std::thread::sleep(Duration::from_micros(200));
    }
}

/// Runs `rounds` kill rounds. Process start-up time varies a lot on a busy machine, so the kill
/// moment is counted from the first checkpoint's appearance: a uniform delay within the time the
/// run spends training and saving after it. Every third round instead kills the moment the temporary
/// file of a save (the k-th one seen, k at random) is there, to cut a save short on purpose.
fn kill_rounds(rounds: usize, seed: u64) -> Tally {
    let s = setup();
    // the uninterrupted run
    let reference = s.dir.path().join("reference.bin");
    run(train_command(&s, STEPS, &["--init", s.model.to_str().unwrap(), "--save", reference.to_str().unwrap()]));
    let reference_bytes = std::fs::read(&reference).unwrap();
    // the same, saving every step: how long it runs after its first save
    let timing = s.dir.path().join("timing.bin");
    let mut child =
        train_command(&s, STEPS, &["--init", s.model.to_str().unwrap(), "--save", timing.to_str().unwrap()])
            .args(["--save-every", "1"])
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
    assert!(wait_for(&mut child, || timing.exists()), "the timing run saved nothing");
    let first_save = Instant::now();
    assert!(child.wait().unwrap().success());
    let span_us = first_save.elapsed().as_micros() as usize;
    println!("saving every step, the run goes on for {} ms after its first save", span_us / 1000);
    assert_eq!(std::fs::read(&timing).unwrap(), reference_bytes, "saving every step changed the result");

    let mut rng = Rng::new(seed);
    let mut tally = Tally::default();
    for round in 0..rounds {
        let ck = s.dir.path().join(format!("ck{round}.bin"));
        let mut child =
            train_command(&s, STEPS, &["--init", s.model.to_str().unwrap(), "--save", ck.to_str().unwrap()])
                .args(["--save-every", "1"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
        let how = if round % 3 == 2 {
            // the k-th save we see under way (each save's temporary file has a new name), k at random
            let k = 2 + rng.below(STEPS / 2);
            let seen = std::cell::RefCell::new(std::collections::HashSet::new());
            wait_for(&mut child, || {
                let mut seen = seen.borrow_mut();
                seen.extend(temporaries(&ck));
                seen.len() >= k && !temporaries(&ck).is_empty()
            });
            format!("as save {k} was under way")
        } else {
            wait_for(&mut child, || ck.exists());
            // within the first 80% of the span, as the next run may be a little faster
            let delay = Duration::from_micros(rng.below(span_us * 4 / 5 + 1) as u64);
            std::thread::sleep(delay);
            format!("{delay:?} after the first save")
        };
        let finished = child.try_wait().unwrap().is_some();
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        let left = temporaries(&ck);
        tally.rounds += 1;
        if finished {
            println!("round {round:>3}: the run had finished before the kill");
            tally.finished += 1;
        }
        if !ck.exists() {
            println!("round {round:>3}: killed {how}, before the first save");
            tally.before_first_save += 1;
            continue;
        }
        // the checkpoint loads (checksum verified) and is a step of the run
        let state = load(&ck).unwrap_or_else(|e| panic!("round {round}: killed {how}: {e}")).optimizer.unwrap().2;
        assert!(state.step as usize <= STEPS);
        tally.steps_seen.push(state.step);
        if !left.is_empty() {
            tally.mid_save += 1;
        }
        // resume it to the end: the final checkpoint is byte for byte the uninterrupted one
        run(train_command(&s, STEPS, &["--resume", ck.to_str().unwrap()]));
        assert_eq!(
            std::fs::read(&ck).unwrap(),
            reference_bytes,
            "round {round}: killed {how} at step {}, resumed to a different model",
            state.step
        );
        // and the save after the crash removed what the crashed save left
        let still = temporaries(&ck);
        assert!(still.is_empty(), "round {round}: temporary files left after the next save: {still:?}");
        println!(
            "round {round:>3}: killed {how}: step {:>2} on disk, {} temporary file(s) left by the kill \
             and gone after the next save; resumed bit-exactly",
            state.step,
            left.len()
        );
        tally.resumed += 1;
    }
    println!("{tally:?}");
    tally
}

#[test]
fn sigkill_at_random_moments_leaves_a_checkpoint_that_resumes_bit_exactly() {
    let tally = kill_rounds(24, 1);
    // the kills must have landed mid-run, with a checkpoint to check, and some of them mid-save
    assert!(tally.resumed >= 16, "too few rounds killed mid-run with a checkpoint: {tally:?}");
    assert!(tally.mid_save >= 4, "too few kills cut a save short: {tally:?}");
}

#[test]
#[ignore = "200 kill rounds: 281 s measured on the busy 2-core development machine"]
fn sigkill_200_rounds() {
    let tally = kill_rounds(200, 2);
    assert!(tally.resumed >= 100, "{tally:?}");
    assert!(tally.mid_save > 0, "no kill landed mid-save: {tally:?}");
}

#[test]
fn a_full_disk_while_saving_is_a_clear_error_and_keeps_the_previous_checkpoint() {
    let s = setup();
    let ck = s.dir.path().join("ck.bin");
    run(train_command(&s, 3, &["--init", s.model.to_str().unwrap(), "--save", ck.to_str().unwrap()]));
    let before = std::fs::read(&ck).unwrap();
    assert!(before.len() > 60_000);
    // A file-size limit of 50 blocks (25 or 50 KB: POSIX shells count 512-byte blocks, bash 1024) makes
    // the checkpoint's write fail with EFBIG, as a full disk fails with ENOSPC. SIGXFSZ, which would
    // kill the process instead, is ignored, and stays ignored across exec.
    let mut cmd = Command::new("sh");
    cmd.args(["-c", "trap '' XFSZ; ulimit -f 50 && exec \"$0\" \"$@\""]);
    cmd.arg(env!("CARGO_BIN_EXE_gpt2"));
    let resume = train_command(&s, 6, &["--resume", ck.to_str().unwrap(), "--save-every", "1"]);
    cmd.args(resume.get_args());
    let out = cmd.output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    println!("{err}");
    assert_eq!(out.status.code(), Some(1), "expected an error exit, not a crash: {:?}\n{err}", out.status);
    assert!(err.contains(&ck.display().to_string()) && err.contains("cannot write"), "unclear error: {err}");
    assert!(err.contains("File too large"), "the cause is not named: {err}");
    // the previous checkpoint is untouched and loads; no temporary file is left
    assert_eq!(std::fs::read(&ck).unwrap(), before, "the previous checkpoint changed");
    assert_eq!(load(&ck).unwrap().optimizer.unwrap().2.step, 3);
    assert!(temporaries(&ck).is_empty(), "{:?}", temporaries(&ck));
}
