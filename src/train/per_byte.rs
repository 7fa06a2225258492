//! Validation loss per byte of text. A loss per token depends on the tokenizer: a bigger vocabulary
//! puts more text in each token, so each token is harder to guess and the loss per token rises even
//! when the model is as good. The loss per byte of the text does not: the loss summed over the
//! validation tokens (loss per token * tokens) is the nats the model needs to write the validation
//! text, whatever pieces it is cut into; divided by that text's bytes it compares models with
//! different tokenizers on the same text (nats, or bits = nats / ln 2; as in nanoGPT's and nanochat's
//! "bits per byte").
//!
//! The bytes are counted by decoding the tokens validation scores (the targets of its batches) with
//! the run's tokenizer; special tokens (`<|endoftext|>` between documents) are no text and count
//! no bytes.

use crate::data::{DataLoader, Position};
use crate::tokenizer::Tokenizer;
use anyhow::{bail, Result};

/// The tokens validation scores and the bytes of text they stand for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ValText {
    pub tokens: usize,
    pub bytes: usize,
}

impl ValText {
    /// The tokens of the first `batches` batches of (b, t) of the shards `pattern` (at most one pass;
    /// the batches `train` and `eval` validate on), and their bytes decoded with `tokenizer`.
    pub fn measure(pattern: &str, b: usize, t: usize, batches: usize, tokenizer: &Tokenizer) -> Result<ValText> {
        let mut loader = DataLoader::new(pattern, b, t, tokenizer.vocab_size(), false, 0)?;
        let batches = batches.min(loader.batches_per_epoch());
        loader.seek(Position::default());
        let (mut inputs, mut targets) = (vec![0u32; b * t], vec![0u32; b * t]);
        let mut bytes = 0;
        for _ in 0..batches {
            loader.next_batch(&mut inputs, &mut targets);
            for &id in &targets {
                if !tokenizer.is_special(id) {
                    // the loader checked every id against the vocabulary when it opened the shard
                    bytes += tokenizer.token_bytes(id).map_or(0, <[u8]>::len);
                }
            }
        }
        if bytes == 0 {
            bail!("{pattern}: the validation tokens hold no text (no bytes), so there is no loss per byte");
        }
        Ok(ValText { tokens: batches * b * t, bytes })
    }

    /// The loss per byte in nats, from the mean loss per token over these tokens.
    pub fn nats_per_byte(&self, loss_per_token: f32) -> f64 {
        loss_per_token as f64 * self.tokens as f64 / self.bytes as f64
    }

    /// The loss per byte in bits.
    pub fn bits_per_byte(&self, loss_per_token: f32) -> f64 {
        self.nats_per_byte(loss_per_token) / std::f64::consts::LN_2
    }

    /// One line: "val loss 4.1234 per token, 1.3029 nats (1.8797 bits) per byte (5120 tokens, 16204 bytes)".
    pub fn describe(&self, loss_per_token: f32) -> String {
        format!(
            "val loss {loss_per_token:.4} per token, {:.4} nats ({:.4} bits) per byte ({} tokens, {} bytes of text, {:.2} bytes a token)",
            self.nats_per_byte(loss_per_token),
            self.bits_per_byte(loss_per_token),
            self.tokens,
            self.bytes,
            self.bytes as f64 / self.tokens as f64
        )
    }
}
