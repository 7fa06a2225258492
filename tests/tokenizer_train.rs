//! Training a byte-level BPE tokenizer (`src/tokenizer/train.rs`, `train_fast.rs`,
//! `gpt2 tokenizer train`): a small example worked out by hand, the lesson and fast trainers
//! against each other, the files read back by our `Tokenizer`, and every flag of the command.
//!
//! Also the judge of the exercise `exercises/bpe_merge.rs`:
//! `cargo test --release --features exercise-bpe_merge --test commands tokenizer_train:: -- --nocapture`.

#[path = "common/parquet.rs"]
mod parquet_writer;

use std::path::Path;
use std::process::{Command, Output};

use gpt2::prepare::SHAKESPEARE;
use gpt2::tokenizer::train::{
    add_pairs, count_document, count_words, merge_and_update, sorted_words, train_bpe, BpeVocab, TrainError,
};
use gpt2::tokenizer::train_fast::{count_words_parallel, train_bpe_fast};
use gpt2::tokenizer::{save, FxHashMap, Tokenizer};

/// The merges of a vocabulary as (left bytes, right bytes) strings, for readable assertions.
fn merges_as_text(vocab: &BpeVocab) -> Vec<(String, String)> {
    let text = |id: u32| String::from_utf8_lossy(vocab.token_bytes(id)).into_owned();
    vocab.merges.iter().map(|&(l, r)| (text(l), text(r))).collect()
}

/// `n` characters of the shipped plays, laid end to end, from character `skip` on.
fn shakespeare(skip: usize, n: usize) -> String {
    SHAKESPEARE.iter().flat_map(|(_, text)| text.chars()).skip(skip).take(n).collect()
}

fn specials(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

/// A small corpus worked out by hand. GPT-2's pre-tokenizer cuts "aab aab ab ba" into the words
/// "aab", " aab", " ab", " ba" (once each). Each word starts as its bytes:
///
/// ```text
/// pairs:  (a,a) 2   (a,b) 3   (" ",a) 2   (" ",b) 1   (b,a) 1
/// 1. (a,b) 3 times                                      -> "ab"    words: a|ab, " "|a|ab, " "|ab, " "|b|a
///    pairs: (a,ab) 2  (" ",a) 1  (" ",ab) 1  (" ",b) 1  (b,a) 1
/// 2. (a,ab) twice                                       -> "aab"   words: aab, " "|aab, " "|ab, " "|b|a
///    pairs: (" ",aab) 1  (" ",ab) 1  (" ",b) 1  (b,a) 1: a four-way tie at 1.
/// 3. the tie goes to the greater left token: "b" > " "  -> "ba"    words: ..., " "|ba
///    pairs: (" ",aab) 1  (" ",ab) 1  (" ",ba) 1: a tie with equal left tokens.
/// 4. the greater right token: "ba" > "ab" > "aab"       -> " ba"
/// 5.                                                    -> " ab"
/// 6.                                                    -> " aab"
/// Then every word is one token: no pair is left, training stops at 256 + 1 + 6 tokens.
/// ```
#[test]
fn hand_worked_example_merges_in_order_with_ties_to_the_greater_pair() {
    let words = count_words(["aab aab ab ba"], &[]);
    let expected_words: Vec<(Vec<u8>, u64)> =
        vec![(b" aab".to_vec(), 1), (b" ab".to_vec(), 1), (b" ba".to_vec(), 1), (b"aab".to_vec(), 1)];
    assert_eq!(words, expected_words);

    let s = specials(&["<|endoftext|>"]);
    let by_hand = [("a", "b"), ("a", "ab"), ("b", "a"), (" ", "ba"), (" ", "ab"), (" ", "aab")];
    let by_hand: Vec<(String, String)> = by_hand.iter().map(|(l, r)| (l.to_string(), r.to_string())).collect();
    for (name, vocab) in
        [("lesson", train_bpe(&words, 300, &s).unwrap()), ("fast", train_bpe_fast(&words, 300, &s, false).unwrap())]
    {
        assert_eq!(merges_as_text(&vocab), by_hand, "{name} trainer");
        // 256 bytes, then the special token, then one token per merge; it stopped when no pair was left.
        assert_eq!(vocab.vocab_size(), 256 + 1 + 6, "{name}");
        assert_eq!(vocab.token_bytes(256), b"<|endoftext|>");
        assert_eq!(vocab.token_bytes(257), b"ab");
        assert_eq!(vocab.token_bytes(262), b" aab");
    }
    // Asking for fewer tokens stops early, after the same first merges.
    let vocab = train_bpe(&words, 256 + 1 + 3, &s).unwrap();
    assert_eq!(merges_as_text(&vocab), by_hand[..3]);
}

/// The exercise's judge: `merge_and_update` must give the words and pair counts of merging then
/// recounting everything from scratch.
#[test]
fn merge_and_update_equals_recounting_from_scratch() {
    // "a a a" holds (a, a) twice but merges once on the left; "a b a b" merges twice.
    let mut words: Vec<Vec<u32>> = vec![vec![97, 97, 97], vec![97, 98, 97, 98], vec![98, 98], vec![99]];
    let counts = [3u64, 2, 5, 7];
    let mut pair_counts = FxHashMap::default();
    for (w, &n) in words.iter().zip(&counts) {
        add_pairs(w, n as i64, &mut pair_counts);
    }
    for (pair, new_id) in [((97, 98), 256), ((97, 97), 257), ((256, 256), 258), ((98, 98), 259)] {
        merge_and_update(&mut words, &counts, &mut pair_counts, pair, new_id);
        let mut recount = FxHashMap::default();
        for (w, &n) in words.iter().zip(&counts) {
            add_pairs(w, n as i64, &mut recount);
        }
        let nonzero = |m: &FxHashMap<(u32, u32), i64>| {
            let mut v: Vec<_> = m.iter().filter(|(_, &n)| n != 0).map(|(&k, &n)| (k, n)).collect();
            v.sort();
            v
        };
        assert_eq!(nonzero(&pair_counts), nonzero(&recount), "pair counts after merging {pair:?}");
        assert!(pair_counts.values().all(|&n| n > 0), "pairs with count 0 must be removed");
    }
    assert_eq!(words, [vec![257, 97], vec![258], vec![259], vec![99]]);
}

/// Two merges that make the same bytes ("ab"+"c" and "a"+"bc") share one token, as in Hugging Face's
/// trainer (encoder.json can hold each token once).
#[test]
fn a_merge_that_makes_an_existing_token_reuses_its_id() {
    let mut vocab = BpeVocab::base(&[]);
    let (a, b, c) = (b'a' as u32, b'b' as u32, b'c' as u32);
    let ab = vocab.push_merge(a, b);
    let abc = vocab.push_merge(ab, c);
    let bc = vocab.push_merge(b, c);
    assert_eq!((ab, abc, bc), (256, 257, 258));
    assert_eq!(vocab.push_merge(a, bc), abc);
    assert_eq!((vocab.merges.len(), vocab.vocab_size(), vocab.repeated_merges()), (4, 259, 1));
    // Both merges are in vocab.bpe, and our loader maps both pairs to the one token.
    let mut with_eot = BpeVocab::base(&specials(&["<|endoftext|>"]));
    for (l, r) in [(a, b), (257, c), (b, c), (a, 259)] {
        with_eot.push_merge(l, r);
    }
    let dir = tempfile::tempdir().unwrap();
    save::write_files(&with_eot, dir.path()).unwrap();
    let tok = Tokenizer::from_dir(dir.path()).unwrap();
    assert_eq!(tok.vocab_size(), 260);
    assert_eq!(tok.encode("abc"), [258]);
}

/// Text that repeats few characters, so that many pairs tie.
fn tie_heavy_text(seed: u64, len: usize) -> String {
    let mut state = seed;
    let alphabet = ['a', 'b', ' ', 'c'];
    (0..len)
        .map(|_| {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            alphabet[((state >> 33) % 4) as usize]
        })
        .collect()
}

/// Random bytes, made into text (invalid UTF-8 becomes U+FFFD).
fn random_bytes_text(seed: u64, len: usize) -> String {
    let mut state = seed;
    let bytes: Vec<u8> = (0..len)
        .map(|_| {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (state >> 56) as u8
        })
        .collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

const UNICODE_TEXT: &str = "Grüße aus Köln! Ça va? 東京は晴れ、大阪は雨。 Привет, мир — привет! \
    naïve café résumé 1234 5678 ½ ⅓ 🙂🙂🙂 🙂 ok 'tis we'll IT'S\n\n\tend  ";

#[test]
fn fast_trainer_learns_the_lesson_trainers_merges() {
    let shakespeare = shakespeare(0, 80_000);
    let unicode = UNICODE_TEXT.repeat(5) + &UNICODE_TEXT.to_uppercase();
    let corpora: Vec<(&str, String, usize)> = vec![
        ("random bytes", random_bytes_text(7, 20_000), 700),
        ("unicode", unicode, 600),
        ("shakespeare", shakespeare, 900),
        ("ties", tie_heavy_text(3, 5_000), 500),
        ("ties 2", tie_heavy_text(11, 300), 2_000), // runs out of pairs
    ];
    let s = specials(&["<|endoftext|>", "<|pad|>"]);
    for (name, text, vocab_size) in corpora {
        let words = count_words([text.as_str()], &s);
        let lesson = train_bpe(&words, vocab_size, &s).unwrap();
        let fast = train_bpe_fast(&words, vocab_size, &s, false).unwrap();
        println!(
            "{name}: {} words, {} merges ({} repeating a token), vocabulary {}",
            words.len(),
            lesson.merges.len(),
            lesson.repeated_merges(),
            lesson.vocab_size()
        );
        assert!(lesson.merges.len() > 50, "{name}: too few merges to test much");
        assert_eq!(lesson, fast, "{name}: the trainers disagree");
    }
}

#[test]
fn parallel_counting_equals_sequential_counting() {
    let s = specials(&["<|endoftext|>"]);
    // Long documents with newlines between solid characters, so they are cut into chunks.
    let doc = shakespeare(0, 3_000_000);
    let docs = vec![doc.clone(), format!("x<|endoftext|>{}", &doc[..10_000]), String::new(), UNICODE_TEXT.into()];
    let mut parallel = FxHashMap::default();
    count_words_parallel(&docs, &s, &mut parallel);
    let sequential = count_words(docs.iter().map(String::as_str), &s);
    assert_eq!(sorted_words(parallel), sequential);
}

#[test]
fn merges_never_cross_a_special_token() {
    // Without splitting on the special token, "x<|s|>y" would be the words "x", "<|", "s", "|>y".
    let s = specials(&["<|s|>"]);
    let mut counts = FxHashMap::default();
    count_document(&"x<|s|>y<|s|>".repeat(50), &s, &mut counts);
    let mut keys: Vec<&String> = counts.keys().collect();
    keys.sort();
    assert_eq!(keys, ["x", "y"]);
    let vocab = train_bpe(&sorted_words(counts), 400, &s).unwrap();
    assert!(vocab.merges.is_empty(), "single-byte words have no pair: {:?}", merges_as_text(&vocab));
    // The longer of two specials starting at the same place wins.
    let s = specials(&["<|a", "<|ab|>"]);
    let words = count_words(["q<|ab|>r<|az"], &s);
    let words: Vec<&[u8]> = words.iter().map(|(w, _)| w.as_slice()).collect();
    assert_eq!(words, [b"q" as &[u8], b"r", b"z"]);
}

#[test]
fn bad_requests_are_clear_errors() {
    let words = count_words(["hello"], &[]);
    let s = specials(&["<|endoftext|>", "<|pad|>"]);
    let err = train_bpe(&words, 257, &s).unwrap_err();
    assert_eq!(err, TrainError::VocabTooSmall { vocab_size: 257, needed: 258, specials: 2 });
    assert!(err.to_string().contains("at least 258 tokens (the 256 bytes and 2 special tokens)"), "{err}");
    assert!(train_bpe_fast(&words, 100, &[], false).is_err());
    let twice = specials(&["<|x|>", "<|x|>"]);
    assert!(train_bpe(&words, 300, &twice).unwrap_err().to_string().contains("given twice"));
    assert!(train_bpe(&words, 300, &specials(&[""])).unwrap_err().to_string().contains("empty"));
}

/// Trains on some Shakespeare, writes the files, and checks that our `Tokenizer` reads them back:
/// the same tokens, the merges applied (fewer tokens than bytes), and encode/decode round trips.
#[test]
fn trained_files_load_in_our_tokenizer_and_round_trip() {
    let train_text = shakespeare(0, 200_000);
    let s = specials(&["<|endoftext|>", "<|im start|>"]);
    let vocab = train_bpe_fast(&count_words([train_text.as_str()], &s), 1000, &s, false).unwrap();
    let dir = tempfile::tempdir().unwrap();
    save::write_files(&vocab, dir.path()).unwrap();
    let tok = Tokenizer::from_dir(dir.path()).unwrap();
    assert_eq!(tok.vocab_size(), 1000);
    assert_eq!(tok.eot_token(), 256);
    for id in 0..1000u32 {
        assert_eq!(tok.token_bytes(id).unwrap(), vocab.token_bytes(id), "token {id}");
    }

    let held_out = shakespeare(1_000_000, 50_000);
    for text in [held_out.as_str(), UNICODE_TEXT, &random_bytes_text(5, 5_000), "<|endoftext|> <|im start|>"] {
        let ids = tok.encode(text);
        assert_eq!(tok.decode(&ids).unwrap(), text);
        // Specials in the text are ordinary text: encode never produces their ids.
        assert!(!ids.contains(&256) && !ids.contains(&257));
    }
    let ids = tok.encode(&held_out);
    let bytes_per_token = held_out.len() as f64 / ids.len() as f64;
    println!("held-out Shakespeare: {bytes_per_token:.2} bytes per token with a 1000-token vocabulary");
    assert!(bytes_per_token > 2.0, "the merges are not applied: {bytes_per_token:.2} bytes per token");
    // The tokens the merges make are what BPE gives for those exact words.
    assert_eq!(tok.encode(" the"), [vocab.tokens.iter().position(|t| t == b" the").unwrap() as u32]);

    // tokenizer.json holds the same vocabulary and merges.
    let hf: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("tokenizer.json")).unwrap()).unwrap();
    assert_eq!(hf["model"]["type"], "BPE");
    assert_eq!(hf["pre_tokenizer"]["type"], "ByteLevel");
    assert_eq!(hf["decoder"]["type"], "ByteLevel");
    assert_eq!(hf["model"]["vocab"].as_object().unwrap().len(), 1000);
    assert_eq!(hf["model"]["vocab"]["Ġthe"], vocab.tokens.iter().position(|t| t == b" the").unwrap());
    assert_eq!(hf["model"]["merges"].as_array().unwrap().len(), vocab.merges.len());
    assert_eq!(hf["added_tokens"][1]["content"], "<|im start|>");
    assert_eq!(hf["added_tokens"][1]["id"], 257);
    assert_eq!(hf["added_tokens"][1]["special"], true);
    let bpe = std::fs::read_to_string(dir.path().join("vocab.bpe")).unwrap();
    let first_merge = bpe.lines().nth(1).unwrap();
    assert_eq!(hf["model"]["merges"][0], first_merge);
}

#[test]
fn digest_tells_tokenizers_apart() {
    let gpt2 = Tokenizer::gpt2();
    assert_eq!(gpt2.digest(), Tokenizer::gpt2().digest());
    assert!(gpt2.digest() > 0);
    let s = specials(&["<|endoftext|>"]);
    let words = count_words(["the cat sat on the mat, the end"], &s);
    let dir = tempfile::tempdir().unwrap();
    let mut digests = vec![gpt2.digest()];
    for vocab_size in [262, 263] {
        let out = dir.path().join(vocab_size.to_string());
        save::write_files(&train_bpe(&words, vocab_size, &s).unwrap(), &out).unwrap();
        digests.push(Tokenizer::from_dir(&out).unwrap().digest());
    }
    assert!(digests[0] != digests[1] && digests[1] != digests[2] && digests[0] != digests[2], "{digests:?}");
}

// ---- the command: gpt2 tokenizer train ----

fn gpt2(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_gpt2")).args(args).output().expect("the binary runs")
}

/// Runs `tokenizer train` with `extra` flags on `inputs` into `out`, expecting success.
fn train_cli(inputs: &[&Path], out: &Path, extra: &[&str]) -> Tokenizer {
    let mut args: Vec<String> = vec!["tokenizer".into(), "train".into(), "--input".into()];
    args.extend(inputs.iter().map(|p| p.display().to_string()));
    args.extend(["--out".into(), out.display().to_string()]);
    args.extend(extra.iter().map(|s| s.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let output = gpt2(&args);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{args:?}: {stderr}");
    assert!(stderr.contains("merges/s"), "no progress line: {stderr}");
    Tokenizer::from_dir(out).unwrap()
}

fn cli_error(args: &[&str]) -> String {
    let output = gpt2(args);
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(!output.status.success(), "expected failure for {args:?}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    stderr
}

#[test]
fn cli_vocab_size_sets_the_number_of_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let text = dir.path().join("hamlet.txt");
    let plays = shakespeare(300_000, 100_000);
    std::fs::write(&text, &plays).unwrap();
    for n in [300, 500] {
        let out = dir.path().join(format!("v{n}"));
        let tok = train_cli(&[&text], &out, &["--vocab-size", &n.to_string()]);
        assert_eq!(tok.vocab_size(), n);
        // The files equal what the library's lesson trainer writes on the same text.
        let s = specials(&["<|endoftext|>"]);
        let lesson = train_bpe(&count_words([plays.as_str()], &s), n, &s).unwrap();
        let bpe = std::fs::read_to_string(out.join("vocab.bpe")).unwrap();
        assert_eq!(bpe, save::vocab_bpe(&lesson));
    }
}

#[test]
fn cli_special_tokens_get_ids_after_the_bytes_and_are_never_merged_across() {
    let dir = tempfile::tempdir().unwrap();
    let text = dir.path().join("chat.txt");
    // "ab" always surrounds the special: without the split, "b<|"... would be pieces to merge.
    std::fs::write(&text, "ab<|user|>ab<|endoftext|>ab<|user|>ab ".repeat(100)).unwrap();
    let out = dir.path().join("tok");
    let tok =
        train_cli(&[&text], &out, &["--vocab-size", "270", "--special", "<|endoftext|>", "--special", "<|user|>"]);
    assert_eq!(tok.eot_token(), 256);
    assert_eq!(tok.token_bytes(257).unwrap(), b"<|user|>");
    for id in 258..tok.vocab_size() as u32 {
        let t = tok.token_bytes(id).unwrap();
        assert!(
            !t.contains(&b'<') && !t.contains(&b'|'),
            "token {id} {:?} crosses a special",
            String::from_utf8_lossy(t)
        );
    }
    // Only "ab", " ab"... : a few merges, then nothing left to merge.
    assert!(tok.vocab_size() < 270);
    let hf = std::fs::read_to_string(out.join("tokenizer.json")).unwrap();
    assert!(hf.contains("\"content\": \"<|user|>\""));

    // Without --special <|user|>, its characters are ordinary text and merge.
    let out2 = dir.path().join("tok2");
    let tok2 = train_cli(&[&text], &out2, &["--vocab-size", "270"]);
    let has_bar_merge = (257..tok2.vocab_size() as u32).any(|id| tok2.token_bytes(id).unwrap().contains(&b'|'));
    assert!(has_bar_merge, "without the special, '|' should be merged");
}

#[test]
fn cli_reads_text_jsonl_and_parquet_alike() {
    let dir = tempfile::tempdir().unwrap();
    let docs: Vec<String> = shakespeare(500_000, 60_000).split("\n\n").map(str::to_string).collect();
    // jsonl and parquet: one document each; text files: one document a file.
    let jsonl = dir.path().join("docs.jsonl");
    let lines: Vec<String> = docs.iter().map(|d| serde_json::json!({ "text": d }).to_string()).collect();
    std::fs::write(&jsonl, lines.join("\n") + "\n").unwrap();
    let parquet = dir.path().join("docs.parquet");
    parquet_writer::write_parquet(&parquet, &docs, 7, parquet::basic::Compression::SNAPPY);
    let mut txts = Vec::new();
    for (i, d) in docs.iter().enumerate().filter(|(_, d)| !d.is_empty()) {
        let p = dir.path().join(format!("{i}.txt"));
        std::fs::write(&p, d).unwrap();
        txts.push(p);
    }
    let flags = ["--vocab-size", "600"];
    train_cli(&[&jsonl], &dir.path().join("j"), &flags);
    train_cli(&[&parquet], &dir.path().join("p"), &flags);
    let txt_refs: Vec<&Path> = txts.iter().map(|p| p.as_path()).collect();
    train_cli(&txt_refs, &dir.path().join("t"), &flags);
    let bpe = |d: &str| std::fs::read_to_string(dir.path().join(d).join("vocab.bpe")).unwrap();
    let s = specials(&["<|endoftext|>"]);
    let expected = save::vocab_bpe(&train_bpe(&count_words(docs.iter().map(String::as_str), &s), 600, &s).unwrap());
    assert_eq!(bpe("j"), expected);
    assert_eq!(bpe("p"), expected);
    assert_eq!(bpe("t"), expected);
}

#[test]
fn cli_errors_name_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    let text = dir.path().join("a.txt");
    std::fs::write(&text, "some text").unwrap();
    let (t, out) = (text.to_str().unwrap(), dir.path().join("o"));
    let out = out.to_str().unwrap();
    let err = cli_error(&["tokenizer", "train", "--input", t, "--vocab-size", "256", "--out", out]);
    assert!(err.contains("--vocab-size 256 is too small") && err.contains("at least 257"), "{err}");
    let err = cli_error(&["tokenizer", "train", "--input", "/nonexistent/x.txt", "--vocab-size", "300", "--out", out]);
    assert!(err.contains("/nonexistent/x.txt") && err.contains("cannot read"), "{err}");
    let empty = dir.path().join("empty.txt");
    std::fs::write(&empty, "").unwrap();
    let err =
        cli_error(&["tokenizer", "train", "--input", empty.to_str().unwrap(), "--vocab-size", "300", "--out", out]);
    assert!(err.contains("empty.txt") && err.contains("empty"), "{err}");
    let only_special = dir.path().join("s.txt");
    std::fs::write(&only_special, "<|endoftext|><|endoftext|>").unwrap();
    let err = cli_error(&[
        "tokenizer",
        "train",
        "--input",
        only_special.to_str().unwrap(),
        "--vocab-size",
        "300",
        "--out",
        out,
    ]);
    assert!(err.contains("no text to learn from"), "{err}");
    let err =
        cli_error(&["tokenizer", "train", "--input", t, "--vocab-size", "300", "--out", out, "--special", "<|x|>"]);
    assert!(err.contains("must include <|endoftext|>"), "{err}");
    assert!(!Path::new(out).exists(), "a failed run must not write the output");
}

// ---- --tokenizer DIR on every command ----

/// A trained tokenizer (vocabulary 300) in `dir/tok`, and Shakespeare text in `dir/text.txt`.
fn trained_tokenizer(dir: &Path) -> (std::path::PathBuf, std::path::PathBuf, Tokenizer) {
    let text = dir.join("text.txt");
    std::fs::write(&text, shakespeare(0, 200_000)).unwrap();
    let tok_dir = dir.join("tok");
    let tok = train_cli(&[&text], &tok_dir, &["--vocab-size", "300"]);
    (tok_dir, text, tok)
}

fn stdout_of(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn ok(args: &[&str]) -> Output {
    let output = gpt2(args);
    assert!(output.status.success(), "{args:?}: {}", String::from_utf8_lossy(&output.stderr));
    output
}

#[test]
fn tokenize_and_prepare_encode_with_the_tokenizer_given() {
    let dir = tempfile::tempdir().unwrap();
    let (tok_dir, text, tok) = trained_tokenizer(dir.path());
    let (tok_s, text_s) = (tok_dir.to_str().unwrap(), text.to_str().unwrap());

    // tokenize: the trained tokenizer's ids, not GPT-2's; --decode gives the text back.
    let sample = dir.path().join("sample.txt");
    std::fs::write(&sample, "To be, or not to be, that is the question:\n").unwrap();
    let ids = stdout_of(&ok(&["tokenize", sample.to_str().unwrap(), "--tokenizer", tok_s]));
    let expected: Vec<String> =
        tok.encode("To be, or not to be, that is the question:\n").iter().map(u32::to_string).collect();
    assert_eq!(ids.trim(), expected.join(" "));
    let gpt2_ids = stdout_of(&ok(&["tokenize", sample.to_str().unwrap()]));
    assert_ne!(ids, gpt2_ids);
    let ids_file = dir.path().join("ids.txt");
    std::fs::write(&ids_file, &ids).unwrap();
    let decoded = ok(&["tokenize", "--decode", ids_file.to_str().unwrap(), "--tokenizer", tok_s]);
    assert_eq!(stdout_of(&decoded), "To be, or not to be, that is the question:\n");

    // prepare: shards of the trained tokenizer's ids (EOT 256 before the document), and its tokenizer.bin.
    let out = dir.path().join("shards");
    ok(&["prepare", "--input", text_s, "--out", out.to_str().unwrap(), "--val-tokens", "1000", "--tokenizer", tok_s]);
    let val = std::fs::read(out.join("val_000000.bin")).unwrap();
    let tokens: Vec<u32> = val[1024..].chunks_exact(2).map(|b| u16::from_le_bytes([b[0], b[1]]) as u32).collect();
    assert_eq!(tokens.len(), 1000);
    assert_eq!(tokens[0], 256, "documents start with the tokenizer's <|endoftext|>");
    assert_eq!(tokens[1..], tok.encode(&shakespeare(0, 200_000))[..999]);
    let bin = std::fs::read(out.join("tokenizer.bin")).unwrap();
    assert_eq!(i32::from_le_bytes([bin[8], bin[9], bin[10], bin[11]]), 300, "tokenizer.bin's vocabulary size");
}

/// Reads header entry `i` of a model file.
fn header_entry(path: &Path, i: usize) -> i32 {
    let bytes = std::fs::read(path).unwrap();
    i32::from_le_bytes([bytes[4 * i], bytes[4 * i + 1], bytes[4 * i + 2], bytes[4 * i + 3]])
}

#[test]
fn train_sample_eval_export_follow_the_tokenizer_and_refuse_another() {
    let dir = tempfile::tempdir().unwrap();
    let (tok_dir, text, tok) = trained_tokenizer(dir.path());
    let (tok_s, text_s) = (tok_dir.to_str().unwrap(), text.to_str().unwrap());
    let shards = dir.path().join("shards");
    ok(&[
        "prepare",
        "--input",
        text_s,
        "--out",
        shards.to_str().unwrap(),
        "--val-tokens",
        "1000",
        "--tokenizer",
        tok_s,
    ]);
    let train = shards.join("train_*.bin").display().to_string();
    let val = shards.join("val_*.bin").display().to_string();

    // train: the fresh model's vocabulary is the tokenizer's (300, padded to 384); the files record it.
    let ckpt = dir.path().join("ckpt.bin");
    let llmc = dir.path().join("model.bin");
    let (ckpt_s, llmc_s) = (ckpt.to_str().unwrap(), llmc.to_str().unwrap());
    let common = ["--device", "cpu", "--batch", "2", "--seq", "8", "--val-every", "0"];
    let mut args = vec!["train", "--train-data", &train, "--steps", "2", "--save", ckpt_s, "--export-llmc", llmc_s];
    args.extend(common);
    args.extend(["--model", "L2H2C16"]);
    args.extend(["--tokenizer", tok_s]);
    let out = ok(&args);
    assert!(String::from_utf8_lossy(&out.stderr).contains(&format!("--tokenizer {tok_s}")));
    assert_eq!((header_entry(&ckpt, 3), header_entry(&ckpt, 7)), (300, 384), "V and Vp of the checkpoint");
    assert_eq!(header_entry(&ckpt, 23), tok.digest(), "the checkpoint records the tokenizer");
    assert_eq!((header_entry(&llmc, 3), header_entry(&llmc, 8)), (300, tok.digest()));

    // resuming without the tokenizer is refused, naming what to do
    let mut args = vec!["train", "--resume", ckpt_s, "--train-data", &train, "--steps", "3", "--no-save"];
    args.extend(common);
    let err = cli_error(&args);
    assert!(err.contains("trained with a tokenizer with digest") && err.contains("--tokenizer"), "{err}");
    args.extend(["--tokenizer", tok_s]);
    ok(&args);

    // sample: decodes with the trained tokenizer; refused without it
    let sample = ["sample", "--init", ckpt_s, "--tokens", "20", "--prompt", "KING"];
    let err = cli_error(&sample);
    assert!(err.contains("but the tokenizer given is GPT-2's"), "{err}");
    let out = ok(&[&sample[..], &["--tokenizer", tok_s]].concat());
    assert!(stdout_of(&out).starts_with("KING"));

    // eval: the model's validation loss on the tokenizer's shards; refused without it
    let eval = ["eval", "--init", llmc_s, "--val-data", &val, "--device", "cpu", "--seq", "8", "--val-batches", "2"];
    assert!(cli_error(&eval).contains("--tokenizer"));
    ok(&[&eval[..], &["--tokenizer", tok_s]].concat());

    // export: the HF directory holds this tokenizer's files; the llm.c file keeps the digest
    let hf = dir.path().join("hf");
    let llmc2 = dir.path().join("model2.bin");
    let export = ["export", "--init", ckpt_s, "--hf", hf.to_str().unwrap(), "--llmc", llmc2.to_str().unwrap()];
    assert!(cli_error(&export).contains("--tokenizer"));
    ok(&[&export[..], &["--tokenizer", tok_s]].concat());
    let read = |p: std::path::PathBuf| std::fs::read_to_string(p).unwrap();
    assert_eq!(read(hf.join("vocab.json")), read(tok_dir.join("encoder.json")));
    assert_eq!(read(hf.join("merges.txt")), read(tok_dir.join("vocab.bpe")));
    assert_eq!(read(hf.join("tokenizer.json")), read(tok_dir.join("tokenizer.json")));
    let config: serde_json::Value = serde_json::from_str(&read(hf.join("config.json"))).unwrap();
    assert_eq!((config["vocab_size"].as_u64(), config["eos_token_id"].as_u64()), (Some(300), Some(256)));
    assert_eq!(header_entry(&llmc2, 8), tok.digest());
    // the HF directory, loaded back, knows its tokenizer from its vocab.json and merges.txt
    let hf_s = hf.to_str().unwrap();
    assert!(cli_error(&["sample", "--init", hf_s, "--tokens", "5"]).contains("--tokenizer"));
    ok(&["sample", "--init", hf_s, "--tokens", "5", "--tokenizer", tok_s]);
}

#[test]
fn train_encodes_the_shipped_text_with_the_tokenizer_into_its_own_cache() {
    let dir = tempfile::tempdir().unwrap();
    let (tok_dir, _, tok) = trained_tokenizer(dir.path());
    let cache = dir.path().join("cache").join("shakespeare");
    let output = Command::new(env!("CARGO_BIN_EXE_gpt2"))
        .args(["train", "--device", "cpu", "--model", "L2H2C16", "--batch", "2", "--seq", "8", "--steps", "1"])
        .args(["--val-every", "0", "--no-save", "--tokenizer", tok_dir.to_str().unwrap()])
        .env("GPT2_CACHE_DIR", &cache)
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let own = dir.path().join("cache").join(format!("shakespeare-tok{}", tok.digest()));
    let val = std::fs::read(own.join("val_000000.bin")).expect("the tokenizer's own cache directory");
    let first: Vec<u16> = val[1024..1034].chunks_exact(2).map(|b| u16::from_le_bytes([b[0], b[1]])).collect();
    assert_eq!(first[0], 256);
    assert!(first.iter().all(|&id| id < 300));
    assert!(!cache.exists(), "GPT-2's cache is not touched");

    // eval with --tokenizer and no data scores the same shards (the tokenizer's own cache)
    let ckpt = dir.path().join("ckpt.bin");
    let output = Command::new(env!("CARGO_BIN_EXE_gpt2"))
        .args(["train", "--device", "cpu", "--model", "L2H2C16", "--batch", "2", "--seq", "8", "--steps", "1"])
        .args(["--val-every", "0", "--save", ckpt.to_str().unwrap(), "--tokenizer", tok_dir.to_str().unwrap()])
        .env("GPT2_CACHE_DIR", &cache)
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let output = Command::new(env!("CARGO_BIN_EXE_gpt2"))
        .args(["eval", "--init", ckpt.to_str().unwrap(), "--device", "cpu", "--val-batches", "1"])
        .args(["--tokenizer", tok_dir.to_str().unwrap()])
        .env("GPT2_CACHE_DIR", &cache)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(stderr.contains(&own.join("val_*.bin").display().to_string()), "{stderr}");
    let json: serde_json::Value = serde_json::from_str(stdout_of(&output).trim()).unwrap();
    assert_eq!(json["tokens"].as_u64(), Some(8 * 64));
    assert!(!cache.exists(), "GPT-2's cache is not touched");
}

#[test]
fn serve_uses_the_tokenizer_given() {
    use std::io::{BufRead, BufReader, Read, Write};
    let dir = tempfile::tempdir().unwrap();
    let (tok_dir, text, _) = trained_tokenizer(dir.path());
    let (tok_s, text_s) = (tok_dir.to_str().unwrap(), text.to_str().unwrap());
    let shards = dir.path().join("shards");
    ok(&[
        "prepare",
        "--input",
        text_s,
        "--out",
        shards.to_str().unwrap(),
        "--val-tokens",
        "1000",
        "--tokenizer",
        tok_s,
    ]);
    let ckpt = dir.path().join("ckpt.bin");
    let train = shards.join("train_*.bin").display().to_string();
    ok(&[
        "train",
        "--device",
        "cpu",
        "--model",
        "L2H2C16",
        "--batch",
        "2",
        "--seq",
        "8",
        "--steps",
        "1",
        "--val-every",
        "0",
    ]
    .iter()
    .copied()
    .chain(["--train-data", &train, "--save", ckpt.to_str().unwrap(), "--tokenizer", tok_s])
    .collect::<Vec<_>>());
    let ckpt_s = ckpt.to_str().unwrap();
    assert!(cli_error(&["serve", "--init", ckpt_s, "--port", "0"]).contains("--tokenizer"));

    let mut child = Command::new(env!("CARGO_BIN_EXE_gpt2"))
        .args(["serve", "--init", ckpt_s, "--port", "0", "--tokenizer", tok_s])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut addr = None;
    let mut line = String::new();
    while stderr.read_line(&mut line).unwrap() > 0 {
        if let Some(rest) = line.split("serving on http://").nth(1) {
            addr = rest.split_whitespace().next().map(str::to_string);
            break;
        }
        line.clear();
    }
    let addr = addr.expect("the server says where it listens");
    let body = r#"{"prompt": "KING", "max_tokens": 5, "temperature": 0}"#;
    let mut stream = std::net::TcpStream::connect(&addr).unwrap();
    write!(
        stream,
        "POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.contains("\"prompt_tokens\""), "{response}");
}

#[test]
fn checkpoints_without_a_tokenizer_are_written_byte_for_byte_as_before() {
    use gpt2::config::ModelConfig;
    use gpt2::model::checkpoint::{self, TrainState};
    let cfg = ModelConfig::from_name("L2H2C16").unwrap();
    let n = cfg.num_parameters();
    let params: Vec<f32> = (0..n).map(|i| (i as f32 * 0.37).sin()).collect();
    let state = TrainState { step: 3, b: 2, t: 8, ..Default::default() };
    let dir = tempfile::tempdir().unwrap();
    let (old, new, digest) = (dir.path().join("old.bin"), dir.path().join("new.bin"), dir.path().join("d.bin"));
    checkpoint::save_checkpoint(&old, &cfg, &params, &params, &params, &state).unwrap();
    checkpoint::save_checkpoint_with_tokenizer(&new, &cfg, &params, &params, &params, &state, 0).unwrap();
    assert_eq!(std::fs::read(&old).unwrap(), std::fs::read(&new).unwrap());
    assert_eq!(checkpoint::load(&old).unwrap().tokenizer_digest, 0);
    checkpoint::save_checkpoint_with_tokenizer(&digest, &cfg, &params, &params, &params, &state, 12345).unwrap();
    let loaded = checkpoint::load(&digest).unwrap(); // the checksum covers the digest
    assert_eq!(loaded.tokenizer_digest, 12345);
    let err = loaded.check_tokenizer(&digest, &Tokenizer::gpt2()).unwrap_err().to_string();
    assert!(err.contains("digest 12345") && err.contains("GPT-2's"), "{err}");
    assert!(checkpoint::load(&old).unwrap().check_tokenizer(&old, &Tokenizer::gpt2()).is_ok());
}

// ---- validation loss per byte (src/train/per_byte.rs) ----

/// Writes `tokens` as a token shard `name` in `dir`, returning its path as a string.
fn shard(dir: &Path, name: &str, tokens: &[u16]) -> String {
    let path = dir.join(name);
    gpt2::data::write_shard(&path, tokens).unwrap();
    path.display().to_string()
}

#[test]
fn val_text_counts_the_bytes_of_the_validation_targets() {
    use gpt2::train::ValText;
    let dir = tempfile::tempdir().unwrap();
    // GPT-2's ids: <|endoftext|> 50256 (no text), "Hello" 15496 (5 bytes), " world" 995 (6), "!" 0 (1), "," 11 (1)
    let (eot, hello, world, bang, comma) = (50256, 15496, 995, 0, 11);
    let path = shard(dir.path(), "val.bin", &[eot, hello, world, bang, eot, hello, comma, world, bang]);
    let gpt2 = Tokenizer::gpt2();
    let measure = |b, t, batches| ValText::measure(&path, b, t, batches, &gpt2).unwrap();
    // B=1, T=4: batch 1's targets "Hello", " world", "!", EOT = 12 bytes; batch 2's "Hello , world!" = 13
    assert_eq!(measure(1, 4, 1), ValText { tokens: 4, bytes: 12 });
    assert_eq!(measure(1, 4, 2), ValText { tokens: 8, bytes: 25 });
    assert_eq!(measure(1, 4, 9), ValText { tokens: 8, bytes: 25 }, "at most the batches the shard holds");
    // B=1, T=2: the first batch's targets are "Hello", " world"; B=2, T=2 adds "!", EOT
    assert_eq!(measure(1, 2, 1), ValText { tokens: 2, bytes: 11 });
    assert_eq!(measure(2, 2, 1), ValText { tokens: 4, bytes: 12 });
    // loss per byte = loss per token * tokens / bytes
    let text = measure(1, 4, 1);
    assert!((text.nats_per_byte(3.0) - 1.0).abs() < 1e-12);
    assert!((text.bits_per_byte(3.0) - 1.0 / std::f64::consts::LN_2).abs() < 1e-12);
    // a shard of EOTs only has no text to divide by: an error naming the shard
    let empty = shard(dir.path(), "eot.bin", &[eot; 9]);
    let err = ValText::measure(&empty, 1, 4, 1, &gpt2).unwrap_err().to_string();
    assert!(err.contains("eot.bin") && err.contains("no bytes"), "{err}");
}

/// ids below 300 mean other bytes under GPT-2's tokenizer (256..=263 are merges: " t", " a", "he",
/// "in", "re", "on", " the", "er") and under a trained 300-token one (256 is its <|endoftext|>, no text).
const SMALL_IDS: [u16; 9] = [256, 257, 258, 259, 256, 260, 261, 262, 263];

/// The bytes of the targets of SMALL_IDS (all but the first) under `tok`, special tokens counting none.
fn small_ids_bytes(tok: &Tokenizer) -> usize {
    let eot = tok.eot_token();
    SMALL_IDS[1..].iter().filter(|&&id| id as u32 != eot).map(|&id| tok.token_bytes(id as u32).unwrap().len()).sum()
}

/// The "val loss L per token, N nats (B bits) per byte (T tokens, Y bytes of text" line in `stderr`: (L, N, B, T, Y).
fn per_byte_line(stderr: &str) -> (f64, f64, f64, usize, usize) {
    let line = stderr
        .lines()
        .find(|l| l.contains(" per token, ") && l.contains("per byte"))
        .unwrap_or_else(|| panic!("no per-byte line: {stderr}"));
    let words: Vec<&str> = line.split([' ', '(', ')', ',']).filter(|w| !w.is_empty()).collect();
    let after = |w: &str| words[words.iter().position(|x| *x == w).unwrap() - 1];
    let num = |s: &str| s.parse::<f64>().unwrap();
    let loss = num(words[words.iter().position(|x| *x == "loss").unwrap() + 1]);
    (loss, num(after("nats")), num(after("bits")), num(after("tokens")) as usize, num(after("bytes")) as usize)
}

#[test]
fn train_and_eval_report_the_val_loss_per_byte_of_the_run_tokenizer() {
    let dir = tempfile::tempdir().unwrap();
    let (tok_dir, _, tok) = trained_tokenizer(dir.path());
    let tok_s = tok_dir.to_str().unwrap();
    let data = shard(dir.path(), "small.bin", &SMALL_IDS);
    let gpt2_bytes = small_ids_bytes(&Tokenizer::gpt2());
    let tok_bytes = small_ids_bytes(&tok);
    assert_eq!(
        gpt2_bytes, 18,
        "the targets \" a\", \"he\", \"in\", \" t\", \"re\", \"on\", \" the\", \"er\" under GPT-2's"
    );
    assert_ne!(tok_bytes, gpt2_bytes, "the two tokenizers must count differently for this test to tell them apart");
    let ckpt = dir.path().join("ckpt.bin");
    let ckpt_s = ckpt.to_str().unwrap();
    let train = |extra: &[&str]| {
        let mut args = vec!["train", "--train-data", &data, "--val-data", &data, "--device", "cpu"];
        args.extend(["--model", "L2H2C16", "--batch", "1", "--seq", "4", "--steps", "1", "--val-batches", "2"]);
        args.extend(["--save", ckpt_s, "--overwrite"]);
        args.extend(extra);
        String::from_utf8_lossy(&ok(&args).stderr).into_owned()
    };
    for (extra, bytes) in [(&[][..], gpt2_bytes), (&["--tokenizer", tok_s][..], tok_bytes)] {
        let stderr = train(extra);
        let (loss, nats, bits, tokens, counted) = per_byte_line(&stderr);
        assert_eq!((tokens, counted), (8, bytes), "{extra:?}: {stderr}");
        let expected = loss * 8.0 / bytes as f64;
        assert!((nats - expected).abs() < 2e-3, "{nats} vs {expected}: {stderr}");
        assert!((bits - expected / std::f64::consts::LN_2).abs() < 3e-3, "{bits}: {stderr}");
    }
    // eval of the last (trained tokenizer's) model: the same bytes, in its JSON line and on stderr
    let eval = ["eval", "--init", ckpt_s, "--val-data", &data, "--device", "cpu", "--batch", "1", "--seq", "4"];
    let out = ok(&[&eval[..], &["--val-batches", "2", "--tokenizer", tok_s]].concat());
    let json: serde_json::Value = serde_json::from_str(stdout_of(&out).trim()).unwrap();
    assert_eq!(json["val_bytes"].as_u64(), Some(tok_bytes as u64));
    let loss = json["val_loss"].as_f64().unwrap();
    let nats = json["val_nats_per_byte"].as_f64().unwrap();
    assert!((nats - loss * 8.0 / tok_bytes as f64).abs() < 1e-6, "{json}");
    assert!((json["val_bits_per_byte"].as_f64().unwrap() - nats / std::f64::consts::LN_2).abs() < 1e-9);
    assert_eq!(per_byte_line(&String::from_utf8_lossy(&out.stderr)).4, tok_bytes);
    // --val-batches 1: half the tokens, the bytes of the first batch's targets only
    let out = ok(&[&eval[..], &["--val-batches", "1", "--tokenizer", tok_s]].concat());
    let json: serde_json::Value = serde_json::from_str(stdout_of(&out).trim()).unwrap();
    let first: usize =
        SMALL_IDS[1..5].iter().filter(|&&id| id != 256).map(|&id| tok.token_bytes(id as u32).unwrap().len()).sum();
    assert_eq!((json["tokens"].as_u64(), json["val_bytes"].as_u64()), (Some(4), Some(first as u64)));
}
