//! Parsers that survive mutation: every file format the program reads is given thousands of seeded
//! random mutants of a valid file (truncated, extended, bits flipped, bytes overwritten, header fields
//! set to huge, zero and negative values) and must answer each with a clear error or a correct
//! result: never a panic, never a hang, never an allocation larger than the file justifies.
//!
//! `fuzz` is the harness: it takes a valid byte buffer and a closure that parses bytes, so a new
//! format is one more test of a few lines. A failure prints the parser, the seed, the case number and
//! the mutation, and `mutant(valid, seed, case)` rebuilds that exact input.
//!
//! Allocation bound: this test binary's global allocator records the largest single allocation of
//! the thread that is parsing; `fuzz` checks it against 4x the mutant's size plus 1 MiB (a parser
//! may read a file into memory and then decode it into f32s, which are twice as large as bf16). So a
//! header that claims 2^40 tokens or a model of 2^36 parameters must be refused before allocating.
//!
//! Run `cargo test --release --test library mutation:: -- --nocapture` to see the counts per parser, with
//! `MUTATION_VERBOSE=1` to list every changed mutant a parser accepted.
//!
//! Covered: our checkpoint, llm.c model files v3 and v5, token shards (and the loader on them),
//! GPT-2's encoder.json and vocab.bpe, `tokenize --decode` input, `prepare`'s .txt and .jsonl input.
//! Also, with fewer cases each (their parsers are slower): Hugging Face safetensors (bytes and the JSON
//! header), config.json (bytes and fields), HellaSwag jsonl (bytes and fields) and .bin, parquet input
//! (three compressions) and `serve`'s completion bodies (bytes and fields). llm.c's tokenizer file is written here
//! but never read, so it has no parser to test.

#[path = "common/parquet.rs"]
mod parquet_writer;
use gpt2::config::ModelConfig;
use gpt2::data::{write_shard, DataLoader, Shard};
use gpt2::files::HEADER_BYTES;
use gpt2::model::checkpoint::{parse, save_checkpoint, save_llmc, Checkpoint, TrainState, CHECKSUM_INDEX};
use gpt2::model::init::gpt2_init;
use gpt2::prepare::Input;
use gpt2::rng::Rng;
use gpt2::tokenizer::ids::{parse_ids, utf8};
use gpt2::tokenizer::{bytes_to_unicode, Tokenizer};
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

// ---- the allocation meter ----

/// The system allocator, recording the largest single allocation of each thread while it is armed.
struct Meter;

thread_local! {
    /// Largest allocation (bytes) since the thread armed the meter; `usize::MAX` disarmed.
    static LARGEST: Cell<usize> = const { Cell::new(usize::MAX) };
}

fn record(size: usize) {
    // `try_with`: a thread being torn down may allocate after its thread-locals are gone
    let _ = LARGEST.try_with(|l| {
        if l.get() != usize::MAX && size > l.get() {
            l.set(size);
        }
    });
}

// SAFETY: every call is passed straight to the system allocator; recording touches only a
// thread-local Cell of a plain integer (no allocation, no reentrancy).
unsafe impl GlobalAlloc for Meter {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        record(layout.size());
        // SAFETY: the caller's layout is passed on unchanged.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        record(layout.size());
        // SAFETY: as above.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: ptr came from System with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        record(new_size);
        // SAFETY: ptr came from System with this layout.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static METER: Meter = Meter;

/// Runs `f`, returning its value and the largest single allocation it made on this thread.
fn metered<T>(f: impl FnOnce() -> T) -> (T, usize) {
    LARGEST.with(|l| l.set(0));
    let value = f();
    let largest = LARGEST.with(|l| l.replace(usize::MAX));
    (value, largest)
}

// ---- mutations ----

/// How a valid file was changed into a mutant.
#[derive(Debug, Clone)]
enum Mutation {
    /// Cut to this many bytes.
    Truncate(usize),
    /// This many random bytes appended.
    Extend(usize),
    /// These bits flipped (byte offset, bit).
    FlipBits(Vec<(usize, u8)>),
    /// Bytes from this offset overwritten with this many random bytes.
    Overwrite(usize, usize),
    /// Header int i (of the 256-int llm.c header) set to a value.
    HeaderField(usize, i32),
    /// This many bytes removed at this offset (text formats: a cut in the middle).
    Delete(usize, usize),
    /// A copy of the bytes [from, from + len) inserted at `at`.
    Duplicate { from: usize, len: usize, at: usize },
    /// An interesting byte (quote, brace, newline, 0xFF, NUL, ...) written at an offset.
    Poke(usize, u8),
}

/// What kind of file the mutants are made from: binary with llm.c's header (`header_ints` of its
/// fields in use, which get the extreme values most often) or text.
#[derive(Clone, Copy)]
enum Kind {
    Binary { header_ints: usize },
    Text,
}

/// Values a header field is set to: the extremes, and values near real ones.
const FIELD_VALUES: [i32; 12] = [0, -1, 1, 2, 3, 5, i32::MIN, i32::MAX, 1 << 30, -(1 << 30), 65535, 1 << 20];

/// Draws mutation number `case` of `valid` for `seed` and applies it; the same (seed, case) gives the
/// same mutant.
fn mutant(valid: &[u8], kind: Kind, seed: u64, case: usize) -> (Vec<u8>, Mutation) {
    let mut rng = Rng::new(seed ^ (case as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let len = valid.len();
    assert!(len > 0, "mutants are made from a non-empty valid input");
    let mut bytes = valid.to_vec();
    let pick = rng.below(100);
    let mutation = match (kind, pick) {
        (_, 0..=14) => {
            // mostly near the end or inside the header, where parsers check sizes
            let at = match rng.below(3) {
                0 => rng.below(len.min(HEADER_BYTES + 8)),
                1 => len.saturating_sub(1 + rng.below(16)),
                _ => rng.below(len),
            };
            Mutation::Truncate(at)
        }
        (_, 15..=24) => {
            let most = if rng.below(2) == 0 { 8 } else { len };
            Mutation::Extend(1 + rng.below(most))
        }
        (_, 25..=49) => Mutation::FlipBits(
            (0..1 + rng.below(8))
                .map(|_| {
                    let at = match kind {
                        Kind::Binary { header_ints } if rng.below(2) == 0 => rng.below((4 * header_ints).clamp(1, len)),
                        _ => rng.below(len),
                    };
                    (at, rng.below(8) as u8)
                })
                .collect(),
        ),
        (Kind::Binary { header_ints }, 50..=84) if len >= 4 => {
            // a field of the header, or now and then any int of the first 256 (the file may be shorter)
            let ints = (len / 4).min(256);
            let i = if rng.below(4) == 0 { rng.below(ints) } else { rng.below(header_ints.clamp(1, ints)) };
            let current = i32::from_le_bytes(valid[4 * i..4 * i + 4].try_into().unwrap());
            let value = match rng.below(4) {
                0 => current.wrapping_add(rng.below(5) as i32 - 2),
                1 => rng.next_u64() as i32,
                _ => FIELD_VALUES[rng.below(FIELD_VALUES.len())],
            };
            Mutation::HeaderField(i, value)
        }
        (Kind::Text, 50..=64) => {
            let at = rng.below(len);
            Mutation::Delete(at, 1 + rng.below((len - at).min(64)))
        }
        (Kind::Text, 65..=74) => {
            let from = rng.below(len);
            Mutation::Duplicate { from, len: 1 + rng.below((len - from).min(64)), at: rng.below(len + 1) }
        }
        (Kind::Text, 75..=89) => {
            const BYTES: &[u8] = b"\"{}[]:,\\\n\r\t 0-9eE.\x00\xff\xc3\xa9\x80";
            Mutation::Poke(rng.below(len), BYTES[rng.below(BYTES.len())])
        }
        _ => {
            let at = rng.below(len);
            Mutation::Overwrite(at, 1 + rng.below((len - at).min(16)))
        }
    };
    match &mutation {
        Mutation::Truncate(at) => bytes.truncate(*at),
        Mutation::Extend(n) => bytes.extend((0..*n).map(|_| rng.next_u64() as u8)),
        Mutation::FlipBits(bits) => bits.iter().for_each(|&(at, bit)| bytes[at] ^= 1 << bit),
        Mutation::Overwrite(at, n) => bytes[*at..at + n].iter_mut().for_each(|b| *b = rng.next_u64() as u8),
        Mutation::HeaderField(i, value) => bytes[4 * i..4 * i + 4].copy_from_slice(&value.to_le_bytes()),
        Mutation::Delete(at, n) => drop(bytes.drain(*at..at + n)),
        Mutation::Duplicate { from, len, at } => {
            let copy = valid[*from..from + len].to_vec();
            bytes.splice(*at..*at, copy);
        }
        Mutation::Poke(at, b) => bytes[*at] = *b,
    }
    (bytes, mutation)
}

// ---- the harness ----

/// What the mutants of one parser came to.
#[derive(Debug, Default)]
struct Counts {
    cases: usize,
    errors: usize,
    ok: usize,
    /// Mutants that came out the same as the valid input (a field set to the value it had), among `ok`.
    unchanged: usize,
}

/// The longest a single parse may take before the watchdog calls it a hang.
const HANG_AFTER: Duration = Duration::from_secs(30);

/// Parses `cases` mutants of `valid` with `parse` and fails (naming the seed, case and mutation) on
/// a panic, a hang, an allocation over 4x the mutant's size + 1 MiB, or an error message that does not
/// satisfy `check_error`. `parse` returns Ok(()) for an input it accepted, after checking that what it
/// got is consistent, or Err(message).
fn fuzz(
    name: &str,
    valid: &[u8],
    kind: Kind,
    seed: u64,
    cases: usize,
    parse: impl Fn(&[u8]) -> Result<(), String>,
    check_error: impl Fn(&str) -> bool,
) -> Counts {
    let make = |case| {
        let (bytes, mutation) = mutant(valid, kind, seed, case);
        (bytes, format!("{mutation:?}"))
    };
    fuzz_with(name, valid, seed, cases, make, parse, check_error)
}

/// `fuzz` with the mutants made by `make(case)` (bytes and a description of the change), for
/// structured mutations of JSON (`json_mutant`) rather than of bytes.
fn fuzz_with(
    name: &str,
    valid: &[u8],
    seed: u64,
    cases: usize,
    make: impl Fn(usize) -> (Vec<u8>, String),
    parse: impl Fn(&[u8]) -> Result<(), String>,
    check_error: impl Fn(&str) -> bool,
) -> Counts {
    // the valid file itself must parse
    parse(valid).unwrap_or_else(|e| panic!("{name}: the valid input does not parse: {e}"));
    let current = Arc::new(Mutex::new(String::new()));
    let started = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let clock = Instant::now();
    let watchdog = {
        let (current, started, done) = (current.clone(), started.clone(), done.clone());
        std::thread::spawn(move || {
            while !done.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(50));
                let since = started.load(Ordering::Relaxed);
                if since > 0
                    && (clock.elapsed().as_millis() as u64).saturating_sub(since) > HANG_AFTER.as_millis() as u64
                {
                    eprintln!("HANG: {} has run for over {HANG_AFTER:?}", current.lock().unwrap());
                    std::process::exit(1);
                }
            }
        })
    };
    let mut counts = Counts::default();
    for case in 0..cases {
        let (bytes, mutation) = make(case);
        let what = format!("{name}: seed {seed} case {case}: {mutation} ({} bytes)", bytes.len());
        *current.lock().unwrap() = what.clone();
        started.store(clock.elapsed().as_millis() as u64 + 1, Ordering::Relaxed);
        let (outcome, largest) = metered(|| std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| parse(&bytes))));
        started.store(0, Ordering::Relaxed);
        let bound = 4 * bytes.len() + (1 << 20);
        assert!(largest <= bound, "{what}: allocated {largest} bytes at once, more than the bound {bound}");
        match outcome {
            Err(panic) => {
                let message = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                panic!("{what}: the parser panicked: {message}");
            }
            Ok(Ok(())) => {
                counts.ok += 1;
                counts.unchanged += (bytes == valid) as usize;
                if bytes != valid && std::env::var_os("MUTATION_VERBOSE").is_some() {
                    println!("accepted: {what}");
                }
            }
            Ok(Err(message)) => {
                assert!(check_error(&message), "{what}: unclear error: {message}");
                counts.errors += 1;
            }
        }
        counts.cases += 1;
    }
    done.store(true, Ordering::Relaxed);
    watchdog.join().unwrap();
    println!(
        "{name:<36} {:>5} cases: {:>5} errors, {:>5} accepted ({} of them unchanged by their mutation)",
        counts.cases, counts.errors, counts.ok, counts.unchanged
    );
    counts
}

/// Mutant files go here, one at a time, for parsers that take a path.
fn scratch(dir: &Path, name: &str, bytes: &[u8]) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

/// An error that names `path` and says something.
fn names_file(path: &Path) -> impl Fn(&str) -> bool + '_ {
    move |m: &str| m.starts_with(&path.display().to_string()) && m.len() > path.display().to_string().len() + 10
}

/// Cases per parser: enough to hit every header field with every extreme value many times over, and
/// small enough that the whole file runs in seconds.
const CASES: usize = 3000;

// ---- the parsers ----

fn small_config() -> ModelConfig {
    ModelConfig { max_seq_len: 16, vocab_size: 60, padded_vocab_size: 64, num_layers: 2, num_heads: 2, channels: 8 }
}

/// A loaded model file must describe a valid model and hold exactly its parameters.
fn consistent(ck: &Checkpoint) -> Result<(), String> {
    ck.config.validate().map_err(|e| format!("accepted an invalid config: {e}"))?;
    let n = ck.config.num_parameters();
    if ck.params.len() != n || ck.optimizer.as_ref().is_some_and(|(m, v, _)| m.len() != n || v.len() != n) {
        return Err("accepted a file whose tensors do not match its config".into());
    }
    Ok(())
}

fn checkpoint_bytes(dir: &Path) -> Vec<u8> {
    let config = small_config();
    let n = config.num_parameters();
    let mut rng = Rng::new(5);
    let mut vec = |s| (0..n).map(|_| s * rng.normal()).collect::<Vec<f32>>();
    let (p, m, v) = (vec(0.02), vec(1e-3), vec(1e-6));
    let state = TrainState {
        step: 7,
        epoch: 1,
        shard: 0,
        batch: 3,
        rng: 99,
        b: 2,
        t: 8,
        total_batch: 16,
        seed: 1,
        shuffle: true,
    };
    let path = dir.join("valid.ck.bin");
    save_checkpoint(&path, &config, &p, &m, &v, &state).unwrap();
    std::fs::read(&path).unwrap()
}

/// Sets a checkpoint's checksum to match its bytes, as a writer with a bug (or an attacker) would:
/// then only the structural checks stand between the mutant and training.
fn rechecksum(bytes: &mut [u8]) {
    if bytes.len() < HEADER_BYTES {
        return;
    }
    let at = 4 * CHECKSUM_INDEX;
    bytes[at..at + 4].fill(0);
    let crc = crc32c::crc32c_append(crc32c::crc32c(&bytes[..HEADER_BYTES]), &bytes[HEADER_BYTES..]);
    bytes[at..at + 4].copy_from_slice(&crc.to_le_bytes());
}

#[test]
fn checkpoint_mutants_are_refused_or_loaded_consistently() {
    let dir = tempfile::tempdir().unwrap();
    let valid = checkpoint_bytes(dir.path());
    let path = dir.path().join("mutant.ck.bin");
    let kind = Kind::Binary { header_ints: CHECKSUM_INDEX + 1 };
    let names = names_file(&path);
    // as loaded: the checksum catches every change, so nothing but the valid file is accepted
    let verified = fuzz(
        "checkpoint (checksum verified)",
        &valid,
        kind,
        1,
        CASES,
        |b| parse(&path, b, false).map_err(|e| e.to_string()).and_then(|ck| consistent(&ck)),
        &names,
    );
    assert_eq!(verified.ok, verified.unchanged, "a changed mutant got past the checksum");
    // forensics (GPT2_IGNORE_CHECKSUM=1) and mutants with a matching checksum: the structural checks
    fuzz(
        "checkpoint (checksum ignored)",
        &valid,
        kind,
        2,
        CASES,
        |b| parse(&path, b, true).map_err(|e| e.to_string()).and_then(|ck| consistent(&ck)),
        &names,
    );
    fuzz(
        "checkpoint (checksum recomputed)",
        &valid,
        kind,
        3,
        CASES,
        |b| {
            let mut b = b.to_vec();
            rechecksum(&mut b);
            parse(&path, &b, false).map_err(|e| e.to_string()).and_then(|ck| consistent(&ck))
        },
        &names,
    );
}

#[test]
fn llmc_model_mutants_v3_and_v5_are_refused_or_loaded_consistently() {
    let dir = tempfile::tempdir().unwrap();
    let config = small_config();
    let params = gpt2_init(&config, 3);
    let v3 = dir.path().join("v3.bin");
    save_llmc(&v3, &config, &params).unwrap();
    let v3 = std::fs::read(&v3).unwrap();
    // version 5: the same header with 5, then the bf16 top halves
    let mut v5 = v3[..HEADER_BYTES].to_vec();
    v5[4..8].copy_from_slice(&5i32.to_le_bytes());
    for p in &params {
        v5.extend_from_slice(&((p.to_bits() >> 16) as u16).to_le_bytes());
    }
    let path = dir.path().join("mutant.bin");
    let kind = Kind::Binary { header_ints: 8 };
    let load = |b: &[u8]| parse(&path, b, false).map_err(|e| e.to_string()).and_then(|ck| consistent(&ck));
    fuzz("llm.c model v3 (fp32)", &v3, kind, 4, CASES, load, names_file(&path));
    fuzz("llm.c model v5 (bf16)", &v5, kind, 5, CASES, load, names_file(&path));
}

#[test]
fn token_shard_mutants_are_refused_or_read_in_range() {
    let dir = tempfile::tempdir().unwrap();
    let vocab = 60;
    let mut rng = Rng::new(8);
    let tokens: Vec<u16> = (0..700).map(|_| rng.below(vocab) as u16).collect();
    let valid_path = dir.path().join("valid.bin");
    write_shard(&valid_path, &tokens).unwrap();
    let valid = std::fs::read(&valid_path).unwrap();
    let path = dir.path().join("mutant_000000.bin");
    let (b, t) = (4, 16);
    fuzz(
        "token shard",
        &valid,
        Kind::Binary { header_ints: 3 },
        6,
        CASES,
        |bytes| {
            std::fs::write(&path, bytes).unwrap();
            let shard = Shard::open(&path, vocab).map_err(|e| e.to_string())?;
            if (0..shard.num_tokens).any(|i| shard.token(i) as usize >= vocab) {
                return Err("accepted a token outside the vocabulary".into());
            }
            // an accepted shard must also feed the loader: every batch in range
            let mut loader =
                DataLoader::new(&path.display().to_string(), b, t, vocab, true, 3).map_err(|e| e.to_string())?;
            let (mut inputs, mut targets) = (vec![0; b * t], vec![0; b * t]);
            for _ in 0..loader.batches_per_epoch() + 1 {
                loader.next_batch(&mut inputs, &mut targets);
            }
            match inputs.iter().chain(&targets).all(|&x| (x as usize) < vocab) {
                true => Ok(()),
                false => Err("the loader produced a token outside the vocabulary".into()),
            }
        },
        names_file(&path),
    );
}

/// A small but complete GPT-2 style vocabulary: the 256 byte tokens, a few merges, `<|endoftext|>`.
fn small_vocabulary() -> (String, String) {
    let map = bytes_to_unicode();
    let mut tokens: Vec<String> = map.iter().map(|c| c.to_string()).collect();
    let mut merges = vec!["#version: 0.2".to_string()];
    for (l, r) in [("Ġ", "t"), ("h", "e"), ("Ġt", "he"), ("i", "n"), ("Ġ", "a"), ("e", "r"), ("o", "n"), ("Ġ", "w")]
    {
        merges.push(format!("{l} {r}"));
        tokens.push(format!("{l}{r}"));
    }
    tokens.push("<|endoftext|>".to_string());
    let json: serde_json::Map<String, serde_json::Value> =
        tokens.iter().enumerate().map(|(i, t)| (t.clone(), serde_json::json!(i))).collect();
    (serde_json::Value::Object(json).to_string(), merges.join("\n") + "\n")
}

#[test]
fn tokenizer_vocabulary_mutants_are_refused_or_load_a_working_tokenizer() {
    let (encoder, merges) = small_vocabulary();
    // a loaded tokenizer must round-trip text through encode and decode
    let works = |tok: Tokenizer| -> Result<(), String> {
        let text = "the weather in the north, 1234!";
        let ids = tok.encode(text);
        let back = tok.decode_bytes(&ids).map_err(|e| format!("accepted, but decode fails: {e}"))?;
        match back == text.as_bytes() {
            true => Ok(()),
            false => Err(format!("accepted, but {text:?} comes back as {:?}", String::from_utf8_lossy(&back))),
        }
    };
    // a mutant of one file may show as an error in the other (a merge of a token no longer there)
    let named =
        |_: &'static str| |m: &str| (m.starts_with("encoder.json") || m.starts_with("vocab.bpe")) && m.len() > 24;
    fuzz(
        "tokenizer encoder.json",
        encoder.as_bytes(),
        Kind::Text,
        7,
        CASES,
        |b| {
            let text = std::str::from_utf8(b).map_err(|e| format!("encoder.json: not UTF-8: {e}"))?;
            Tokenizer::from_strs(text, "encoder.json", &merges, "vocab.bpe").map_err(|e| e.to_string()).and_then(works)
        },
        named("encoder.json"),
    );
    fuzz(
        "tokenizer vocab.bpe",
        merges.as_bytes(),
        Kind::Text,
        8,
        CASES,
        |b| {
            let text = std::str::from_utf8(b).map_err(|e| format!("vocab.bpe: not UTF-8: {e}"))?;
            Tokenizer::from_strs(&encoder, "encoder.json", text, "vocab.bpe").map_err(|e| e.to_string()).and_then(works)
        },
        named("vocab.bpe"),
    );
}

#[test]
fn tokenize_decode_input_mutants_are_refused_or_decode() {
    let tok = Tokenizer::gpt2();
    let valid = "15496 995 198\n464 2068 7586 21831\t318 257 1332 13\n\n50256 0 50255\n";
    fuzz(
        "tokenize --decode input",
        valid.as_bytes(),
        Kind::Text,
        9,
        CASES,
        |b| {
            let text = utf8("ids.txt", b.to_vec()).map_err(|e| e.to_string())?;
            let ids = parse_ids("ids.txt", &text, tok.vocab_size()).map_err(|e| e.to_string())?;
            // parse_ids promises that decoding cannot fail
            tok.decode_bytes(&ids).map(drop).map_err(|e| format!("accepted ids that do not decode: {e}"))
        },
        |m| m.starts_with("ids.txt:") && m.len() > 20,
    );
}

#[test]
fn prepare_input_mutants_text_and_jsonl_are_refused_or_read() {
    let dir = tempfile::tempdir().unwrap();
    let text =
        "First Citizen:\nBefore we proceed any further, hear me speak.\n\nAll:\nSpeak, speak. caf\u{e9} \u{1F600}\n";
    let mut jsonl = String::new();
    for (i, line) in text.lines().enumerate() {
        jsonl.push_str(&serde_json::json!({"id": i, "text": line, "meta": {"n": [1, 2.5, null, true]}}).to_string());
        jsonl.push('\n');
    }
    for (name, valid) in [("prepare input .txt", text.to_string()), ("prepare input .jsonl", jsonl)] {
        let file = if name.ends_with("jsonl") { "mutant.jsonl" } else { "mutant.txt" };
        let path = dir.path().join(file);
        fuzz(
            name,
            valid.as_bytes(),
            Kind::Text,
            10,
            CASES,
            |b| {
                let path = scratch(dir.path(), file, b);
                let mut documents = 0;
                Input::File(path)
                    .for_each_document(|doc| {
                        documents += 1;
                        assert!(doc.len() <= b.len(), "a document longer than its file");
                        Ok(())
                    })
                    .map_err(|e| e.to_string())?;
                match documents {
                    0 => Err("accepted a file with no documents".into()),
                    _ => Ok(()),
                }
            },
            names_file(&path),
        );
    }
}

#[test]
fn the_allocation_meter_sees_one_large_allocation() {
    // the check the harness relies on must be able to fail
    let (_, largest) = metered(|| std::hint::black_box(vec![1u8; 10 << 20]).len());
    assert!(largest >= 10 << 20, "the meter saw {largest} bytes");
    let (_, small) = metered(|| std::hint::black_box(vec![1u8; 100]).len());
    assert!(small < 1000, "the meter saw {small} bytes");
}

#[test]
#[should_panic(expected = "seed 11 case")]
fn the_harness_turns_a_parser_panic_into_a_failure_naming_the_seed_and_case() {
    // a "parser" that indexes past the end of a truncated input, as a careless one would
    let valid = vec![7u8; 2048];
    fuzz(
        "careless",
        &valid,
        Kind::Binary { header_ints: 4 },
        11,
        500,
        |b| {
            std::hint::black_box(b[2047]);
            Ok(())
        },
        |_| true,
    );
}

#[test]
#[should_panic(expected = "more than the bound")]
fn the_harness_fails_a_parser_that_allocates_what_a_header_claims() {
    // a "parser" that trusts the first int of the header as a size
    let mut valid = vec![0u8; 2048];
    valid[..4].copy_from_slice(&16i32.to_le_bytes());
    fuzz(
        "trusting",
        &valid,
        Kind::Binary { header_ints: 1 },
        12,
        500,
        |b| {
            let n = i32::from_le_bytes(b.get(..4).ok_or("short")?.try_into().unwrap());
            let n = usize::try_from(n).map_err(|_| "negative")?.min(1 << 24);
            std::hint::black_box(vec![0u8; n]);
            Ok(())
        },
        |_| true,
    );
}

#[test]
fn the_mutations_are_seeded_and_varied() {
    // the same (seed, case) is the same mutant, so a printed failure can be replayed
    let valid: Vec<u8> = (0..2048).map(|i| i as u8).collect();
    let kind = Kind::Binary { header_ints: 8 };
    let mut kinds = std::collections::BTreeSet::new();
    for case in 0..500 {
        let (a, m) = mutant(&valid, kind, 42, case);
        let (b, _) = mutant(&valid, kind, 42, case);
        assert_eq!(a, b);
        kinds.insert(format!("{m:?}").split(['(', ' ']).next().unwrap().to_string());
    }
    assert_eq!(kinds.len(), 5, "binary mutants cover every kind: {kinds:?}");
}

#[test]
fn a_header_claiming_2_to_the_40_tokens_or_a_huge_model_is_refused_without_allocating_it() {
    let dir = tempfile::tempdir().unwrap();
    // the token count is an int32 in llm.c's header: the most it can claim is 2^31-1 (4 GiB of tokens)
    let shard = scratch(dir.path(), "huge.bin", &gpt2::files::header_bytes(&[20240520, 1, i32::MAX]));
    let (result, largest) = metered(|| Shard::open(&shard, 50257).map(drop));
    let message = result.unwrap_err().to_string();
    assert!(message.contains("truncated") && message.contains("2147483647 tokens"), "{message}");
    assert!(largest < 1 << 20, "allocated {largest} bytes");
    // a model of 2^36 parameters (256 GiB of f32s) and a checkpoint of 2^34 claimed in a 1 KiB file
    for h in [[20240326, 3, 1024, 50257, 1 << 20, 16, 2048, 50304], [20261127, 2, 1024, 50257, 4096, 16, 1024, 50304]] {
        let bytes = gpt2::files::header_bytes(&h);
        let (result, largest) = metered(|| parse(&shard, &bytes, true).map(drop));
        let message = result.unwrap_err().to_string();
        println!("{message}");
        assert!(message.contains("too large") || message.contains("truncated"), "{message}");
        assert!(largest < 1 << 20, "allocated {largest} bytes for a header of a huge model");
    }
}

// ---- structured JSON mutations ----

/// Every node of a JSON value, as a JSON pointer ("" is the root).
fn json_pointers(value: &serde_json::Value, at: String, out: &mut Vec<String>) {
    match value {
        serde_json::Value::Object(map) => {
            for (k, v) in map {
                json_pointers(v, format!("{at}/{}", k.replace('~', "~0").replace('/', "~1")), out);
            }
        }
        serde_json::Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                json_pointers(v, format!("{at}/{i}"), out);
            }
        }
        _ => {}
    }
    out.push(at);
}

/// A value a JSON field is set to: wrong types, extreme and nearby numbers, deep nesting, long strings.
fn interesting_json(rng: &mut Rng, current: &serde_json::Value) -> serde_json::Value {
    use serde_json::json;
    let near = current.as_u64().map(|n| {
        let deltas = [n.wrapping_sub(1), n.wrapping_add(1), n.wrapping_mul(2), n.wrapping_mul(1000), n / 2, 0];
        json!(deltas[rng.below(deltas.len())])
    });
    match rng.below(26) {
        0 => json!(0),
        1 => json!(-1),
        2 => json!(1),
        3 => json!(u64::MAX),
        4 => json!(i64::MIN),
        5 => json!(1u64 << 32),
        6 => json!(1u64 << 40),
        7 => json!(1e300),
        8 => json!(0.5),
        9 => json!(-0.0),
        10 => json!("F32"),
        11 => json!(["BF16", "I64", "F64", "U8", "BOOL", "F8_E4M3", "x"][rng.below(7)]),
        12 => json!(""),
        13 => serde_json::Value::Null,
        14 => json!(true),
        15 => json!([]),
        16 => json!([0, u64::MAX]),
        17 => json!([1u64 << 32, 1u64 << 32, 1u64 << 32]),
        18 => json!({}),
        19 => {
            // deeper than serde_json's recursion limit (128) or just under it
            let depth = if rng.below(2) == 0 { 100 } else { 5000 };
            (0..depth).fold(json!(1), |inner, _| json!([inner]))
        }
        20 => json!("a".repeat(200)),
        21 => json!((0..1000).collect::<Vec<u32>>()),
        22 => json!(1e-300),
        _ => near.unwrap_or(json!(i64::MAX)),
    }
}

/// Mutant `case` of a JSON document for `seed`: one to three of its nodes set to an interesting value,
/// removed, or given an unknown sibling. Returns the value and what was changed.
fn json_mutant(valid: &serde_json::Value, seed: u64, case: usize) -> (serde_json::Value, String) {
    let mut rng = Rng::new(seed ^ 0xD1B5_4A32_D192_ED03 ^ (case as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let mut value = valid.clone();
    let mut what = Vec::new();
    for _ in 0..1 + rng.below(3) {
        let mut pointers = Vec::new();
        json_pointers(&value, String::new(), &mut pointers);
        let at = pointers[rng.below(pointers.len())].clone();
        let (parent, key) = at.rsplit_once('/').map_or((None, None), |(p, k)| (Some(p.to_string()), Some(k)));
        match rng.below(10) {
            0 if key.is_some() => {
                let parent = value.pointer_mut(parent.as_deref().unwrap()).unwrap();
                let key = key.unwrap().replace("~1", "/").replace("~0", "~");
                match parent {
                    serde_json::Value::Object(map) => drop(map.remove(&key)),
                    serde_json::Value::Array(items) => drop(items.remove(key.parse::<usize>().unwrap())),
                    _ => unreachable!(),
                }
                what.push(format!("removed {at}"));
            }
            1 => {
                if let Some(serde_json::Value::Object(map)) = value.pointer_mut(&at) {
                    map.insert("zz_unknown".into(), serde_json::json!(1));
                    what.push(format!("{at}/zz_unknown added"));
                } else if let Some(serde_json::Value::Array(items)) = value.pointer_mut(&at) {
                    let copy = items.first().cloned().unwrap_or(serde_json::json!(0));
                    items.push(copy);
                    what.push(format!("{at}: an item appended"));
                }
            }
            _ => {
                let node = value.pointer_mut(&at).unwrap();
                let new = interesting_json(&mut rng, node);
                let shown: String = new.to_string().chars().take(40).collect();
                what.push(format!("{at} = {shown}"));
                *node = new;
            }
        }
    }
    (value, what.join(", "))
}

// ---- Hugging Face safetensors and config.json ----

/// A tiny GPT-2 with the vocabulary padded as HF imports pad it (to 128).
fn hf_config(channels: usize, num_layers: usize) -> ModelConfig {
    ModelConfig { max_seq_len: 16, vocab_size: 60, padded_vocab_size: 128, num_layers, num_heads: 2, channels }
}

/// An HF model directory's two files for a tiny model (the padding rows zero, as on import).
fn hf_files(dir: &Path, config: &ModelConfig, dtype: gpt2::model::hf::ExportDtype) -> (Vec<u8>, String) {
    let mut params = gpt2_init(config, 4);
    params[config.vocab_size * config.channels..config.padded_vocab_size * config.channels].fill(0.0);
    let out = dir.join("valid_hf");
    gpt2::model::hf::save_dir(&out, config, &params, dtype).unwrap();
    let weights = std::fs::read(out.join("model.safetensors")).unwrap();
    let json = std::fs::read_to_string(out.join("config.json")).unwrap();
    (weights, json)
}

/// Splits a safetensors file into its JSON header and its data; `join` puts them back.
fn safetensors_parts(bytes: &[u8]) -> (serde_json::Value, &[u8]) {
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    (serde_json::from_slice(&bytes[8..8 + n]).unwrap(), &bytes[8 + n..])
}

fn safetensors_join(header: &serde_json::Value, data: &[u8]) -> Vec<u8> {
    let json = header.to_string();
    let mut out = (json.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(json.as_bytes());
    out.extend_from_slice(data);
    out
}

#[test]
fn hf_safetensors_and_config_mutants_are_refused_or_loaded_consistently() {
    let dir = tempfile::tempdir().unwrap();
    let config = hf_config(8, 2);
    let (weights, json) = hf_files(dir.path(), &config, gpt2::model::hf::ExportDtype::F32);
    let model = dir.path().join("mutant_hf");
    std::fs::create_dir_all(&model).unwrap();
    let (weights_path, config_path) = (model.join("model.safetensors"), model.join("config.json"));
    let load = || gpt2::model::load_model(&model).map_err(|e| e.to_string()).and_then(|ck| consistent(&ck));
    // an error names the file it is about
    let names = |m: &str| {
        (m.starts_with(&weights_path.display().to_string()) || m.starts_with(&config_path.display().to_string()))
            && m.len() > weights_path.display().to_string().len() + 10
    };

    std::fs::write(&config_path, &json).unwrap();
    let with_weights = |b: &[u8]| {
        std::fs::write(&weights_path, b).unwrap();
        load()
    };
    fuzz("hf model.safetensors (bytes)", &weights, Kind::Binary { header_ints: 2 }, 20, 400, with_weights, names);
    let (header, data) = safetensors_parts(&weights);
    let make = |case| {
        let (h, what) = json_mutant(&header, 21, case);
        (safetensors_join(&h, data), what)
    };
    fuzz_with("hf model.safetensors (JSON header)", &weights, 21, 300, make, with_weights, names);

    std::fs::write(&weights_path, &weights).unwrap();
    let with_config = |b: &[u8]| {
        std::fs::write(&config_path, b).unwrap();
        load()
    };
    fuzz("hf config.json (bytes)", json.as_bytes(), Kind::Text, 22, 400, with_config, names);
    let value: serde_json::Value = serde_json::from_str(&json).unwrap();
    let make = |case| {
        let (v, what) = json_mutant(&value, 23, case);
        (v.to_string().into_bytes(), what)
    };
    fuzz_with("hf config.json (JSON fields)", json.as_bytes(), 23, 400, make, with_config, names);
}

#[test]
fn hf_bare_safetensors_mutants_are_refused_or_loaded_consistently() {
    // no config.json beside the file: the sizes come from the tensor shapes (C a multiple of 64)
    let dir = tempfile::tempdir().unwrap();
    let config = ModelConfig { num_heads: 1, ..hf_config(64, 1) };
    let (weights, _) = hf_files(dir.path(), &config, gpt2::model::hf::ExportDtype::Bf16);
    let bare = dir.path().join("bare");
    std::fs::create_dir_all(&bare).unwrap();
    let path = bare.join("model.safetensors");
    let load = |b: &[u8]| {
        std::fs::write(&path, b).unwrap();
        gpt2::model::load_model(&path).map_err(|e| e.to_string()).and_then(|ck| consistent(&ck))
    };
    fuzz("hf bare .safetensors (bytes)", &weights, Kind::Binary { header_ints: 2 }, 24, 250, load, names_file(&path));
    let (header, data) = safetensors_parts(&weights);
    let make = |case| {
        let (h, what) = json_mutant(&header, 25, case);
        (safetensors_join(&h, data), what)
    };
    fuzz_with("hf bare .safetensors (JSON header)", &weights, 25, 300, make, load, names_file(&path));
}

// ---- HellaSwag ----

/// An accepted HellaSwag file holds examples of 4 non-empty endings, a label among them, a context.
fn hellaswag_sound(examples: &[gpt2::hellaswag::Example]) -> Result<(), String> {
    let ok = !examples.is_empty()
        && examples.iter().all(|e| {
            e.endings.len() == 4 && e.label < 4 && !e.context.is_empty() && e.endings.iter().all(|x| !x.is_empty())
        });
    ok.then_some(()).ok_or_else(|| "accepted an example without a context, 4 endings and a label".into())
}

#[test]
fn hellaswag_jsonl_and_bin_mutants_are_refused_or_read() {
    let dir = tempfile::tempdir().unwrap();
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/hellaswag");
    let jsonl = std::fs::read(fixtures.join("hellaswag_small.jsonl")).unwrap();
    let bin = std::fs::read(fixtures.join("hellaswag_small.bin")).unwrap();
    let tok = Tokenizer::gpt2();
    let path = dir.path().join("mutant_hellaswag");
    let jsonl_parse = |b: &[u8]| {
        let examples = gpt2::hellaswag::parse_jsonl(&path, b, &tok).map_err(|e| e.to_string())?;
        hellaswag_sound(&examples)
    };
    fuzz("hellaswag .jsonl (bytes)", &jsonl, Kind::Text, 30, 400, jsonl_parse, names_file(&path));
    // structured: each line's fields (one line mutated a case)
    let lines: Vec<serde_json::Value> =
        std::str::from_utf8(&jsonl).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let make = |case: usize| {
        let (v, what) = json_mutant(&lines[case % lines.len()], 31, case);
        let mut text = String::new();
        for (i, line) in lines.iter().enumerate() {
            text += &if i == case % lines.len() { v.to_string() } else { line.to_string() };
            text.push('\n');
        }
        (text.into_bytes(), format!("line {}: {what}", case % lines.len() + 1))
    };
    fuzz_with("hellaswag .jsonl (JSON fields)", &jsonl, 31, 300, make, jsonl_parse, names_file(&path));
    let bin_parse = |b: &[u8]| {
        let examples = gpt2::hellaswag::parse_bin(&path, b).map_err(|e| e.to_string())?;
        hellaswag_sound(&examples)
    };
    fuzz("hellaswag .bin", &bin, Kind::Binary { header_ints: 4 }, 32, 600, bin_parse, names_file(&path));
}

// ---- parquet input for `prepare` ----

/// A small FineWeb-like parquet file: columns id, text, token_count; two row groups.
fn parquet_bytes(dir: &Path, compression: parquet::basic::Compression) -> Vec<u8> {
    let docs: Vec<String> = (0..12)
        .map(|i| format!("Document {i}: the quick brown fox, caf\u{e9} \u{1F600} {}", "ab ".repeat(i)))
        .collect();
    let path = dir.join("valid.parquet");
    parquet_writer::write_parquet(&path, &docs, 6, compression);
    std::fs::read(&path).unwrap()
}

#[test]
fn prepare_input_mutants_parquet_are_refused_or_read() {
    use parquet::basic::{Compression, ZstdLevel};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mutant.parquet");
    let read = |b: &[u8]| {
        std::fs::write(&path, b).unwrap();
        let mut documents = 0;
        Input::File(path.clone())
            .for_each_document(|_| {
                documents += 1;
                Ok(())
            })
            .map_err(|e| format!("{e:#}"))?;
        match documents {
            0 => Err("accepted a file with no documents".into()),
            _ => Ok(()),
        }
    };
    for (name, seed, compression) in [
        ("prepare input .parquet (snappy)", 40, Compression::SNAPPY),
        ("prepare input .parquet (zstd)", 41, Compression::ZSTD(ZstdLevel::default())),
        ("prepare input .parquet (plain)", 42, Compression::UNCOMPRESSED),
    ] {
        let valid = parquet_bytes(dir.path(), compression);
        // the footer (metadata length and magic) and the thrift metadata before it are the header here
        fuzz(name, &valid, Kind::Binary { header_ints: 1 }, seed, 250, read, names_file(&path));
    }
}

// ---- `serve` request bodies ----

#[test]
fn serve_completion_body_mutants_are_refused_or_checked() {
    use gpt2::serve::api::parse_completion;
    let tok = Tokenizer::gpt2();
    let config = ModelConfig {
        max_seq_len: 64,
        vocab_size: 50257,
        padded_vocab_size: 50304,
        num_layers: 1,
        num_heads: 1,
        channels: 8,
    };
    let body = serde_json::json!({
        "model": "gpt2",
        "prompt": "The quick brown fox",
        "max_tokens": 20,
        "temperature": 0.8,
        "top_k": 40,
        "seed": 1234,
        "stop": ["\n\n", "."],
        "stream": false,
        "n": 1,
        "echo": false
    });
    let valid = body.to_string();
    let parse = |b: &[u8]| match parse_completion(b, &config, &tok) {
        Err(e) => Err(format!("{}: {}", e.param.unwrap_or("body"), e.message)),
        Ok(c) => {
            let sound = !c.prompt.is_empty()
                && c.prompt.iter().all(|&t| (t as usize) < config.vocab_size)
                && c.max_tokens >= 1
                && c.prompt.len() + c.max_tokens <= config.max_seq_len
                && (0.0..=2.0).contains(&c.temperature)
                && c.top_k <= config.vocab_size
                && c.stop.len() <= 4
                && c.stop.iter().all(|s| !s.is_empty());
            sound.then_some(()).ok_or_else(|| format!("accepted a request it cannot serve: {c:?}"))
        }
    };
    let clear = |m: &str| m.len() > 20;
    fuzz("serve /v1/completions body (bytes)", valid.as_bytes(), Kind::Text, 50, 400, parse, clear);
    let make = |case| {
        let (v, what) = json_mutant(&body, 51, case);
        (v.to_string().into_bytes(), what)
    };
    fuzz_with("serve /v1/completions body (JSON)", valid.as_bytes(), 51, 300, make, parse, clear);
}
