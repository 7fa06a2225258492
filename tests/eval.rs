//! `eval` and HellaSwag (`src/hellaswag.rs`, `src/commands/eval.rs`): the readers of both file formats,
//! the scores against llm.c's scoring as `reference/hellaswag_reference.py` computes it with
//! transformers (tests/fixtures/hellaswag/expected.json), validation loss as `train` computes it, and
//! HellaSwag during training.

use gpt2::cpu::gpt2::Gpt2;
use gpt2::data::write_shard;
use gpt2::hellaswag::{self, Example};
use gpt2::model::load_model;
use serde_json::Value;
use std::path::Path;
use std::process::{Command, Output};

const JSONL: &str = "tests/fixtures/hellaswag/hellaswag_small.jsonl";
const BIN: &str = "tests/fixtures/hellaswag/hellaswag_small.bin";
const MODEL: &str = "tests/fixtures/hf/gpt2vocab_bf16";

fn gpt2(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_gpt2")).args(args).output().expect("the binary runs")
}

fn last_json(out: &Output) -> Value {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line =
        stdout.lines().last().unwrap_or_else(|| panic!("no output; stderr: {}", String::from_utf8_lossy(&out.stderr)));
    serde_json::from_str(line).unwrap_or_else(|e| panic!("last line {line:?} is not JSON: {e}"))
}

fn expected() -> Value {
    serde_json::from_str(&std::fs::read_to_string("tests/fixtures/hellaswag/expected.json").unwrap()).unwrap()
}

#[test]
fn jsonl_and_llmc_bin_hold_the_same_examples() {
    let a = hellaswag::read(Path::new(JSONL)).unwrap();
    let b = hellaswag::read(Path::new(BIN)).unwrap();
    assert_eq!(a.len(), expected()["n"].as_u64().unwrap() as usize);
    assert_eq!(a, b, "our tokenization of the jsonl equals the tokens llm.c's writer stored (tiktoken's)");
    // and our writer writes llm.c's bytes
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("out.bin");
    hellaswag::write_bin(&path, &a).unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), std::fs::read(BIN).unwrap());
}

/// Scores the fixture with our CPU model, `rows` rows a forward pass.
fn score(examples: &[Example], rows: usize) -> (hellaswag::Accuracy, Vec<hellaswag::ExampleScore>) {
    let ckpt = load_model(Path::new(MODEL)).unwrap();
    let mut model = Gpt2::new(ckpt.config, ckpt.params);
    hellaswag::score(
        examples,
        rows,
        |inputs, targets, b, t| {
            model.forward(inputs, Some(targets), b, t);
            Ok(model.losses().to_vec())
        },
        |_, _| {},
    )
    .unwrap()
}

#[test]
fn hellaswag_scores_match_llmc_scoring_in_transformers() {
    let want = expected();
    let examples = hellaswag::read(Path::new(JSONL)).unwrap();
    // one example a forward pass (as hellaswag.py) and several packed into one padded batch
    for rows in [4, 16] {
        let (acc, scores) = score(&examples, rows);
        let mut max_diff = 0.0f64;
        for (ours, theirs) in scores.iter().zip(want["examples"].as_array().unwrap()) {
            for k in 0..4 {
                max_diff = max_diff.max((ours.sum_loss[k] as f64 - theirs["sum_loss"][k].as_f64().unwrap()).abs());
                max_diff = max_diff.max((ours.mean_loss[k] as f64 - theirs["mean_loss"][k].as_f64().unwrap()).abs());
            }
            assert_eq!(ours.pred as u64, theirs["pred"].as_u64().unwrap());
            assert_eq!(ours.pred_norm as u64, theirs["pred_norm"].as_u64().unwrap());
        }
        println!(
            "rows {rows}: acc {:.4} (python {}), acc_norm {:.4} (python {}), max abs ending-loss diff {max_diff:.2e}",
            acc.acc(),
            want["acc"],
            acc.acc_norm(),
            want["acc_norm"]
        );
        // summed losses of up to ~20 tokens: 1e-4 as for the per-position losses in tests/hf.rs
        assert!(max_diff < 1e-4, "max diff {max_diff}");
        assert!((acc.acc() - want["acc"].as_f64().unwrap()).abs() < 1e-12);
        assert!((acc.acc_norm() - want["acc_norm"].as_f64().unwrap()).abs() < 1e-12);
    }
}

#[test]
fn eval_hellaswag_cli_prints_the_scores_as_json_for_both_formats() {
    let want = expected();
    for file in [JSONL, BIN] {
        let out = gpt2(&["eval", "--init", MODEL, "--hellaswag", file, "--device", "cpu"]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        assert!(String::from_utf8_lossy(&out.stderr).contains("hellaswag 9/9"), "progress is shown");
        let json = last_json(&out);
        assert_eq!(json["examples"], want["n"]);
        assert!((json["hellaswag_acc"].as_f64().unwrap() - want["acc"].as_f64().unwrap()).abs() < 1e-12);
        assert!((json["hellaswag_acc_norm"].as_f64().unwrap() - want["acc_norm"].as_f64().unwrap()).abs() < 1e-12);
    }
}

#[test]
fn bad_hellaswag_files_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let bin = std::fs::read(BIN).unwrap();
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("truncated.bin", bin[..bin.len() - 10].to_vec(), "the file ends before that"),
        (
            "delimiter.bin",
            {
                let mut b = bin.clone();
                b[1024] = 0;
                b
            },
            "expected the delimiter 65535",
        ),
        (
            "index.bin",
            {
                let mut b = bin.clone();
                b[1028] = 7;
                b
            },
            "holds index 7, expected 0",
        ),
        (
            "extra.bin",
            {
                let mut b = bin.clone();
                b.extend([0, 0]);
                b
            },
            "bytes after the 9 examples",
        ),
        ("label.jsonl", br#"{"ctx": "a", "endings": ["b", "c", "d", "e"], "label": 4}"#.to_vec(), "line 1: \"label\""),
        ("endings.jsonl", br#"{"ctx": "a", "endings": ["b"], "label": 0}"#.to_vec(), "has 1 entries, expected 4"),
    ];
    for (name, bytes, message) in cases {
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        let err = hellaswag::read(&path).err().unwrap_or_else(|| panic!("{name} should fail")).to_string();
        println!("{err}");
        assert!(err.contains(name) && err.contains(message), "{name}: {err}");
    }
    // a row longer than the model's context (64 positions): an error naming the example, before any work
    let long = format!(r#"{{"ctx": "{}", "endings": ["a", "b", "c", "d"], "label": 0}}"#, "word ".repeat(80));
    let path = dir.path().join("long.jsonl");
    std::fs::write(&path, format!("{long}\n")).unwrap();
    let out = gpt2(&["eval", "--init", MODEL, "--hellaswag", path.to_str().unwrap(), "--device", "cpu"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("HellaSwag example 0 has a row of 82 tokens"), "{err}");
}

#[test]
fn eval_val_loss_is_trains_validation_loss() {
    let dir = tempfile::tempdir().unwrap();
    let tokens: Vec<u16> = (0..3000u32).map(|i| ((i * 7919) % 50257) as u16).collect();
    let val = dir.path().join("val.bin");
    write_shard(&val, &tokens).unwrap();
    let out = gpt2(&[
        "eval",
        "--init",
        MODEL,
        "--val-data",
        val.to_str().unwrap(),
        "--batch",
        "4",
        "--seq",
        "32",
        "--val-batches",
        "5",
        "--device",
        "cpu",
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let json = last_json(&out);
    assert_eq!(json["tokens"], 5 * 4 * 32);
    // the same batches through the same model, by hand: batch i is tokens [i*B*T, (i+1)*B*T] shifted by one
    let ckpt = load_model(Path::new(MODEL)).unwrap();
    let mut model = Gpt2::new(ckpt.config, ckpt.params);
    let mut sum = 0.0f32;
    for i in 0..5 {
        let chunk: Vec<u32> = tokens[i * 128..i * 128 + 129].iter().map(|&t| t as u32).collect();
        sum += model.forward(&chunk[..128], Some(&chunk[1..]), 4, 32).unwrap();
    }
    let want = sum / 5.0;
    println!("eval val_loss {} vs by hand {want}", json["val_loss"]);
    assert!((json["val_loss"].as_f64().unwrap() - want as f64).abs() < 1e-6);
}

#[test]
fn train_scores_hellaswag_every_n_steps_in_the_console_and_log() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log.jsonl");
    let out = gpt2(&[
        "train",
        "--init",
        MODEL,
        "--steps",
        "3",
        "--batch",
        "4",
        "--seq",
        "64",
        "--hellaswag",
        JSONL,
        "--eval-every",
        "2",
        "--log",
        log.to_str().unwrap(),
        "--no-save",
        "--device",
        "cpu",
        "--sample-every",
        "0",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("hellaswag"), "{stderr}");
    // step 0 is the model before training; then one record a step, numbered from 1
    let records: Vec<Value> =
        std::fs::read_to_string(&log).unwrap().lines().map(|l| serde_json::from_str::<Value>(l).unwrap()).collect();
    let steps: Vec<u64> = records.iter().map(|r| r["step"].as_u64().unwrap()).collect();
    assert_eq!(steps, [0, 1, 2, 3], "{records:?}");
    assert!(records[0].get("train_loss").is_none() && records[1..].iter().all(|r| r.get("train_loss").is_some()));
    // after steps 0 and 2 (--eval-every 2), as validation is
    for r in &records {
        assert_eq!(r.get("hellaswag_acc_norm").is_some(), r["step"].as_u64().unwrap() % 2 == 0, "{r}");
    }
    // at step 0 the model is the fixture's: the scores are the Python ones
    let want = expected();
    assert!((records[0]["hellaswag_acc_norm"].as_f64().unwrap() - want["acc_norm"].as_f64().unwrap()).abs() < 1e-12);
    assert!((records[0]["hellaswag_acc"].as_f64().unwrap() - want["acc"].as_f64().unwrap()).abs() < 1e-12);
}

#[test]
fn eval_without_data_flags_uses_trains_default_validation_shard() {
    let out = gpt2(&["eval", "--init", MODEL, "--device", "cpu", "--batch", "2", "--seq", "16", "--val-batches", "3"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("the shipped text's val shard"), "{stderr}");
    let json = last_json(&out);
    assert_eq!(json["tokens"], 3 * 2 * 16, "{json}");
    assert!(json["val_loss"].as_f64().is_some_and(f64::is_finite), "{json}");
}
