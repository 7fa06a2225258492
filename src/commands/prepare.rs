//! `prepare`: turns text into llm.c token shards, the files `train` reads.
//!
//! Input: plain text files (each file is one document) and `.jsonl` files (one JSON object per line,
//! its "text" field is one document; blank lines are skipped). Every document becomes
//! `<|endoftext|>` followed by its GPT-2 tokens, and the documents are laid end to end:
//!
//! ```text
//! [EOT] doc 1 tokens [EOT] doc 2 tokens [EOT] ...
//! |<- first --val-tokens -->|<- train shards of --shard-tokens each ... ->|
//! ```
//!
//! The first `--val-tokens` tokens go to `val_000000.bin` and the rest to `train_000000.bin`,
//! `train_000001.bin`, ... The cuts are exact token counts, as llm.c's scripts do: a document can
//! start in the validation shard and end in the first training shard, or span two training shards.
//! The output also gets `tokenizer.bin` (llm.c's tokenizer file), so llm.c can print our samples.
//! A run writes its files into `DIR/.prepare-partial/` and, once all of them are complete, removes the
//! shards of an earlier run from DIR and moves its own in. So `DIR/train_*.bin` always means the shards
//! of one run, and a run that fails (bad input, a full disk) leaves DIR as it was.
//!
//! Shard format (llm.c, see DESIGN.md): a header of 256 little-endian i32, `[0]` = 20240520,
//! `[1]` = 1, `[2]` = number of tokens; then the tokens as little-endian u16.
//! `src/data.rs` is the reader of these files.
//!
//! Encoding runs on all cores: documents (and long documents cut where GPT-2's split cuts anyway) are
//! encoded in parallel with rayon, then written in order. Every file is written atomically.
//!
//! `default_training_data` prepares the Shakespeare text shipped in data/shakespeare (embedded in the
//! binary) once into a cache directory, for `train` run without data flags.

use std::borrow::Cow;
use std::io::{BufRead, BufReader, IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context};
use rayon::prelude::*;

use crate::data::write_shard;
use crate::tokenizer::{split_for_parallel, Tokenizer};

/// Arguments of `prepare`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Input files: text files (each file is one document) and .jsonl files (one JSON object a line, its
    /// "text" field one document).
    #[arg(long, short, required = true, num_args = 1..)]
    pub input: Vec<PathBuf>,
    /// Output directory for val_000000.bin, train_NNNNNN.bin and tokenizer.bin (created if missing).
    #[arg(long, short)]
    pub out: PathBuf,
    /// Tokens for the validation shard: the first N tokens of the input (0: no validation shard).
    #[arg(long, default_value_t = 32_768)]
    pub val_tokens: usize,
    /// Most tokens in one training shard.
    #[arg(long, default_value_t = 100_000_000)]
    pub shard_tokens: usize,
}

pub fn run(args: &Args) -> anyhow::Result<()> {
    let inputs: Vec<Input> = args.input.iter().cloned().map(Input::File).collect();
    let options = Options { val_tokens: args.val_tokens, shard_tokens: args.shard_tokens, progress: true };
    let summary = prepare(&inputs, &args.out, &options)?;
    println!(
        "prepared {} documents, {} tokens ({} validation, {} training in {} shard{}) in {} in {:.1} s ({:.1} MB/s)",
        summary.documents,
        summary.tokens,
        summary.val_tokens,
        summary.tokens - summary.val_tokens,
        summary.train_shards,
        if summary.train_shards == 1 { "" } else { "s" },
        args.out.display(),
        summary.seconds,
        summary.text_bytes as f64 / 1e6 / summary.seconds.max(1e-9),
    );
    Ok(())
}

/// Where documents come from.
pub enum Input {
    /// A file on disk: `.jsonl` (one document per line) or text (one document).
    File(PathBuf),
    /// A text compiled into the binary: (name for messages, the document).
    Embedded(&'static str, &'static str),
}

impl Input {
    /// Size in bytes, for the progress line (0 if unknown).
    fn size(&self) -> u64 {
        match self {
            Input::File(path) => std::fs::metadata(path).map_or(0, |m| m.len()),
            Input::Embedded(_, text) => text.len() as u64,
        }
    }

    /// Calls `each` with every document of this input, in order. A .jsonl file is read a line at a
    /// time, so a file larger than memory is fine.
    fn for_each_document(&self, mut each: impl FnMut(Cow<'static, str>) -> anyhow::Result<()>) -> anyhow::Result<()> {
        let path = match self {
            Input::Embedded(_, text) => return each(Cow::Borrowed(*text)),
            Input::File(path) => path,
        };
        let name = path.display();
        let file = std::fs::File::open(path).with_context(|| format!("{name}: cannot read the file"))?;
        if file.metadata().is_ok_and(|m| m.len() == 0) {
            bail!("{name}: the file is empty");
        }
        let mut reader = BufReader::with_capacity(1 << 20, file);
        let is_jsonl = path.extension().is_some_and(|e| e == "jsonl");
        if !is_jsonl {
            // A text file is one document.
            let mut bytes = Vec::new();
            reader.read_to_end(&mut bytes).with_context(|| format!("{name}: cannot read the file"))?;
            let text = String::from_utf8(bytes).map_err(|e| {
                let offset = e.utf8_error().valid_up_to();
                let line = e.as_bytes()[..offset].iter().filter(|&&b| b == b'\n').count() + 1;
                anyhow::anyhow!("{name}:{line}: invalid UTF-8 at byte offset {offset} (line {line})")
            })?;
            return each(Cow::Owned(text));
        }

        // JSON Lines: one object per line, its "text" field is a document; blank lines are skipped.
        let mut line = Vec::new();
        let (mut line_no, mut offset, mut documents) = (0, 0, 0);
        loop {
            line.clear();
            let n = reader.read_until(b'\n', &mut line).with_context(|| format!("{name}: cannot read the file"))?;
            if n == 0 {
                break;
            }
            line_no += 1;
            let text = std::str::from_utf8(&line).map_err(|e| {
                let at = offset + e.valid_up_to();
                anyhow::anyhow!("{name}:{line_no}: invalid UTF-8 at byte offset {at} (line {line_no})")
            })?;
            offset += n;
            if text.trim().is_empty() {
                continue;
            }
            let value: serde_json::Value = serde_json::from_str(text).map_err(|e| {
                // serde_json's message ends "at line 1 column N"; its line is always 1 here, so keep the column.
                let message = e.to_string();
                let position = format!(" at line {} column {}", e.line(), e.column());
                let message = message.strip_suffix(&position).unwrap_or(&message);
                anyhow::anyhow!("{name}:{line_no}: not valid JSON (column {}): {message}", e.column())
            })?;
            let mut object = match value {
                serde_json::Value::Object(object) => object,
                other => bail!(
                    "{name}:{line_no}: the line is not a JSON object but {}: expected one object a line, like \
                     {{\"text\": \"...\"}}",
                    json_kind(&other)
                ),
            };
            match object.remove("text") {
                Some(serde_json::Value::String(s)) => each(Cow::Owned(s))?,
                Some(other) => bail!("{name}:{line_no}: the \"text\" field is not a string but {}", json_kind(&other)),
                None => bail!("{name}:{line_no}: the JSON object has no \"text\" field"),
            }
            documents += 1;
        }
        if documents == 0 {
            bail!("{name}: no documents (every line is blank)");
        }
        Ok(())
    }
}

/// What kind of JSON value this is, for messages: "an array", "a number", ...
fn json_kind(value: &serde_json::Value) -> &'static str {
    match value {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

/// How to cut the token stream, and whether to show progress on stderr.
pub struct Options {
    pub val_tokens: usize,
    pub shard_tokens: usize,
    pub progress: bool,
}

/// What `prepare` did.
#[derive(Debug, Clone)]
pub struct Summary {
    pub documents: usize,
    /// All tokens written, EOTs included.
    pub tokens: usize,
    pub val_tokens: usize,
    pub train_shards: usize,
    /// Every file written, in order: val (if any), train shards, tokenizer.bin.
    pub files: Vec<PathBuf>,
    /// Bytes of input text, and the time it took.
    pub text_bytes: u64,
    pub seconds: f64,
}

/// The directory inside `out` that a run writes its files into before moving them into `out`. Hidden,
/// and a subdirectory, so `out/train_*.bin` never matches a file in it. Its name is fixed, so that the
/// next run clears what an interrupted one left; two runs into one directory at once would share it.
const STAGING_DIR: &str = ".prepare-partial";

/// Tokenizes `inputs` into shards in `out` (see the module comment). The files are written into
/// `out/.prepare-partial/` and moved into `out` only once all of them are complete, so a run that fails
/// leaves `out` as it was.
pub fn prepare(inputs: &[Input], out: &Path, options: &Options) -> anyhow::Result<Summary> {
    if options.shard_tokens == 0 || options.shard_tokens > i32::MAX as usize {
        bail!("--shard-tokens must be between 1 and {}, found {}", i32::MAX, options.shard_tokens);
    }
    if options.val_tokens > i32::MAX as usize {
        bail!("--val-tokens must be at most {}, found {}", i32::MAX, options.val_tokens);
    }
    std::fs::create_dir_all(out).with_context(|| format!("{}: cannot create the output directory", out.display()))?;
    let staging = out.join(STAGING_DIR);
    // A staging directory already there is what an interrupted run (Ctrl-C, a crash) left behind.
    remove_dir_if_there(&staging)?;
    std::fs::create_dir(&staging).with_context(|| format!("{}: cannot create the directory", staging.display()))?;

    let start = Instant::now();
    let written = write_files(inputs, &staging, options, start).and_then(|summary| {
        let files = move_into_place(&summary.files, out)?;
        Ok(Summary { files, seconds: start.elapsed().as_secs_f64(), ..summary })
    });
    if written.is_err() {
        // Already failing: the first error is the one to report.
        let _ = std::fs::remove_dir_all(&staging);
    } else {
        std::fs::remove_dir(&staging).with_context(|| format!("{}: cannot remove the directory", staging.display()))?;
    }
    written
}

/// Encodes `inputs` into shards and `tokenizer.bin` in `dir`; the summary lists the files in `dir`.
fn write_files(inputs: &[Input], dir: &Path, options: &Options, start: Instant) -> anyhow::Result<Summary> {
    let tok = Tokenizer::gpt2();
    // Token ids are stored as u16.
    assert!(tok.vocab_size() <= 1 << 16, "GPT-2's vocabulary fits in u16");
    let total_bytes: u64 = inputs.iter().map(Input::size).sum();
    let progress = Progress { enabled: options.progress, tty: std::io::stderr().is_terminal(), total_bytes, start };
    let shards = ShardSink::new(dir, options.val_tokens, options.shard_tokens);
    let mut batch =
        Batch { tok: &tok, pending: Vec::new(), pending_bytes: 0, shards, documents: 0, text_bytes: 0, progress };
    for input in inputs {
        input.for_each_document(|doc| batch.add(doc))?;
    }
    batch.flush()?;
    let Batch { shards, documents, text_bytes, mut progress, .. } = batch;
    progress.done();
    let tokens = shards.tokens;
    if tokens == 0 {
        bail!("no text in the input files");
    }
    let (val_tokens, train_shards, mut files) = shards.finish()?;
    let tokenizer_path = dir.join("tokenizer.bin");
    tok.write_llmc_tokenizer(&tokenizer_path)?;
    files.push(tokenizer_path);
    let seconds = start.elapsed().as_secs_f64();
    Ok(Summary { documents, tokens, val_tokens, train_shards, files, text_bytes, seconds })
}

/// Moves the finished `files` into `out`; returns their new paths. First it removes every shard of an
/// earlier run (`train_NNNNNN.bin`, `val_NNNNNN.bin`), so that a glob like `out/train_*.bin` sees only
/// this run's shards: even if this is interrupted, `out` never holds a mix of old and new shards. Other
/// files in `out` are left alone. Each move is a rename within one file system, so it is quick.
fn move_into_place(files: &[PathBuf], out: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let is_shard_name = |name: &str| {
        let stem = name.strip_suffix(".bin").and_then(|n| n.strip_prefix("train_").or_else(|| n.strip_prefix("val_")));
        stem.is_some_and(|digits| digits.len() == 6 && digits.bytes().all(|b| b.is_ascii_digit()))
    };
    let entries = std::fs::read_dir(out).with_context(|| format!("{}: cannot list the directory", out.display()))?;
    for entry in entries.flatten() {
        let path = entry.path();
        if is_shard_name(&entry.file_name().to_string_lossy()) {
            std::fs::remove_file(&path).with_context(|| format!("{}: cannot remove an old shard", path.display()))?;
        }
    }
    let mut moved = Vec::with_capacity(files.len());
    for file in files {
        let name = file.file_name().with_context(|| format!("{}: not a file name", file.display()))?;
        let target = out.join(name);
        std::fs::rename(file, &target)
            .with_context(|| format!("cannot move {} to {}", file.display(), target.display()))?;
        moved.push(target);
    }
    Ok(moved)
}

/// Removes the directory `dir` and everything in it, if it is there.
fn remove_dir_if_there(dir: &Path) -> anyhow::Result<()> {
    match std::fs::remove_dir_all(dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(e).with_context(|| format!("{}: cannot remove what an earlier run left", dir.display()))
        }
        _ => Ok(()),
    }
}

/// Documents wait in `pending` until there are about 64 MiB of them, then are encoded together in
/// parallel: many small files and one huge document both keep every core busy, and memory stays bounded.
struct Batch<'t> {
    tok: &'t Tokenizer,
    pending: Vec<Cow<'static, str>>,
    pending_bytes: usize,
    shards: ShardSink,
    documents: usize,
    text_bytes: u64,
    progress: Progress,
}

impl Batch<'_> {
    fn add(&mut self, doc: Cow<'static, str>) -> anyhow::Result<()> {
        self.pending_bytes += doc.len();
        self.pending.push(doc);
        if self.pending_bytes >= 64 << 20 {
            self.flush()?;
        }
        Ok(())
    }

    /// Encodes the pending documents on all cores and hands their tokens, in order, to the shards.
    fn flush(&mut self) -> anyhow::Result<()> {
        // Work items: (is the start of a document, a chunk of text). Long documents are cut into chunks
        // of about 1 MiB where GPT-2's split cuts anyway (`split_for_parallel`).
        let mut items: Vec<(bool, &str)> = Vec::new();
        for doc in &self.pending {
            for (j, chunk) in split_for_parallel(doc, 1 << 20).into_iter().enumerate() {
                items.push((j == 0, chunk));
            }
        }
        let tok = self.tok;
        let encoded: Vec<Vec<u32>> = items.par_iter().map(|(_, text)| tok.encode(text)).collect();
        for ((doc_start, _), ids) in items.iter().zip(&encoded) {
            if *doc_start {
                self.shards.push(tok.eot_token() as u16)?;
                self.documents += 1;
            }
            for &id in ids {
                self.shards.push(id as u16)?;
            }
        }
        self.text_bytes += self.pending_bytes as u64;
        self.progress.show(self.text_bytes, self.shards.tokens);
        self.pending.clear();
        self.pending_bytes = 0;
        Ok(())
    }
}

/// Collects tokens and writes them out as they fill shards: first the validation shard, then
/// training shards of `shard_tokens` each.
struct ShardSink {
    out: PathBuf,
    val_target: usize,
    shard_tokens: usize,
    /// Tokens of the validation shard (written once it is full, or at the end).
    val: Vec<u16>,
    val_written: bool,
    /// Tokens of the training shard being filled.
    train: Vec<u16>,
    train_shards: usize,
    /// All tokens pushed so far.
    tokens: usize,
    files: Vec<PathBuf>,
}

impl ShardSink {
    fn new(out: &Path, val_target: usize, shard_tokens: usize) -> Self {
        ShardSink {
            out: out.to_path_buf(),
            val_target,
            shard_tokens,
            val: Vec::with_capacity(val_target.min(1 << 24)),
            val_written: false,
            train: Vec::new(),
            train_shards: 0,
            tokens: 0,
            files: Vec::new(),
        }
    }

    fn push(&mut self, token: u16) -> anyhow::Result<()> {
        self.tokens += 1;
        if self.val.len() < self.val_target {
            self.val.push(token);
            if self.val.len() == self.val_target {
                self.write_val()?;
            }
        } else {
            self.train.push(token);
            if self.train.len() == self.shard_tokens {
                self.write_train()?;
            }
        }
        Ok(())
    }

    fn write_val(&mut self) -> anyhow::Result<()> {
        let path = self.out.join("val_000000.bin");
        write_shard(&path, &self.val)?;
        self.files.push(path);
        self.val_written = true;
        Ok(())
    }

    fn write_train(&mut self) -> anyhow::Result<()> {
        let path = self.out.join(format!("train_{:06}.bin", self.train_shards));
        write_shard(&path, &self.train)?;
        self.files.push(path);
        self.train.clear();
        self.train_shards += 1;
        Ok(())
    }

    /// Writes what is left; returns (validation tokens, training shards, files written).
    fn finish(mut self) -> anyhow::Result<(usize, usize, Vec<PathBuf>)> {
        if self.train_shards == 0 && self.train.is_empty() {
            bail!(
                "all {} tokens would go to the validation shard (--val-tokens {}), leaving none for training: \
                 give more text or a smaller --val-tokens",
                self.tokens,
                self.val_target
            );
        }
        if !self.val_written && !self.val.is_empty() {
            self.write_val()?;
        }
        if !self.train.is_empty() {
            self.write_train()?;
        }
        Ok((self.val.len(), self.train_shards, self.files))
    }
}

/// The progress line on stderr: rewritten in place on a terminal, one line per update otherwise.
struct Progress {
    enabled: bool,
    tty: bool,
    total_bytes: u64,
    start: Instant,
}

impl Progress {
    fn show(&mut self, done_bytes: u64, tokens: usize) {
        if !self.enabled {
            return;
        }
        let seconds = self.start.elapsed().as_secs_f64();
        let percent = 100.0 * done_bytes as f64 / self.total_bytes.max(1) as f64;
        let line = format!(
            "prepare: {:.1} of {:.1} MB ({:.0}%), {} tokens, {:.1} MB/s",
            done_bytes as f64 / 1e6,
            self.total_bytes as f64 / 1e6,
            percent.min(100.0),
            tokens,
            done_bytes as f64 / 1e6 / seconds.max(1e-9)
        );
        if self.tty {
            eprint!("\r{line}   ");
        } else {
            eprintln!("{line}");
        }
    }

    fn done(&mut self) {
        if self.enabled && self.tty {
            eprintln!();
        }
    }
}

/// The shipped Shakespeare text (data/shakespeare, embedded in the binary): (file name, text), one
/// document each, in file-name order.
pub const SHAKESPEARE: [(&str, &str); 42] = [
    ("alls_well_that_ends_well_gut.txt", include_str!("../../data/shakespeare/alls_well_that_ends_well_gut.txt")),
    ("antony_and_cleopatra_gut.txt", include_str!("../../data/shakespeare/antony_and_cleopatra_gut.txt")),
    ("as_you_like_it_gut.txt", include_str!("../../data/shakespeare/as_you_like_it_gut.txt")),
    ("comedy_of_errors_gut.txt", include_str!("../../data/shakespeare/comedy_of_errors_gut.txt")),
    ("coriolanus_gut.txt", include_str!("../../data/shakespeare/coriolanus_gut.txt")),
    ("cymbeline_gut.txt", include_str!("../../data/shakespeare/cymbeline_gut.txt")),
    ("hamlet_gut.txt", include_str!("../../data/shakespeare/hamlet_gut.txt")),
    ("henry_iv_part_1_gut.txt", include_str!("../../data/shakespeare/henry_iv_part_1_gut.txt")),
    ("henry_iv_part_2_gut.txt", include_str!("../../data/shakespeare/henry_iv_part_2_gut.txt")),
    ("henry_v_gut.txt", include_str!("../../data/shakespeare/henry_v_gut.txt")),
    ("henry_vi_part_1_gut.txt", include_str!("../../data/shakespeare/henry_vi_part_1_gut.txt")),
    ("henry_vi_part_2_gut.txt", include_str!("../../data/shakespeare/henry_vi_part_2_gut.txt")),
    ("henry_vi_part_3_gut.txt", include_str!("../../data/shakespeare/henry_vi_part_3_gut.txt")),
    ("henry_viii_gut.txt", include_str!("../../data/shakespeare/henry_viii_gut.txt")),
    ("john_gut.txt", include_str!("../../data/shakespeare/john_gut.txt")),
    ("julius_caesar_gut.txt", include_str!("../../data/shakespeare/julius_caesar_gut.txt")),
    ("lear_gut.txt", include_str!("../../data/shakespeare/lear_gut.txt")),
    ("lovers_complaint_gut.txt", include_str!("../../data/shakespeare/lovers_complaint_gut.txt")),
    ("loves_labours_lost_gut.txt", include_str!("../../data/shakespeare/loves_labours_lost_gut.txt")),
    ("macbeth_gut.txt", include_str!("../../data/shakespeare/macbeth_gut.txt")),
    ("measure_for_measure_gut.txt", include_str!("../../data/shakespeare/measure_for_measure_gut.txt")),
    ("merchant_of_venice_gut.txt", include_str!("../../data/shakespeare/merchant_of_venice_gut.txt")),
    ("merry_wives_of_windsor_gut.txt", include_str!("../../data/shakespeare/merry_wives_of_windsor_gut.txt")),
    ("midsummer_nights_dream_gut.txt", include_str!("../../data/shakespeare/midsummer_nights_dream_gut.txt")),
    ("much_ado_about_nothing_gut.txt", include_str!("../../data/shakespeare/much_ado_about_nothing_gut.txt")),
    ("othello_gut.txt", include_str!("../../data/shakespeare/othello_gut.txt")),
    ("passionate_pilgrim_gut.txt", include_str!("../../data/shakespeare/passionate_pilgrim_gut.txt")),
    ("pericles_gut.txt", include_str!("../../data/shakespeare/pericles_gut.txt")),
    ("phoenix_and_the_turtle_gut.txt", include_str!("../../data/shakespeare/phoenix_and_the_turtle_gut.txt")),
    ("rape_of_lucrece_gut.txt", include_str!("../../data/shakespeare/rape_of_lucrece_gut.txt")),
    ("richard_ii_gut.txt", include_str!("../../data/shakespeare/richard_ii_gut.txt")),
    ("richard_iii_gut.txt", include_str!("../../data/shakespeare/richard_iii_gut.txt")),
    ("romeo_and_juliet_gut.txt", include_str!("../../data/shakespeare/romeo_and_juliet_gut.txt")),
    ("sonnets_gut.txt", include_str!("../../data/shakespeare/sonnets_gut.txt")),
    ("taming_of_the_shrew_gut.txt", include_str!("../../data/shakespeare/taming_of_the_shrew_gut.txt")),
    ("tempest_gut.txt", include_str!("../../data/shakespeare/tempest_gut.txt")),
    ("timon_of_athens_gut.txt", include_str!("../../data/shakespeare/timon_of_athens_gut.txt")),
    ("tragedy_of_titus_andronicus_gut.txt", include_str!("../../data/shakespeare/tragedy_of_titus_andronicus_gut.txt")),
    ("troilus_and_cressida_gut.txt", include_str!("../../data/shakespeare/troilus_and_cressida_gut.txt")),
    ("twelfth_night_gut.txt", include_str!("../../data/shakespeare/twelfth_night_gut.txt")),
    ("two_gentlemen_of_verona_gut.txt", include_str!("../../data/shakespeare/two_gentlemen_of_verona_gut.txt")),
    ("winters_tale_gut.txt", include_str!("../../data/shakespeare/winters_tale_gut.txt")),
];

/// Tokens of the default validation shard: the first 65,536 tokens of the Shakespeare text
/// ("All's Well That Ends Well" and the start of "Antony and Cleopatra"), 128 batches of B=8, T=64.
pub const DEFAULT_VAL_TOKENS: usize = 65_536;

/// Written last into the cache directory; its contents describe the shards, so a cache from an
/// interrupted run or an older version is prepared again.
const CACHE_MARKER: &str = "READY";

/// The shipped Shakespeare text as token shards, for `train` run without data flags: returns
/// (train glob, val glob). On first use it prepares the shards into the cache directory
/// (`$GPT2_CACHE_DIR` if set, else `cache/shakespeare` in the current directory) and prints one line
/// naming it; later calls find the shards there and return at once.
pub fn default_training_data() -> anyhow::Result<(String, String)> {
    let dir = std::env::var_os("GPT2_CACHE_DIR").map_or_else(|| PathBuf::from("cache/shakespeare"), PathBuf::from);
    default_training_data_in(&dir)
}

/// `default_training_data` with the cache directory given.
pub fn default_training_data_in(dir: &Path) -> anyhow::Result<(String, String)> {
    let globs = (dir.join("train_*.bin").display().to_string(), dir.join("val_*.bin").display().to_string());
    let marker = dir.join(CACHE_MARKER);
    if let Ok(contents) = std::fs::read_to_string(&marker) {
        if cache_is_valid(dir, &contents) {
            return Ok(globs);
        }
    }
    // The marker goes first and comes back last, once `prepare` has moved every shard into place: an
    // interrupted run leaves no marker, and the next call prepares again.
    match std::fs::remove_file(&marker) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            return Err(e).with_context(|| format!("{}: cannot remove", marker.display()));
        }
        _ => {}
    }
    let inputs: Vec<Input> = SHAKESPEARE.iter().map(|&(name, text)| Input::Embedded(name, text)).collect();
    let options = Options { val_tokens: DEFAULT_VAL_TOKENS, shard_tokens: 100_000_000, progress: false };
    let summary = prepare(&inputs, dir, &options)?;
    let mut contents = format!("{}\n", cache_key());
    for file in &summary.files {
        let size = std::fs::metadata(file).with_context(|| format!("{}: cannot read back", file.display()))?.len();
        let name = file.file_name().map_or_else(String::new, |n| n.to_string_lossy().into_owned());
        contents.push_str(&format!("{name} {size}\n"));
    }
    crate::atomic_file::write_atomic(&marker, |w| w.write_all(contents.as_bytes()))
        .with_context(|| format!("{}: cannot write", marker.display()))?;
    println!(
        "prepared the default training text (Shakespeare, {} documents, {} tokens) in {}",
        summary.documents,
        summary.tokens,
        dir.display()
    );
    Ok(globs)
}

/// What the cache was made from: the text's size and the split. A change to either remakes it.
fn cache_key() -> String {
    let bytes: usize = SHAKESPEARE.iter().map(|(_, text)| text.len()).sum();
    format!("gpt2 shakespeare cache v1: {} files, {bytes} bytes, val {DEFAULT_VAL_TOKENS} tokens", SHAKESPEARE.len())
}

/// The marker matches `cache_key` and every file it lists is there with its size.
fn cache_is_valid(dir: &Path, marker: &str) -> bool {
    let mut lines = marker.lines();
    if lines.next() != Some(cache_key().as_str()) {
        return false;
    }
    lines.all(|line| match line.split_once(' ') {
        Some((name, size)) => std::fs::metadata(dir.join(name)).is_ok_and(|m| size.parse() == Ok(m.len())),
        None => false,
    })
}
