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

use anyhow::{bail, Context};

use crate::tokenizer::Tokenizer;

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

/// The bytes as text, or an error naming the first invalid byte's offset and line.
pub fn utf8(name: &str, bytes: Vec<u8>) -> anyhow::Result<String> {
    String::from_utf8(bytes).map_err(|e| {
        let offset = e.utf8_error().valid_up_to();
        let line = e.as_bytes()[..offset].iter().filter(|&&b| b == b'\n').count() + 1;
        anyhow::anyhow!(
            "{name}:{line}: invalid UTF-8 at byte offset {offset} (line {line}); the input must be UTF-8 text"
        )
    })
}

/// Token ids: plain decimal numbers (ASCII digits only, no sign) separated by white space, each below
/// `vocab_size`. An error names the input, the line, the word, and which number in the input it is.
pub fn parse_ids(name: &str, text: &str, vocab_size: usize) -> anyhow::Result<Vec<u32>> {
    let mut ids = Vec::new();
    for (line_no, line) in text.lines().enumerate() {
        let line_no = line_no + 1;
        for word in line.split_whitespace() {
            let number = ids.len() + 1;
            // `str::parse` would also take a leading '+'; a token id is digits and nothing else.
            if !word.bytes().all(|b| b.is_ascii_digit()) {
                bail!(
                    "{name}:{line_no}: {word:?} (number {number} in the input) is not a token id: expected whole \
                     numbers (digits 0-9 only) separated by white space"
                );
            }
            // Only digits, so parsing fails only when the number is too large for a u32.
            match word.parse::<u32>() {
                Ok(id) if (id as usize) < vocab_size => ids.push(id),
                _ => bail!(
                    "{name}:{line_no}: token id {word} (number {number} in the input) is out of range: {} ids \
                     are 0..{}",
                    if vocab_size == crate::config::GPT2_VOCAB_SIZE { "GPT-2's" } else { "the tokenizer's" },
                    vocab_size - 1
                ),
            }
        }
    }
    Ok(ids)
}
