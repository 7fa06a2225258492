//! One `prepare` at a time per directory: a second run into a directory another run is writing is
//! refused with a clear message, and what a killed run left (its lock is released by the kernel,
//! its staging directory stays) is noticed and cleared by the next run.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn prepare(input: &Path, out: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_gpt2"));
    cmd.arg("prepare").arg("--input").arg(input).arg("--out").arg(out).args(["--val-tokens", "100"]);
    cmd
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn a_second_prepare_into_a_locked_directory_is_refused_and_runs_once_it_is_free() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("a.txt");
    std::fs::write(&input, "To be, or not to be, that is the question.\n".repeat(50)).unwrap();
    let out = dir.path().join("shards");
    // this test process plays the first run: it holds the lock, as a run of `prepare` does
    let lock = gpt2::prepare::lock_dir(&out, false).unwrap();
    let refused = prepare(&input, &out).output().unwrap();
    let err = stderr(&refused);
    println!("{err}");
    assert!(!refused.status.success());
    assert!(err.contains(&out.display().to_string()) && err.contains("another `prepare`"), "unclear: {err}");
    assert!(!out.join("train_000000.bin").exists(), "the refused run wrote shards");
    // the library refuses the same way, and waits when asked to
    let second = gpt2::prepare::lock_dir(&out, false).err().expect("a second lock is refused").to_string();
    assert!(second.contains("another `prepare`"), "{second}");
    drop(lock);
    let ran = prepare(&input, &out).output().unwrap();
    assert!(ran.status.success(), "{}", stderr(&ran));
    assert!(out.join("train_000000.bin").exists());
}

#[test]
fn a_killed_prepare_leaves_no_lock_and_its_leftovers_are_cleared_by_the_next_run() {
    let dir = tempfile::tempdir().unwrap();
    // about 20 MB of text: long enough to kill the run while it writes
    let mut text = String::new();
    for entry in std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/data/shakespeare")).unwrap() {
        text.push_str(&std::fs::read_to_string(entry.unwrap().path()).unwrap());
    }
    let input = dir.path().join("big.txt");
    std::fs::write(&input, text.repeat(4)).unwrap();
    let out = dir.path().join("shards");
    let staging = out.join(".prepare-partial");
    let mut child = prepare(&input, &out).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    // wait until it has locked the directory and made its staging directory, then kill -9 it
    let start = Instant::now();
    while !staging.join(".owner").exists() {
        assert!(child.try_wait().unwrap().is_none(), "the run ended before it could be killed");
        assert!(start.elapsed() < Duration::from_secs(60), "the run never started writing");
        std::thread::sleep(Duration::from_millis(1));
    }
    // while it runs, a second run is refused, naming the first one's pid
    let refused = prepare(&input, &out).output().unwrap();
    let err = stderr(&refused);
    println!("{err}");
    let running = child.try_wait().unwrap().is_none();
    if running {
        assert!(!refused.status.success(), "a second run went ahead while the first was writing");
        assert!(err.contains(&format!("pid {}", child.id())), "the first run's pid is not named: {err}");
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(running, "the first run finished before the test could kill it: make the input larger");
    assert!(staging.exists(), "the killed run should have left its staging directory");
    // the kernel dropped the killed run's lock: the next run goes ahead and clears what it left
    let small = dir.path().join("small.txt");
    std::fs::write(&small, "Now is the winter of our discontent.\n".repeat(50)).unwrap();
    let next = prepare(&small, &out).output().unwrap();
    let err = stderr(&next);
    println!("{err}");
    assert!(next.status.success(), "{err}");
    assert!(err.contains("interrupted") && err.contains(".prepare-partial"), "the leftovers are not mentioned: {err}");
    assert!(!staging.exists());
    assert!(out.join("train_000000.bin").exists());
}
