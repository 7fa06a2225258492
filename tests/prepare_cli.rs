//! The `prepare` and `tokenize` commands, run as the binary a user runs: shards round-trip the
//! documents, and bad input gets an error naming the file and line, never a panic.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use gpt2::data::write_shard;
use gpt2::prepare::{default_training_data_in, DEFAULT_VAL_TOKENS};
use gpt2::tokenizer::Tokenizer;

fn gpt2(args: &[&str], stdin: Option<&[u8]>) -> Output {
    use std::io::Write;
    use std::process::Stdio;
    let mut child = Command::new(env!("CARGO_BIN_EXE_gpt2"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut pipe = child.stdin.take().unwrap();
    pipe.write_all(stdin.unwrap_or_default()).unwrap();
    drop(pipe);
    child.wait_with_output().unwrap()
}

/// Runs the binary expecting failure; returns stderr, checked to be an error and not a panic.
fn gpt2_error(args: &[&str], stdin: Option<&[u8]>) -> String {
    let out = gpt2(args, stdin);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "expected failure for {args:?}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(stderr.contains("error:"), "{stderr}");
    stderr
}

/// Reads an llm.c token shard, checking its header and size.
fn read_shard(path: &Path) -> Vec<u16> {
    let data = std::fs::read(path).unwrap();
    let header: Vec<i32> = data[..1024].chunks_exact(4).map(|c| i32::from_le_bytes(c.try_into().unwrap())).collect();
    assert_eq!(&header[..2], &[20240520, 1], "{}", path.display());
    let ntok = header[2] as usize;
    assert_eq!(data.len(), 1024 + 2 * ntok, "{}", path.display());
    data[1024..].chunks_exact(2).map(|c| u16::from_le_bytes([c[0], c[1]])).collect()
}

fn shards(dir: &Path, prefix: &str) -> Vec<PathBuf> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with(prefix))
        .collect();
    paths.sort();
    paths
}

#[test]
fn prepare_shards_hold_each_document_after_an_eot_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a.txt");
    let b = dir.path().join("b.jsonl");
    let c = dir.path().join("c.txt");
    std::fs::write(&a, "First document.\nIt has two lines.\n").unwrap();
    // CRLF line ends and a blank line are fine in JSONL.
    std::fs::write(&b, "{\"text\": \"Second, from JSONL.\"}\r\n\r\n{\"text\": \"Third: 日本語 🦀\", \"id\": 3}\n")
        .unwrap();
    std::fs::write(&c, "Fourth <|endoftext|> is just text here.").unwrap();
    let out = dir.path().join("out");
    let args = ["prepare", "--input", a.to_str().unwrap(), b.to_str().unwrap(), c.to_str().unwrap()];
    let o = gpt2(
        &[&args[..], &["--out", out.to_str().unwrap(), "--val-tokens", "5", "--shard-tokens", "7"]].concat(),
        None,
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stdout).contains("4 documents"));

    let tok = Tokenizer::gpt2();
    let docs = [
        "First document.\nIt has two lines.\n",
        "Second, from JSONL.",
        "Third: 日本語 🦀",
        "Fourth <|endoftext|> is just text here.",
    ];
    let mut expected = Vec::new();
    for doc in docs {
        expected.push(50256u16);
        expected.extend(tok.encode(doc).iter().map(|&id| id as u16));
    }

    let val = shards(&out, "val_");
    assert_eq!(val.len(), 1);
    let mut got = read_shard(&val[0]);
    assert_eq!(got.len(), 5);
    let train = shards(&out, "train_");
    assert_eq!(train.len(), (expected.len() - 5).div_ceil(7));
    for path in &train {
        let tokens = read_shard(path);
        assert!(tokens.len() <= 7);
        got.extend(tokens);
    }
    assert_eq!(got, expected);
    assert!(out.join("tokenizer.bin").exists());
    let names: Vec<String> =
        std::fs::read_dir(&out).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    assert!(names.iter().all(|n| !n.ends_with(".tmp") && n != ".prepare-partial"), "temporary files left: {names:?}");
}

#[test]
fn prepare_errors_name_the_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let out = out.to_str().unwrap();
    let write = |name: &str, bytes: &[u8]| {
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        path.to_str().unwrap().to_string()
    };
    let cases = [
        (write("bad_utf8.txt", b"fine\nbroken \xff here\n"), "bad_utf8.txt:2: invalid UTF-8 at byte offset 12"),
        (
            write("bad_utf8.jsonl", b"{\"text\":\"a\"}\n{\"text\":\"\xff\"}\n"),
            "bad_utf8.jsonl:2: invalid UTF-8 at byte offset 22",
        ),
        (write("blank.jsonl", b"\n  \n"), "blank.jsonl: no documents"),
        (write("not_json.jsonl", b"{\"text\": \"ok\"}\n{oops\n"), "not_json.jsonl:2: not valid JSON (column 2)"),
        (write("no_text.jsonl", b"{\"body\": \"x\"}\n"), "no_text.jsonl:1: the JSON object has no \"text\" field"),
        (write("number.jsonl", b"{\"text\": 5}\n"), "number.jsonl:1: the \"text\" field is not a string"),
        (write("empty.txt", b""), "empty.txt: the file is empty"),
        (dir.path().join("missing.txt").to_str().unwrap().to_string(), "missing.txt: cannot read the file"),
    ];
    for (path, expected) in cases {
        let stderr = gpt2_error(&["prepare", "--input", &path, "--out", out], None);
        assert!(stderr.contains(expected), "expected {expected:?} in {stderr}");
    }
    let small = write("small.txt", b"tiny");
    let stderr = gpt2_error(&["prepare", "--input", &small, "--out", out], None);
    assert!(stderr.contains("smaller --val-tokens"), "{stderr}");
}

#[test]
fn tokenize_prints_ids_and_decode_gives_back_the_bytes() {
    let text = "Hello world! It's 2026.\n日本語 🦀\n";
    let o = gpt2(&["tokenize"], Some(text.as_bytes()));
    assert!(o.status.success());
    let ids: Vec<u32> = String::from_utf8(o.stdout).unwrap().split_whitespace().map(|s| s.parse().unwrap()).collect();
    assert_eq!(ids, Tokenizer::gpt2().encode(text));

    let joined: Vec<String> = ids.iter().map(u32::to_string).collect();
    let o = gpt2(&["tokenize", "--decode", "-"], Some(joined.join(" ").as_bytes()));
    assert!(o.status.success());
    assert_eq!(o.stdout, text.as_bytes());

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("in.txt");
    std::fs::write(&file, text).unwrap();
    let o = gpt2(&["tokenize", file.to_str().unwrap()], None);
    assert_eq!(String::from_utf8(o.stdout).unwrap().trim(), joined.join(" "));
}

#[test]
fn tokenize_errors_name_the_input_and_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("latin1.txt");
    std::fs::write(&bad, b"line one\ncaf\xe9\n").unwrap();
    let stderr = gpt2_error(&["tokenize", bad.to_str().unwrap()], None);
    assert!(stderr.contains("latin1.txt:2: invalid UTF-8 at byte offset 12"), "{stderr}");

    let stderr = gpt2_error(&["tokenize", "--decode"], Some(b"15496 50257 995"));
    assert!(stderr.contains("token id 50257 (number 2 in the input) is out of range"), "{stderr}");

    let stderr = gpt2_error(&["tokenize", "--decode"], Some(b"15496\n995 hello"));
    assert!(stderr.contains("standard input:2: \"hello\" (number 3 in the input) is not a token id"), "{stderr}");

    let stderr = gpt2_error(&["tokenize", "--decode"], Some(b"-1"));
    assert!(stderr.contains("\"-1\""), "{stderr}");
}

#[test]
fn default_training_data_is_prepared_once_and_reused() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("shakespeare");
    let (train_glob, val_glob) = default_training_data_in(&cache).unwrap();
    let train: Vec<PathBuf> = glob::glob(&train_glob).unwrap().map(Result::unwrap).collect();
    let val: Vec<PathBuf> = glob::glob(&val_glob).unwrap().map(Result::unwrap).collect();
    assert_eq!(train.len(), 1);
    assert_eq!(val.len(), 1);
    assert_eq!(read_shard(&val[0]).len(), DEFAULT_VAL_TOKENS);
    // The golden test checks tiktoken's count, 1,565,959 tokens, plus one EOT per play.
    assert_eq!(read_shard(&train[0]).len() + DEFAULT_VAL_TOKENS, 1_565_959 + 42);

    let modified = std::fs::metadata(&train[0]).unwrap().modified().unwrap();
    assert_eq!(default_training_data_in(&cache).unwrap(), (train_glob.clone(), val_glob.clone()));
    assert_eq!(std::fs::metadata(&train[0]).unwrap().modified().unwrap(), modified, "the cache was reused");

    // A damaged cache (a shard cut short) is prepared again.
    std::fs::write(&train[0], b"junk").unwrap();
    default_training_data_in(&cache).unwrap();
    assert_eq!(read_shard(&train[0]).len() + DEFAULT_VAL_TOKENS, 1_565_959 + 42);
}

#[test]
fn write_shard_writes_the_llmc_header_and_little_endian_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.bin");
    write_shard(&path, &[50256, 1, 65535]).unwrap();
    let data = std::fs::read(&path).unwrap();
    assert_eq!(data.len(), 1024 + 6);
    assert_eq!(&data[..12], &[0x88, 0xd8, 0x34, 0x01, 1, 0, 0, 0, 3, 0, 0, 0]);
    assert_eq!(&data[1024..], &[0x50, 0xc4, 1, 0, 0xff, 0xff]);
    assert_eq!(read_shard(&path), [50256, 1, 65535]);
}

#[test]
fn prepare_encodes_a_long_document_in_parallel_chunks_to_the_same_tokens() {
    // All of Shakespeare as one 5 MB document: split into ~1 MiB chunks encoded on all cores.
    let text: String = gpt2::prepare::SHAKESPEARE.iter().map(|(_, t)| *t).collect();
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("all.txt");
    std::fs::write(&input, &text).unwrap();
    let out = dir.path().join("out");
    let o = gpt2(&["prepare", "-i", input.to_str().unwrap(), "-o", out.to_str().unwrap(), "--val-tokens", "0"], None);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let mut expected = vec![50256u16];
    expected.extend(Tokenizer::gpt2().encode(&text).iter().map(|&id| id as u16));
    assert!(shards(&out, "val_").is_empty());
    assert_eq!(read_shard(&out.join("train_000000.bin")), expected);
}

#[test]
fn prepare_again_into_the_same_directory_leaves_only_the_new_shards() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.txt");
    std::fs::write(&input, "Some words to fill a few small shards, and a few more words after them.").unwrap();
    let out = dir.path().join("out");
    let run = |shard_tokens: &str| {
        let args = ["prepare", "-i", input.to_str().unwrap(), "-o", out.to_str().unwrap(), "--val-tokens", "2"];
        let o = gpt2(&[&args[..], &["--shard-tokens", shard_tokens]].concat(), None);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        shards(&out, "train_").len()
    };
    assert!(run("3") > 3);
    std::fs::write(out.join("notes.txt"), "mine").unwrap();
    // What a run killed midway leaves: its staging directory, which the next run clears.
    std::fs::create_dir(out.join(".prepare-partial")).unwrap();
    std::fs::write(out.join(".prepare-partial/train_000000.bin"), "half").unwrap();
    assert_eq!(run("1000"), 1);
    assert!(out.join("notes.txt").exists(), "only shard files are removed");
    assert!(!out.join(".prepare-partial").exists());
}

#[test]
fn tokenize_decode_errors_name_the_line_and_the_word_and_take_only_plain_digits() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("ids.txt");
    std::fs::write(&file, "15496 995\n198 50257\n").unwrap();
    let stderr = gpt2_error(&["tokenize", "--decode", file.to_str().unwrap()], None);
    let expected = "ids.txt:2: token id 50257 (number 4 in the input) is out of range: GPT-2's ids are 0..50256";
    assert!(stderr.contains(expected), "{stderr}");

    // Too large for any integer type the parser might use: still "out of range", with its line.
    let stderr = gpt2_error(&["tokenize", "--decode"], Some(b"15496\n\n995 99999999999999999999"));
    assert!(stderr.contains("standard input:3: token id 99999999999999999999 (number 3 in the input)"), "{stderr}");

    // Rust's `parse` takes "+5"; a token id is ASCII digits and nothing else.
    for word in ["+5", "-0", "5.0", "0x10", "1e3", "５"] {
        let stderr = gpt2_error(&["tokenize", "--decode"], Some(format!("1 2\n{word} 3").as_bytes()));
        let expected = format!("standard input:2: {word:?} (number 3 in the input) is not a token id");
        assert!(stderr.contains(&expected), "expected {expected:?} in {stderr}");
    }

    // The largest id and leading zeros are fine.
    let o = gpt2(&["tokenize", "--decode"], Some(b"007 50256"));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(o.stdout, Tokenizer::gpt2().decode_bytes(&[7, 50256]).unwrap());
}

#[test]
fn prepare_says_which_jsonl_line_is_not_a_json_object_or_has_a_text_that_is_not_a_string() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("docs.jsonl");
    let out = dir.path().join("out");
    let cases = [
        ("[1, 2]", "the line is not a JSON object but an array"),
        ("\"x\"", "the line is not a JSON object but a string"),
        ("3", "the line is not a JSON object but a number"),
        ("null", "the line is not a JSON object but null"),
        ("{\"text\": [\"a\"]}", "the \"text\" field is not a string but an array"),
        ("{\"text\": null}", "the \"text\" field is not a string but null"),
    ];
    for (line, expected) in cases {
        // The bad line is line 3: a good line and a blank line come first.
        std::fs::write(&input, format!("{{\"text\": \"A fine first document.\"}}\n\n{line}\n")).unwrap();
        let stderr = gpt2_error(&["prepare", "-i", input.to_str().unwrap(), "-o", out.to_str().unwrap()], None);
        assert!(stderr.contains(&format!("docs.jsonl:3: {expected}")), "expected {expected:?} for {line}: {stderr}");
        assert!(!stderr.contains("has no \"text\" field"), "{stderr}");
    }
}

/// Every entry of `dir` by name: a file's bytes, or `None` for a directory.
fn snapshot(dir: &Path) -> BTreeMap<String, Option<Vec<u8>>> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let path = e.unwrap().path();
            let contents = if path.is_dir() { None } else { Some(std::fs::read(&path).unwrap()) };
            (path.file_name().unwrap().to_string_lossy().into_owned(), contents)
        })
        .collect()
}

#[test]
fn prepare_that_fails_midway_leaves_the_earlier_shards_as_they_were() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.txt");
    std::fs::write(&input, "Some words to fill a few small shards, and a few more words after them.").unwrap();
    let out = dir.path().join("out");
    let args = ["prepare", "-i", input.to_str().unwrap(), "-o", out.to_str().unwrap(), "--val-tokens", "2"];
    let o = gpt2(&[&args[..], &["--shard-tokens", "3"]].concat(), None);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let before = snapshot(&out);
    assert!(before.len() > 4, "{:?}", before.keys());

    // This text is exactly --val-tokens long (its tokens and one EOT): the run writes its validation shard,
    // then fails because nothing is left for training. That shard must not replace the earlier one.
    let small = dir.path().join("small.txt");
    let text = "A few words.";
    std::fs::write(&small, text).unwrap();
    let val_tokens = (Tokenizer::gpt2().encode(text).len() + 1).to_string();
    let args = ["prepare", "-i", small.to_str().unwrap(), "-o", out.to_str().unwrap(), "--val-tokens", &val_tokens];
    let stderr = gpt2_error(&args, None);
    assert!(stderr.contains("smaller --val-tokens"), "{stderr}");
    assert_eq!(snapshot(&out), before, "the failed run changed the output directory");

    // A bad line after good ones (here found before any shard is written: documents are encoded 64 MiB at a time).
    let bad = dir.path().join("bad.jsonl");
    std::fs::write(&bad, "{\"text\": \"one\"}\n{\"text\": \"two\"}\n[3]\n").unwrap();
    let args = ["prepare", "-i", input.to_str().unwrap(), bad.to_str().unwrap(), "-o", out.to_str().unwrap()];
    let stderr = gpt2_error(&[&args[..], &["--val-tokens", "1", "--shard-tokens", "1"]].concat(), None);
    assert!(stderr.contains("bad.jsonl:3: the line is not a JSON object"), "{stderr}");
    assert_eq!(snapshot(&out), before, "the failed run changed the output directory");
}
