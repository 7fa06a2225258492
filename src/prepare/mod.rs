//! Data preparation: turns text into llm.c token shards, the files `train` reads. `src/commands/prepare.rs`
//! is its command line; `src/data.rs` reads what it writes.
//!
//! The pieces: `input.rs` reads documents (plain text, `.jsonl`; `parquet.rs` reads FineWeb's `.parquet`), `shards.rs` encodes them on all
//! cores and cuts the token stream into shard files, `shakespeare.rs` is the shipped default text.
//!
//! Input: plain text files (each file is one document) and `.jsonl` files (one JSON object per line,
//! its "text" field is one document; blank lines are skipped) and `.parquet` files (FineWeb's format: one
//! document a row of the `text` column). Every document becomes
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
//! of one run, and a run that fails (bad input, a full disk) leaves DIR as it was. One run at a time
//! per directory: a run locks DIR (`lock_dir`), and a second one is refused while the first works.
//!
//! Shard format (llm.c's; README.md, "Files"): a header of 256 little-endian i32, `[0]` = 20240520,
//! `[1]` = 1, `[2]` = number of tokens; then the tokens as little-endian u16.
//! `src/data.rs` is the reader of these files.
//!
//! Encoding runs on all cores: documents (and long documents cut where GPT-2's split cuts anyway) are
//! encoded in parallel with rayon, then written in order. Every file is written atomically.
//!
//! `default_training_data` prepares the Shakespeare text shipped in data/shakespeare (embedded in the
//! binary) once into a cache directory, for `train` run without data flags.

mod input;
mod parquet;
mod shakespeare;
mod shards;

pub use input::Input;
pub use shakespeare::{
    default_training_data, default_training_data_in, default_training_data_with, DEFAULT_VAL_TOKENS, SHAKESPEARE,
};

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context};

/// How to cut the token stream, and whether to show progress on stderr.
pub struct Options {
    pub val_tokens: usize,
    pub shard_tokens: usize,
    pub progress: bool,
    /// The tokenizer to encode with (`--tokenizer DIR`); None: GPT-2's.
    pub tokenizer: Option<crate::tokenizer::Tokenizer>,
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
/// next run clears what an interrupted one left; the lock on `out` (`lock_dir`) keeps two runs from
/// sharing it.
const STAGING_DIR: &str = ".prepare-partial";
/// In the staging directory: the pid of the run writing it, for the messages of the runs it turns away.
const OWNER_FILE: &str = ".owner";

/// An exclusive lock on an output directory, held while a run writes into it; dropping it unlocks.
/// It is the operating system's advisory lock (`flock`) on the directory itself, so a run that is
/// killed releases it with its other files: a lock is never stale. What a killed run does leave is its
/// staging directory, which the next run notices and removes.
pub struct DirLock {
    _dir: std::fs::File,
}

/// Locks `out` (creating it if needed) for one run of `prepare`. With `wait` false, a directory another
/// run holds is an error naming it; with `wait` true, this waits until that run is done.
pub fn lock_dir(out: &Path, wait: bool) -> anyhow::Result<DirLock> {
    std::fs::create_dir_all(out).with_context(|| format!("{}: cannot create the output directory", out.display()))?;
    let dir = std::fs::File::open(out).with_context(|| format!("{}: cannot open the directory", out.display()))?;
    match dir.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) if wait => {
            eprintln!("waiting for another run that is preparing data in {}", out.display());
            dir.lock().with_context(|| format!("{}: cannot lock the directory", out.display()))?;
        }
        Err(std::fs::TryLockError::WouldBlock) => {
            let owner = std::fs::read_to_string(out.join(STAGING_DIR).join(OWNER_FILE))
                .ok()
                .and_then(|pid| pid.trim().parse::<u32>().ok())
                .map_or(String::new(), |pid| format!(" (pid {pid})"));
            bail!(
                "{}: another `prepare`{owner} is writing into this directory right now: wait for it to finish, \
                 or choose another --out",
                out.display()
            );
        }
        Err(std::fs::TryLockError::Error(e)) => {
            return Err(e).with_context(|| format!("{}: cannot lock the directory", out.display()))
        }
    }
    Ok(DirLock { _dir: dir })
}

/// Tokenizes `inputs` into shards in `out` (see the module comment). The files are written into
/// `out/.prepare-partial/` and moved into `out` only once all of them are complete, so a run that fails
/// leaves `out` as it was. A second run into the same directory while this one works is refused.
pub fn prepare(inputs: &[Input], out: &Path, options: &Options) -> anyhow::Result<Summary> {
    check_options(options)?;
    let lock = lock_dir(out, false)?;
    prepare_locked(inputs, out, options, &lock)
}

fn check_options(options: &Options) -> anyhow::Result<()> {
    if options.shard_tokens == 0 || options.shard_tokens > i32::MAX as usize {
        bail!("--shard-tokens must be between 1 and {}, found {}", i32::MAX, options.shard_tokens);
    }
    if options.val_tokens > i32::MAX as usize {
        bail!("--val-tokens must be at most {}, found {}", i32::MAX, options.val_tokens);
    }
    Ok(())
}

/// `prepare`, for a caller that already holds the lock on `out`.
pub(crate) fn prepare_locked(
    inputs: &[Input],
    out: &Path,
    options: &Options,
    _lock: &DirLock,
) -> anyhow::Result<Summary> {
    check_options(options)?;
    let staging = out.join(STAGING_DIR);
    // A staging directory already there is what an interrupted run (Ctrl-C, a crash, kill -9) left.
    if staging.exists() {
        let owner = std::fs::read_to_string(staging.join(OWNER_FILE)).unwrap_or_default();
        let owner = owner.trim();
        eprintln!(
            "note: removing {}, left by an earlier run{} that was interrupted",
            staging.display(),
            if owner.is_empty() { String::new() } else { format!(" (pid {owner})") }
        );
    }
    remove_dir_if_there(&staging)?;
    std::fs::create_dir(&staging).with_context(|| format!("{}: cannot create the directory", staging.display()))?;
    let owner = staging.join(OWNER_FILE);
    std::fs::write(&owner, format!("{}\n", std::process::id()))
        .with_context(|| format!("{}: cannot write", owner.display()))?;

    let start = Instant::now();
    let written = shards::write_files(inputs, &staging, options, start).and_then(|summary| {
        let files = move_into_place(&summary.files, out)?;
        Ok(Summary { files, seconds: start.elapsed().as_secs_f64(), ..summary })
    });
    if written.is_err() {
        // Already failing: the first error is the one to report.
        let _ = std::fs::remove_dir_all(&staging);
    } else {
        std::fs::remove_file(&owner).with_context(|| format!("{}: cannot remove", owner.display()))?;
        std::fs::remove_dir(&staging).with_context(|| format!("{}: cannot remove the directory", staging.display()))?;
    }
    written
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
