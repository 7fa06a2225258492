//! `tokenize`: print the GPT-2 token ids of a text, or with `--decode`, the text of some ids.
//!
//! ```text
//! $ echo "Hello world" | gpt2 tokenize
//! 15496 995 198
//! $ echo "15496 995 198" | gpt2 tokenize --decode
//! Hello world
//! ```
//!
//! Decoding writes the tokens' bytes as they are, so `tokenize f | tokenize --decode` gives back `f`
//! byte for byte. The tokenizer itself is `src/tokenizer/`.

use std::io::{Read, Write};
use std::path::PathBuf;

use anyhow::Context;
use gpt2::tokenizer::ids::{parse_ids, utf8};

use gpt2::tokenizer::Tokenizer;

/// Arguments of `tokenize`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Text file to encode (with --decode: a file of token ids); `-` or nothing reads standard input.
    pub file: Option<PathBuf>,
    /// Read token ids (decimal, separated by white space) and print the text they stand for.
    #[arg(long)]
    pub decode: bool,
    /// Use this tokenizer (a directory from `tokenizer train`) [default: GPT-2's].
    #[arg(long)]
    pub tokenizer: Option<PathBuf>,
}

pub fn run(args: &Args) -> anyhow::Result<()> {
    let (name, bytes) = read_input(args.file.as_ref())?;
    let text = utf8(&name, bytes)?;
    let tok = Tokenizer::gpt2_or_dir(args.tokenizer.as_deref())?;
    let mut stdout = std::io::stdout().lock();
    let result = if args.decode {
        // `parse_ids` checks every id against the vocabulary, so decoding cannot fail.
        let ids = parse_ids(&name, &text, tok.vocab_size())?;
        let bytes = tok.decode_bytes(&ids)?;
        stdout.write_all(&bytes)
    } else {
        let ids = tok.encode_parallel(&text);
        let mut line = String::with_capacity(ids.len() * 6 + 1);
        for (i, id) in ids.iter().enumerate() {
            if i > 0 {
                line.push(' ');
            }
            line.push_str(&id.to_string());
        }
        line.push('\n');
        stdout.write_all(line.as_bytes())
    };
    match result.and_then(|()| stdout.flush()) {
        // `gpt2 tokenize big.txt | head` closes the pipe early: that is not an error.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other.context("cannot write to standard output"),
    }
}

/// Reads the file (or standard input for `-` or no file); returns a name for messages (the path, or
/// "standard input") and the bytes.
fn read_input(file: Option<&PathBuf>) -> anyhow::Result<(String, Vec<u8>)> {
    match file {
        Some(path) if path.as_os_str() != "-" => {
            let name = path.display().to_string();
            let bytes = std::fs::read(path).with_context(|| format!("{name}: cannot read the file"))?;
            Ok((name, bytes))
        }
        _ => {
            let mut bytes = Vec::new();
            std::io::stdin().read_to_end(&mut bytes).context("cannot read standard input")?;
            Ok(("standard input".to_string(), bytes))
        }
    }
}
