//! Writing a trained vocabulary (`train.rs`'s `BpeVocab`) as the files other tools read:
//! - GPT-2's `encoder.json` (token -> id) and `vocab.bpe` (the merges, earliest first), with tokens
//!   written through GPT-2's byte -> character map (`bytes_to_unicode`: a space is "Ġ"), so that
//!   `Tokenizer::from_dir` here, llm.c's and Hugging Face's GPT-2 readers load them;
//! - Hugging Face's `tokenizer.json`: a BPE model with the same vocabulary and merges, the ByteLevel
//!   pre-tokenizer (GPT-2's pattern) and decoder, and the special tokens as `added_tokens`.
//!
//! Special tokens are written as their own text (`<|endoftext|>`), as GPT-2 and Hugging Face do.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use super::train::BpeVocab;
use super::{bytes_to_unicode, TokenizerError};

/// File names in a tokenizer directory.
pub const ENCODER_JSON: &str = "encoder.json";
pub const VOCAB_BPE: &str = "vocab.bpe";
pub const TOKENIZER_JSON: &str = "tokenizer.json";

/// A token's bytes as GPT-2's printable string (b" the" -> "Ġthe"), through `map` = `bytes_to_unicode()`.
fn to_unicode(map: &[char; 256], bytes: &[u8]) -> String {
    bytes.iter().map(|&b| map[b as usize]).collect()
}

/// Each merge as vocab.bpe and tokenizer.json write it, "left right", earliest learned first.
fn merge_lines(vocab: &BpeVocab) -> Vec<String> {
    let map = bytes_to_unicode();
    let text = |id| to_unicode(&map, vocab.token_bytes(id));
    vocab.merges.iter().map(|&(l, r)| format!("{} {}", text(l), text(r))).collect()
}

/// Each token's string as the files store it, by id: specials as their text, others mapped.
fn token_strings(vocab: &BpeVocab) -> Vec<String> {
    let map = bytes_to_unicode();
    let first_special = 256;
    let specials = first_special..first_special + vocab.specials.len();
    (0..vocab.vocab_size())
        .map(|id| {
            if specials.contains(&id) {
                vocab.specials[id - first_special].clone()
            } else {
                to_unicode(&map, &vocab.tokens[id])
            }
        })
        .collect()
}

/// encoder.json: one JSON object, tokens in id order.
pub fn encoder_json(vocab: &BpeVocab) -> String {
    let mut out = String::from("{");
    for (id, token) in token_strings(vocab).iter().enumerate() {
        if id > 0 {
            out.push_str(", ");
        }
        out.push_str(&serde_json::to_string(token).expect("a string serializes"));
        out.push_str(&format!(": {id}"));
    }
    out.push_str("}\n");
    out
}

/// vocab.bpe: "#version: 0.2", then a merge a line, "left right", earliest learned first.
pub fn vocab_bpe(vocab: &BpeVocab) -> String {
    let mut out = String::from("#version: 0.2\n");
    for line in merge_lines(vocab) {
        out.push_str(&line);
        out.push('\n');
    }
    out
}

/// Hugging Face's tokenizer.json for this vocabulary (the layout of GPT-2's on the Hub).
pub fn tokenizer_json(vocab: &BpeVocab) -> Value {
    let strings = token_strings(vocab);
    let model_vocab: serde_json::Map<String, Value> =
        strings.iter().enumerate().map(|(id, s)| (s.clone(), json!(id))).collect();
    let merges = merge_lines(vocab);
    let added: Vec<Value> = vocab
        .specials
        .iter()
        .enumerate()
        .map(|(i, s)| {
            json!({"id": 256 + i, "content": s, "single_word": false, "lstrip": false, "rstrip": false,
                   "normalized": false, "special": true})
        })
        .collect();
    let byte_level = json!({"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true});
    json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": added,
        "normalizer": null,
        "pre_tokenizer": byte_level,
        "post_processor": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": false, "use_regex": true},
        "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true},
        "model": {
            "type": "BPE",
            "dropout": null,
            "unk_token": null,
            "continuing_subword_prefix": "",
            "end_of_word_suffix": "",
            "fuse_unk": false,
            "byte_fallback": false,
            "ignore_merges": false,
            "vocab": model_vocab,
            "merges": merges,
        }
    })
}

/// Writes encoder.json, vocab.bpe and tokenizer.json into `dir` (created if missing), each atomically.
/// Returns the paths written.
pub fn write_files(vocab: &BpeVocab, dir: &Path) -> Result<Vec<PathBuf>, TokenizerError> {
    std::fs::create_dir_all(dir).map_err(|source| TokenizerError::Io { path: dir.to_path_buf(), source })?;
    let hf = serde_json::to_string_pretty(&tokenizer_json(vocab)).expect("a JSON value serializes") + "\n";
    let mut written = Vec::new();
    for (name, text) in [(ENCODER_JSON, encoder_json(vocab)), (VOCAB_BPE, vocab_bpe(vocab)), (TOKENIZER_JSON, hf)] {
        let path = dir.join(name);
        crate::files::write_atomic_io(&path, |w| w.write_all(text.as_bytes()))
            .map_err(|source| TokenizerError::Io { path: path.clone(), source })?;
        written.push(path);
    }
    Ok(written)
}
