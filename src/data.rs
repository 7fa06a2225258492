//! Token shards (llm.c's format) and the data loader that cuts them into batches.
//!
//! A shard is a 256-int header `[20240520, 1, ntok, 0...]` followed by `ntok` uint16 tokens; the file
//! is memory-mapped, never read whole. A batch is B*T+1 consecutive tokens: inputs are the first
//! B*T, targets the same shifted by one. A shard of n tokens holds (n-1) / (B*T) batches; the
//! loader walks the batches of each shard, then the next shard, and wraps around at the end (a new
//! epoch). With shuffling on, the shard order and the batch order within each shard are seeded
//! permutations that depend only on (seed, epoch, shard), so a position (epoch, shard, batch)
//! is all a checkpoint needs to resume.

use crate::files::{read_header, FileError, HEADER_BYTES};
use crate::rng::Rng;
use byteorder::{ByteOrder, LittleEndian};
use memmap2::Mmap;
use rand::seq::SliceRandom;
use rayon::prelude::*;
use std::path::{Path, PathBuf};

pub const SHARD_MAGIC: i32 = 20240520;
pub const SHARD_VERSION: i32 = 1;

/// Whether a file that should be a token shard is text instead: its first kilobyte (a shard's header,
/// full of zero bytes) is UTF-8 without control characters other than whitespace. A multi-byte
/// character cut at the end of the kilobyte still counts as text.
pub fn looks_like_text(bytes: &[u8]) -> bool {
    let head = &bytes[..bytes.len().min(HEADER_BYTES)];
    let valid = match std::str::from_utf8(head) {
        Ok(text) => text,
        // only an incomplete character at the very end is allowed
        Err(e) if e.error_len().is_none() => std::str::from_utf8(&head[..e.valid_up_to()]).unwrap_or(""),
        Err(_) => return false,
    };
    !valid.is_empty() && valid.chars().all(|c| !c.is_control() || c.is_whitespace())
}

/// One memory-mapped, validated token shard.
pub struct Shard {
    pub path: PathBuf,
    mmap: Mmap,
    pub num_tokens: usize,
}

impl Shard {
    /// Opens a shard and checks its header, its size, and that every token is below `vocab_size`.
    pub fn open(path: &Path, vocab_size: usize) -> Result<Shard, FileError> {
        let file =
            std::fs::File::open(path).map_err(|e| FileError::new(path, format!("cannot open token shard: {e}")))?;
        // SAFETY: the file is mapped read-only; like every reader we assume nobody truncates it while we run.
        let mmap = unsafe { Mmap::map(&file) }.map_err(|e| FileError::new(path, format!("cannot map: {e}")))?;
        if looks_like_text(&mmap) {
            return Err(FileError::new(
                path,
                format!(
                    "this looks like a text file, not a token shard (llm.c's format: a 1024-byte header, then uint16 \
                     token ids). Turn text or .jsonl into shards with\n  cargo run --release -- prepare --input {} \
                     --out shards/\nthen train with --train-data 'shards/train_*.bin' --val-data shards/val_000000.bin",
                    path.display()
                ),
            ));
        }
        let h = read_header(path, &mmap)?;
        if h[0] != SHARD_MAGIC {
            return Err(FileError::new(
                path,
                format!("bad magic number {}: expected {SHARD_MAGIC} (llm.c token shard)", h[0]),
            ));
        }
        if h[1] != SHARD_VERSION {
            return Err(FileError::new(path, format!("unsupported shard version {}: expected {SHARD_VERSION}", h[1])));
        }
        let num_tokens =
            usize::try_from(h[2]).map_err(|_| FileError::new(path, format!("header says {} tokens", h[2])))?;
        let expected = HEADER_BYTES + 2 * num_tokens;
        if mmap.len() != expected {
            let how = if mmap.len() < expected { "truncated" } else { "too long" };
            return Err(FileError::new(
                path,
                format!("{how}: header says {num_tokens} tokens, so {expected} bytes, but the file has {}", mmap.len()),
            ));
        }
        let shard = Shard { path: path.to_path_buf(), mmap, num_tokens };
        // every token must be a row of the embedding table; checked in parallel, a chunk per task
        let tokens = &shard.mmap[HEADER_BYTES..];
        let first_bad = tokens.par_chunks(1 << 20).enumerate().find_map_first(|(chunk, bytes)| {
            let bad = bytes.chunks_exact(2).position(|b| LittleEndian::read_u16(b) as usize >= vocab_size)?;
            Some(chunk * (1 << 19) + bad)
        });
        if let Some(i) = first_bad {
            return Err(FileError::new(
                path,
                format!("token {} at position {i} is out of range for a vocabulary of {vocab_size}", shard.token(i)),
            ));
        }
        Ok(shard)
    }

    /// Token `i` of the shard.
    pub fn token(&self, i: usize) -> u16 {
        LittleEndian::read_u16(&self.mmap[HEADER_BYTES + 2 * i..])
    }

    /// Number of whole batches of B*T (+1 for the last target) this shard holds.
    pub fn num_batches(&self, bt: usize) -> usize {
        self.num_tokens.saturating_sub(1) / bt
    }
}

/// Expands a glob pattern (or a plain path) into a sorted list of files, or says none matched.
pub fn expand_glob(pattern: &str) -> Result<Vec<PathBuf>, FileError> {
    let pat = Path::new(pattern);
    let paths = glob::glob(pattern).map_err(|e| FileError::new(pat, format!("invalid glob pattern: {e}")))?;
    let mut files: Vec<PathBuf> = paths.filter_map(Result::ok).filter(|p| p.is_file()).collect();
    files.sort();
    if files.is_empty() {
        return Err(FileError::new(pat, "no file matches this path or pattern"));
    }
    Ok(files)
}

/// Where the loader is: enough to resume.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Position {
    pub epoch: u32,
    /// Index into this epoch's shard order.
    pub shard: u32,
    /// Index into this shard's batch order.
    pub batch: u32,
}

pub struct DataLoader {
    shards: Vec<Shard>,
    b: usize,
    t: usize,
    shuffle: bool,
    seed: u64,
    pub position: Position,
    /// This epoch's shard order and the current shard's batch order (identity when not shuffling).
    shard_order: Vec<usize>,
    batch_order: Vec<usize>,
}

impl DataLoader {
    /// Opens every shard matching `pattern` for batches of B sequences of T tokens.
    pub fn new(
        pattern: &str,
        b: usize,
        t: usize,
        vocab_size: usize,
        shuffle: bool,
        seed: u64,
    ) -> Result<Self, FileError> {
        let paths = expand_glob(pattern)?;
        let mut shards = Vec::with_capacity(paths.len());
        for path in &paths {
            let shard = Shard::open(path, vocab_size)?;
            if shard.num_batches(b * t) == 0 {
                return Err(FileError::new(
                    path,
                    format!(
                        "holds {} tokens, fewer than one batch of B*T+1 = {}*{}+1 = {}",
                        shard.num_tokens,
                        b,
                        t,
                        b * t + 1
                    ),
                ));
            }
            shards.push(shard);
        }
        let mut loader = DataLoader {
            shards,
            b,
            t,
            shuffle,
            seed,
            position: Position::default(),
            shard_order: Vec::new(),
            batch_order: Vec::new(),
        };
        loader.seek(Position::default());
        Ok(loader)
    }

    /// Total number of batches in one pass over the data.
    pub fn batches_per_epoch(&self) -> usize {
        self.shards.iter().map(|s| s.num_batches(self.b * self.t)).sum()
    }

    /// The total number of tokens in the shards.
    pub fn num_tokens(&self) -> usize {
        self.shards.iter().map(|s| s.num_tokens).sum()
    }

    /// Jumps to a position saved in a checkpoint, or says why the data cannot have it (the
    /// checkpoint was made with other data or another batch shape).
    pub fn resume_at(&mut self, position: Position) -> Result<(), String> {
        let shard = position.shard as usize;
        if shard >= self.shards.len() {
            return Err(format!("the data position is shard {shard}, but the data has {} shards", self.shards.len()));
        }
        self.seek(Position { batch: 0, ..position });
        if position.batch as usize >= self.batch_order.len() {
            return Err(format!(
                "the data position is batch {} of a shard that holds {} batches",
                position.batch,
                self.batch_order.len()
            ));
        }
        self.position = position;
        Ok(())
    }

    /// Jumps to the start of a shard of an epoch (`position.shard` < number of shards), rebuilding
    /// the permutations it implies into the same buffers.
    pub fn seek(&mut self, position: Position) {
        self.position = position;
        self.shard_order.clear();
        self.shard_order.extend(0..self.shards.len());
        if self.shuffle {
            self.shard_order.shuffle(&mut permutation_rng(self.seed, position.epoch, None));
        }
        let shard = &self.shards[self.shard_order[position.shard as usize]];
        self.batch_order.clear();
        self.batch_order.extend(0..shard.num_batches(self.b * self.t));
        if self.shuffle {
            self.batch_order.shuffle(&mut permutation_rng(self.seed, position.epoch, Some(position.shard)));
        }
    }

    /// Fills inputs (B*T) and targets (B*T) with the next batch and advances.
    pub fn next_batch(&mut self, inputs: &mut [u32], targets: &mut [u32]) {
        let bt = self.b * self.t;
        let pos = self.position;
        let shard = &self.shards[self.shard_order[pos.shard as usize]];
        let start = self.batch_order[pos.batch as usize] * bt;
        for i in 0..bt {
            inputs[i] = shard.token(start + i) as u32;
            targets[i] = shard.token(start + i + 1) as u32;
        }
        // advance: next batch, else next shard, else next epoch
        let mut next = Position { batch: pos.batch + 1, ..pos };
        if next.batch as usize >= self.batch_order.len() {
            next = Position { shard: pos.shard + 1, batch: 0, ..pos };
            if next.shard as usize >= self.shards.len() {
                next = Position { epoch: pos.epoch + 1, shard: 0, batch: 0 };
            }
            self.seek(next);
        } else {
            self.position = next;
        }
    }
}

/// The generator of one permutation: the shard order of an epoch (`shard` None) or the batch order
/// of one shard of an epoch. Its seed hashes (epoch, shard) through a SplitMix64 step before mixing in
/// the run's seed, so every epoch and shard gets its own stream, and the shard order's stream is none
/// of the batch orders' (epoch 0 is not simply the run's seed).
fn permutation_rng(seed: u64, epoch: u32, shard: Option<u32>) -> Rng {
    let stream = (epoch as u64) << 32 | shard.map_or(0, |s| s as u64 + 1);
    Rng::new(seed ^ Rng::new(stream).next_u64())
}

/// Writes tokens as an llm.c token shard, atomically.
pub fn write_shard(path: &Path, tokens: &[u16]) -> Result<(), FileError> {
    let num_tokens = i32::try_from(tokens.len())
        .map_err(|_| FileError::new(path, format!("{} tokens do not fit one shard (at most 2^31-1)", tokens.len())))?;
    let header = crate::files::header_bytes(&[SHARD_MAGIC, SHARD_VERSION, num_tokens]);
    crate::files::write_atomic(path, |w| {
        w.write_all(&header)?;
        // convert in blocks, so a large shard needs no second copy in memory
        let mut bytes = vec![0u8; 2 * 65536];
        for block in tokens.chunks(65536) {
            let bytes = &mut bytes[..2 * block.len()];
            LittleEndian::write_u16_into(block, bytes);
            w.write_all(bytes)?;
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_told_from_a_token_shard() {
        assert!(looks_like_text(b"First Citizen:\nBefore we proceed any further, hear me speak.\n"));
        assert!(looks_like_text("{\"text\": \"d\u{e9}j\u{e0} vu\"}\n".as_bytes()));
        // a two-byte character cut by the end of the first kilobyte is still text
        let mut cut = vec![b'a'; HEADER_BYTES - 1];
        cut.push(0xC3);
        cut.push(0xA9);
        assert!(looks_like_text(&cut));
        // a shard's header has zero bytes; so does any binary
        let shard = crate::files::header_bytes(&[SHARD_MAGIC, SHARD_VERSION, 10]);
        assert!(!looks_like_text(&shard));
        assert!(!looks_like_text(&[0xFF, 0xFE, 0x00, 0x41]));
        assert!(!looks_like_text(b""));
    }
}
