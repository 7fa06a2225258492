//! Encoding and cutting: documents are encoded on all cores in batches (`Batch`) and their tokens
//! go, in order, into the validation shard and then the training shards (`ShardSink`), with a
//! progress line (`Progress`) on stderr.

use std::borrow::Cow;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::bail;
use rayon::prelude::*;

use super::{Input, Options, Summary};
use crate::data::write_shard;
use crate::tokenizer::{split_for_parallel, Tokenizer};

/// Encodes `inputs` into shards and `tokenizer.bin` in `dir`; the summary lists the files in `dir`.
pub(super) fn write_files(inputs: &[Input], dir: &Path, options: &Options, start: Instant) -> anyhow::Result<Summary> {
    let gpt2;
    let tok = match &options.tokenizer {
        Some(tok) => tok,
        None => {
            gpt2 = Tokenizer::gpt2();
            &gpt2
        }
    };
    // Token ids are stored as u16.
    if tok.vocab_size() > 1 << 16 {
        bail!("the tokenizer has {} tokens: shards store ids as u16, so at most 65536", tok.vocab_size());
    }
    let total_bytes: u64 = inputs.iter().map(Input::size).sum();
    let progress = Progress { enabled: options.progress, tty: std::io::stderr().is_terminal(), total_bytes, start };
    let shards = ShardSink::new(dir, options.val_tokens, options.shard_tokens);
    let mut batch = Batch { tok, pending: Vec::new(), pending_bytes: 0, shards, documents: 0, text_bytes: 0, progress };
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
