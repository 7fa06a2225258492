//! `prepare`: the command line of `src/prepare/`, which turns text into llm.c token shards.

use std::path::PathBuf;

use gpt2::prepare::{prepare, Input, Options};
use gpt2::tokenizer::Tokenizer;

/// Arguments of `prepare`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Input files: text files (each file is one document), .jsonl files (one JSON object a line, its
    /// "text" field one document) and .parquet files (FineWeb's: one document a row of the "text" column).
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
    /// Encode with this tokenizer (a directory from `tokenizer train`) [default: GPT-2's].
    #[arg(long)]
    pub tokenizer: Option<PathBuf>,
}

pub fn run(args: &Args) -> anyhow::Result<()> {
    let inputs: Vec<Input> = args.input.iter().cloned().map(Input::File).collect();
    let tokenizer = args.tokenizer.as_deref().map(Tokenizer::from_dir).transpose()?;
    let options = Options { val_tokens: args.val_tokens, shard_tokens: args.shard_tokens, progress: true, tokenizer };
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
