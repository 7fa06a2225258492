//! Decoding tokens one at a time, for printing samples as they are generated.
//!
//! A GPT-2 token is a run of bytes, not of characters: "é" or an emoji can be split across two or
//! more tokens. `StreamDecoder` keeps the bytes of an unfinished character until the rest arrives,
//! and hands out only complete text. Bytes that can never become valid UTF-8 come out as U+FFFD.

use super::{Tokenizer, TokenizerError};

/// Turns a stream of token ids into a stream of text, holding back incomplete UTF-8 sequences.
pub struct StreamDecoder<'a> {
    tokenizer: &'a Tokenizer,
    /// Bytes received but not yet returned: at most the first 1-3 bytes of one character.
    pending: Vec<u8>,
    /// How many ids have been pushed (the position reported in errors).
    count: usize,
}

impl<'a> StreamDecoder<'a> {
    pub fn new(tokenizer: &'a Tokenizer) -> Self {
        StreamDecoder { tokenizer, pending: Vec::new(), count: 0 }
    }

    /// Adds one token and returns the text that is now complete (often the whole token, sometimes
    /// nothing, sometimes more than the token when it completes a held-back character).
    pub fn push(&mut self, id: u32) -> Result<String, TokenizerError> {
        let bytes = self.tokenizer.token_bytes(id).ok_or(TokenizerError::IdOutOfRange {
            id,
            position: self.count,
            vocab_size: self.tokenizer.vocab_size(),
        })?;
        self.count += 1;
        self.pending.extend_from_slice(bytes);
        let mut out = String::new();
        loop {
            match std::str::from_utf8(&self.pending) {
                Ok(s) => {
                    out.push_str(s);
                    self.pending.clear();
                    return Ok(out);
                }
                Err(e) => {
                    let valid = e.valid_up_to();
                    // from_utf8 just told us the first `valid` bytes are UTF-8.
                    out.push_str(std::str::from_utf8(&self.pending[..valid]).unwrap_or_default());
                    match e.error_len() {
                        // An incomplete character at the end: keep it for the next token.
                        None => {
                            self.pending.drain(..valid);
                            return Ok(out);
                        }
                        // Bytes that no continuation can fix: replace them and go on.
                        Some(bad) => {
                            out.push(char::REPLACEMENT_CHARACTER);
                            self.pending.drain(..valid + bad);
                        }
                    }
                }
            }
        }
    }

    /// Ends the stream: any held-back bytes (an unfinished character) come out as U+FFFD.
    pub fn finish(&mut self) -> String {
        let out = String::from_utf8_lossy(&self.pending).into_owned();
        self.pending.clear();
        out
    }
}
