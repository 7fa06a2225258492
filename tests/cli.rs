//! The commands as a user runs them: `train`'s flags (a contract other tools rely on), its log,
//! checkpoints and resume, and its errors; `memory`'s default.

use gpt2::data::write_shard;
use std::path::Path;
use std::process::{Command, Output};

fn gpt2(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_gpt2")).args(args).output().expect("the binary runs")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn shards(dir: &Path) -> (String, String) {
    let tokens: Vec<u16> = (0..3000u32).map(|i| ((i * 7919) % 50257) as u16).collect();
    let (train, val) = (dir.join("train.bin"), dir.join("val.bin"));
    write_shard(&train, &tokens).unwrap();
    write_shard(&val, &tokens[..500]).unwrap();
    (train.to_str().unwrap().to_string(), val.to_str().unwrap().to_string())
}

#[test]
fn train_help_lists_every_contract_flag() {
    let out = gpt2(&["train", "--help"]);
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for flag in [
        "--device",
        "--model",
        "--init",
        "--train-data",
        "--val-data",
        "--batch",
        "--seq",
        "--total-batch",
        "--steps",
        "--lr",
        "--warmup",
        "--schedule",
        "--min-lr-frac",
        "--beta1",
        "--beta2",
        "--eps",
        "--weight-decay",
        "--grad-clip",
        "--val-every",
        "--val-batches",
        "--shuffle",
        "--no-shuffle",
        "--seed",
        "--log",
        "--save",
        "--save-every",
        "--resume",
    ] {
        // the flag itself, not a longer one that starts with it (--save vs --save-every)
        let shown = help.contains(&format!("{flag} ")) || help.contains(&format!("{flag}\n"));
        assert!(shown, "train --help does not mention {flag}");
    }
}

#[test]
fn train_logs_json_saves_and_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let (train, val) = shards(dir.path());
    let log = dir.path().join("log.jsonl");
    let ckpt = dir.path().join("ckpt.bin");
    let llmc = dir.path().join("model_llmc.bin");
    let common = ["--device", "cpu", "--train-data", &train, "--val-data", &val, "--batch", "2", "--seq", "8"];
    let mut args = vec!["train", "--model", "L2H2C16", "--steps", "4", "--val-every", "2", "--val-batches", "2"];
    args.extend(common);
    let log_s = log.to_str().unwrap();
    let ckpt_s = ckpt.to_str().unwrap();
    args.extend(["--log", log_s, "--save", ckpt_s, "--export-llmc", llmc.to_str().unwrap()]);
    let out = gpt2(&args);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("tok/s"), "the console shows throughput");

    let lines: Vec<serde_json::Value> =
        std::fs::read_to_string(&log).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    // one numbering everywhere: step 0 is the model before training (its validation), step N the
    // N-th update, with the validation of the model after it every --val-every steps and at the end
    assert_eq!(lines.len(), 5);
    assert!(lines[0]["step"] == 0 && lines[0]["val_loss"].is_number() && lines[0].get("train_loss").is_none());
    for (s, line) in lines.iter().enumerate().skip(1) {
        assert_eq!(line["step"], s);
        for key in ["train_loss", "lr", "ms", "tok_per_s"] {
            assert!(line[key].is_number(), "step {s} lacks {key}: {line}");
        }
        // validation after steps divisible by --val-every (and the last, 4)
        assert_eq!(line.get("val_loss").is_some(), s % 2 == 0, "{line}");
    }
    // the console numbers the same steps: validations on the lines of steps 2 and 4
    let err = stderr(&out);
    for s in [2, 4] {
        assert!(err.lines().any(|l| l.starts_with(&format!("step {s:>5}/4")) && l.contains("| val ")), "{err}");
    }
    assert!(err.lines().any(|l| l.starts_with("step     0/4 | val ")), "{err}");
    assert!(ckpt.exists() && llmc.exists());

    // resume for 2 more steps of a 6-step run: the log continues at step 4
    let mut args = vec!["train", "--resume", ckpt_s, "--steps", "6", "--log", log_s, "--val-every", "0", "--no-save"];
    args.extend(common);
    let out = gpt2(&args);
    assert!(out.status.success(), "{}", stderr(&out));
    let steps: Vec<u64> = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|r| r.get("train_loss").is_some())
        .map(|r| r["step"].as_u64().unwrap())
        .collect();
    assert_eq!(steps, vec![1, 2, 3, 4, 5, 6]);

    // the checkpoint generates text, printed as it comes
    let out = gpt2(&["sample", "--init", ckpt_s, "--prompt", "To be", "--tokens", "5", "--seed", "3"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("To be"));

    // the exported llm.c file starts a new run with --init
    let mut args = vec!["train", "--init", llmc.to_str().unwrap(), "--steps", "1", "--val-every", "0", "--no-save"];
    args.extend(common);
    assert!(gpt2(&args).status.success());
}

#[test]
fn train_explains_bad_input() {
    let dir = tempfile::tempdir().unwrap();
    let (train, _) = shards(dir.path());
    let missing = dir.path().join("missing_*.bin");
    let out = gpt2(&[
        "train",
        "--no-save",
        "--device",
        "cpu",
        "--model",
        "L2H2C16",
        "--train-data",
        missing.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("no file matches"), "{}", stderr(&out));

    let out =
        gpt2(&["train", "--no-save", "--device", "cpu", "--model", "L2H2C16", "--train-data", &train, "--seq", "2000"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("longer than the model's maximum sequence length"), "{}", stderr(&out));

    let out = gpt2(&["train", "--no-save", "--device", "cpu", "--model", "d13", "--train-data", &train]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("unknown model 'd13'"), "{}", stderr(&out));

    let not_a_model = dir.path().join("not_a_model.bin");
    std::fs::write(&not_a_model, b"hello").unwrap();
    let out = gpt2(&[
        "train",
        "--no-save",
        "--device",
        "cpu",
        "--init",
        not_a_model.to_str().unwrap(),
        "--train-data",
        &train,
    ]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("not_a_model.bin: file is 5 bytes"), "{}", stderr(&out));
    assert!(!stderr(&out).contains("panicked"));
}

#[test]
fn ctrl_c_finishes_the_step_and_saves() {
    use std::io::{BufRead, BufReader};
    let dir = tempfile::tempdir().unwrap();
    let (train, _) = shards(dir.path());
    let ckpt = dir.path().join("ckpt.bin");
    let mut child = Command::new(env!("CARGO_BIN_EXE_gpt2"))
        .args(["train", "--device", "cpu", "--model", "L2H2C16", "--train-data", &train, "--batch", "2", "--seq", "8"])
        .args(["--steps", "100000", "--val-every", "0", "--save", ckpt.to_str().unwrap()])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    // wait until training is under way, then press Ctrl-C (SIGINT)
    lines.by_ref().map(|l| l.unwrap()).find(|l| l.starts_with("step")).expect("a step line");
    let killed = Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
    assert!(killed.success());
    let rest: Vec<String> = lines.map(|l| l.unwrap()).collect();
    let status = child.wait().unwrap();
    // saved, but not finished: the exit status says so (130, as for SIGINT), and the last lines say how to go on
    assert_eq!(status.code(), Some(130), "{rest:?}");
    assert!(rest.iter().any(|l| l.starts_with("stopping after step")), "{rest:?}");
    let resume = format!("train --resume {}", ckpt.display());
    assert!(rest.iter().any(|l| l.starts_with("continue it") && l.contains(&resume)), "{rest:?}");
    let state = gpt2::model::checkpoint::load(&ckpt).unwrap().optimizer.unwrap().2;
    assert!(state.step >= 1 && state.step < 100000, "saved at step {}", state.step);
}

#[test]
fn train_and_sample_step_into_the_reference_layers() {
    let dir = tempfile::tempdir().unwrap();
    let (train, _) = shards(dir.path());
    let ckpt = dir.path().join("ckpt.bin");
    let mut losses = Vec::new();
    for kernels in ["reference", "fast"] {
        let log = dir.path().join(format!("{kernels}.jsonl"));
        let out = gpt2(&[
            "train",
            "--device",
            "cpu",
            "--model",
            "L2H2C16",
            "--train-data",
            &train,
            "--batch",
            "2",
            "--seq",
            "8",
            "--steps",
            "3",
            "--val-every",
            "0",
            "--kernels",
            kernels,
            "--save",
            ckpt.to_str().unwrap(),
            "--log",
            log.to_str().unwrap(),
            // the second run replaces the first's checkpoint
            "--overwrite",
        ]);
        assert!(out.status.success(), "{}", stderr(&out));
        assert!(
            stderr(&out).contains(&format!("{kernels} layers")),
            "the first line names the layers: {}",
            stderr(&out)
        );
        let log = std::fs::read_to_string(&log).unwrap();
        let run: Vec<f64> = log
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["train_loss"].as_f64())
            .collect();
        losses.push(run);
    }
    // the fast layers sum in other orders: the same losses to rounding
    for (r, f) in losses[0].iter().zip(&losses[1]) {
        assert!((r - f).abs() < 1e-4, "reference {:?} vs fast {:?}", losses[0], losses[1]);
    }
    let out = gpt2(&["sample", "--init", ckpt.to_str().unwrap(), "--tokens", "4", "--kernels", "reference"]);
    assert!(out.status.success(), "{}", stderr(&out));
}

/// The last line of `gpt2 memory`'s output: its JSON `{"bytes": N}`.
fn memory_bytes(args: &[&str]) -> (String, u64) {
    let out = gpt2(&[&["memory"], args].concat());
    assert!(out.status.success(), "gpt2 memory {args:?}: {}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let json: serde_json::Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
    (text.lines().next().unwrap().to_string(), json["bytes"].as_u64().unwrap())
}

#[test]
fn memory_defaults_to_bf16_as_train_does_on_the_cards_it_lists() {
    let (title, bf16) = memory_bytes(&["--model", "d12", "--batch", "64", "--seq", "1024"]);
    assert!(title.ends_with("bf16"), "{title}");
    let (_, explicit) = memory_bytes(&["--model", "d12", "--batch", "64", "--seq", "1024", "--precision", "bf16"]);
    let (title32, fp32) = memory_bytes(&["--model", "d12", "--batch", "64", "--seq", "1024", "--precision", "fp32"]);
    assert!(title32.ends_with("fp32"), "{title32}");
    assert_eq!(bf16, explicit);
    // the targets: bf16 within 32 GiB, fp32 within an 80 GB card (81,559 MiB)
    assert!(bf16 <= 32 << 30 && fp32 <= 81_559 << 20 && fp32 > bf16, "bf16 {bf16}, fp32 {fp32}");
}

#[test]
fn a_new_run_does_not_write_over_a_checkpoint_unless_asked() {
    let dir = tempfile::tempdir().unwrap();
    let (train, _) = shards(dir.path());
    let ckpt = dir.path().join("ckpt.bin");
    let ckpt_s = ckpt.to_str().unwrap();
    let run = |steps: &str, extra: &[&str]| {
        let mut args = vec!["train", "--device", "cpu", "--train-data", &train, "--batch", "2"];
        args.extend(["--seq", "8", "--steps", steps, "--val-every", "0", "--sample-every", "0", "--save", ckpt_s]);
        if !extra.contains(&"--resume") {
            args.extend(["--model", "L2H2C16"]);
        }
        args.extend(extra);
        gpt2(&args)
    };
    let step_of = || gpt2::model::checkpoint::load(&ckpt).unwrap().optimizer.unwrap().2.step;
    assert!(run("3", &[]).status.success());
    let before = std::fs::read(&ckpt).unwrap();
    // a fresh run refuses, naming the file and the three ways on, and leaves the file as it was
    let out = run("1", &[]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    for needle in [ckpt_s, "already holds a checkpoint", "--resume", "--save", "--overwrite"] {
        assert!(err.contains(needle), "{needle:?} missing from: {err}");
    }
    assert_eq!(std::fs::read(&ckpt).unwrap(), before, "the refused run changed the checkpoint");
    // resuming that very file may write it (3 -> 5 steps)
    let out = run("5", &["--resume", ckpt_s]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(step_of(), 5);
    // --overwrite replaces it with a new 1-step run
    let out = run("1", &["--overwrite"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(step_of(), 1);
}

#[test]
fn steps_0_says_nothing_was_trained_or_saved() {
    let dir = tempfile::tempdir().unwrap();
    let (train, _) = shards(dir.path());
    let ckpt = dir.path().join("ckpt.bin");
    let args = ["train", "--device", "cpu", "--model", "L2H2C16", "--train-data", &train, "--steps", "0"];
    let out = gpt2(&[&args[..], &["--save", ckpt.to_str().unwrap()]].concat());
    assert!(out.status.success(), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("nothing was trained and no checkpoint was written"), "{err}");
    assert!(!err.contains("saved to"), "{err}");
    assert!(!ckpt.exists());
}

#[test]
fn the_recipe_without_its_data_says_how_to_get_it() {
    let out = gpt2(&["train", "--recipe", "gpt2-124m", "--device", "cpu"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    for needle in ["--train-data", "FineWeb", "prepare -i", "huggingface-cli download"] {
        assert!(err.contains(needle), "{needle:?} missing from: {err}");
    }
    assert!(!err.contains("step "), "it started training: {err}");
}

#[test]
fn a_text_file_as_train_data_is_named_with_the_prepare_command() {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in
        [("short.txt", "To be, or not to be".to_string()), ("long.txt", "All the world's a stage. ".repeat(100))]
    {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        let out = gpt2(&["train", "--device", "cpu", "--no-save", "--train-data", path.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
        let err = stderr(&out);
        assert!(err.contains("looks like a text file"), "{err}");
        assert!(err.contains(&format!("prepare --input {}", path.display())), "{err}");
        assert!(!err.contains("magic") && !err.contains("too short"), "{err}");
    }
}

/// Every flag of every command says what it does in `--help` (not only its default or its values).
#[test]
fn every_flag_of_every_command_has_a_description() {
    let commands = ["train", "sample", "bench", "tokenize", "eval", "export", "prepare", "serve", "memory", "plot"];
    // "--name ..." or "-n, --name ..." (not a value's "- name: help" line)
    let flag = |line: &str| {
        let t = line.trim_start().as_bytes();
        t.starts_with(b"--") || (t.len() > 3 && t[0] == b'-' && t[1].is_ascii_alphanumeric() && t[2] == b',')
    };
    for command in commands {
        let out = gpt2(&[command, "--help"]);
        assert!(out.status.success(), "{command} --help");
        let help = String::from_utf8_lossy(&out.stdout).into_owned();
        let lines: Vec<&str> = help.lines().collect();
        for (i, line) in lines.iter().enumerate().filter(|(_, l)| l.starts_with("  ") && flag(l)) {
            // the description is on the flag's line (short help) or the next non-empty line (long help)
            let same_line = line.trim().split_once("  ").map(|(_, rest)| rest.trim());
            let described = match same_line {
                Some(rest) => !rest.starts_with('['),
                None => lines[i + 1..]
                    .iter()
                    .find(|l| !l.trim().is_empty())
                    .is_some_and(|next| !next.trim_start().starts_with('[') && !flag(next)),
            };
            assert!(described, "`{command} --help`: {} has no description:\n{help}", line.trim());
        }
    }
}
