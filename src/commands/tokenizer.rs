//! `tokenizer train`: learn a byte-level BPE vocabulary from text files and write it as GPT-2's
//! files (encoder.json, vocab.bpe) and Hugging Face's tokenizer.json. Every command that takes
//! `--tokenizer DIR` then uses it. The training itself is `src/tokenizer/train.rs` (the lesson) and
//! `src/tokenizer/train_fast.rs` (what runs here).
//!
//! ```text
//! $ gpt2 tokenizer train --input data/shakespeare/hamlet_gut.txt --vocab-size 1000 --out tok/
//! ```
//!
//! The input is read as `prepare` reads it (text files, .jsonl, .parquet), in batches of about
//! 64 MB, each batch's pre-tokens counted on all cores: memory grows with the number of distinct
//! pre-tokens, not with the size of the input.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context};

use gpt2::prepare::Input;
use gpt2::tokenizer::train::{check_request, sorted_words};
use gpt2::tokenizer::train_fast::{count_words_parallel, train_bpe_fast};
use gpt2::tokenizer::{save, FxHashMap, Tokenizer, EOT_TEXT};

/// Arguments of `tokenizer`.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(clap::Subcommand, Debug)]
pub enum Command {
    /// Learn a byte-level BPE vocabulary from text; write encoder.json, vocab.bpe and tokenizer.json.
    Train(TrainArgs),
}

/// Arguments of `tokenizer train`.
#[derive(clap::Args, Debug)]
pub struct TrainArgs {
    /// Input files, as `prepare` takes them: text files (one document each), .jsonl (one JSON object
    /// a line, its "text" field a document) and .parquet (the "text" column).
    #[arg(long, short, required = true, num_args = 1..)]
    pub input: Vec<PathBuf>,
    /// Tokens in the vocabulary: the 256 bytes, the special tokens, and the merges learned.
    #[arg(long)]
    pub vocab_size: usize,
    /// A special token (repeat the flag for more): given an id after the 256 bytes, the text is split
    /// on it before counting, and no merge crosses it. The list must hold <|endoftext|>, which
    /// `prepare` puts before every document.
    #[arg(long, num_args = 1, default_values_t = [EOT_TEXT.to_string()])]
    pub special: Vec<String>,
    /// Output directory (created if missing).
    #[arg(long, short)]
    pub out: PathBuf,
}

/// Documents are counted in batches of about this many bytes.
const BATCH_BYTES: usize = 64 << 20;

pub fn run(args: &Args) -> anyhow::Result<()> {
    match &args.command {
        Command::Train(a) => train(a),
    }
}

fn train(args: &TrainArgs) -> anyhow::Result<()> {
    check_request(args.vocab_size, &args.special)?;
    if !args.special.iter().any(|s| s == EOT_TEXT) {
        bail!(
            "the special tokens must include {EOT_TEXT}: `prepare` and `train` put it before every document (add \
             --special '{EOT_TEXT}')"
        );
    }
    let start = Instant::now();

    // Count the pre-tokens, a batch of documents at a time.
    let mut counts: FxHashMap<String, u64> = FxHashMap::default();
    let (mut batch, mut batch_bytes) = (Vec::new(), 0usize);
    let (mut documents, mut text_bytes) = (0usize, 0u64);
    for path in &args.input {
        Input::File(path.clone()).for_each_document(|doc| {
            documents += 1;
            text_bytes += doc.len() as u64;
            batch_bytes += doc.len();
            batch.push(doc.into_owned());
            if batch_bytes >= BATCH_BYTES {
                count_words_parallel(&batch, &args.special, &mut counts);
                batch.clear();
                batch_bytes = 0;
            }
            Ok(())
        })?;
    }
    count_words_parallel(&batch, &args.special, &mut counts);
    drop(batch);
    if counts.is_empty() {
        bail!("the input has no text to learn from ({documents} documents, all empty or only special tokens)");
    }
    let distinct = counts.len();
    let count_seconds = start.elapsed().as_secs_f64();
    let words = sorted_words(counts);

    let vocab = train_bpe_fast(&words, args.vocab_size, &args.special, true)?;
    if vocab.vocab_size() < args.vocab_size {
        eprintln!(
            "note: the text has no pair left to merge after {} merges: the vocabulary has {} tokens, not the {} asked for",
            vocab.merges.len(),
            vocab.vocab_size(),
            args.vocab_size
        );
    }
    let written = save::write_files(&vocab, &args.out)?;
    // Read the files back, as every command will.
    let tok = Tokenizer::from_dir(&args.out).with_context(|| format!("{}: reading back", args.out.display()))?;
    println!(
        "trained {} tokens (256 bytes, {} special, {} merges, {} of them repeating a token) on {documents} documents, {text_bytes} bytes, {distinct} \
         distinct pre-tokens in {:.2} s (counting {:.2} s); digest {}; wrote {}",
        tok.vocab_size(),
        vocab.specials.len(),
        vocab.merges.len(),
        vocab.repeated_merges(),
        start.elapsed().as_secs_f64(),
        count_seconds,
        tok.digest(),
        written.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", "),
    );
    Ok(())
}
