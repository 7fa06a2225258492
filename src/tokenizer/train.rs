//! Training a byte-level BPE tokenizer, the readable way: the lesson version. Its twin is
//! `train_fast.rs`, which learns exactly the same merges much faster; `tests/tokenizer_train.rs`
//! checks that the two agree, and works a small example out by hand.
//!
//! The vocabulary is built in three parts, in this order of ids:
//! 1. the 256 byte values (id b is the one-byte token b), so any text can be encoded;
//! 2. the special tokens (`<|endoftext|>`, ...), which the text is split on and which no merge crosses;
//! 3. the merges, one new token each, in the order they are learned.
//!
//! Learning the merges:
//! - cut the text into pre-tokens with GPT-2's pattern (`pretokenize.rs`, the same function the
//!   encoder uses) after splitting it on the special tokens, and count each distinct pre-token
//!   ("words" below: " the" appears 10,000 times, so it is one word with count 10,000);
//! - each word starts as its bytes; count every adjacent pair of tokens inside words, weighted by
//!   the word's count;
//! - repeatedly take the most frequent pair (ties: the lexicographically greater pair, comparing the
//!   left token's bytes, then the right token's bytes, as byte strings), make it a new token, replace
//!   it in every word that contains it, and update the pair counts from those words only.
//!
//! ```
//! use gpt2::tokenizer::train::{count_words, train_bpe};
//! // Words "low", " low", " lower": "l"+"o" and "o"+"w" both occur 3 times; the tie goes to the
//! // greater pair, ("o", "w") > ("l", "o"). Then "l"+"ow" (3 times) beats " "+"l" (twice).
//! let words = count_words(["low low lower"], &[]);
//! let vocab = train_bpe(&words, 256 + 2, &[]).unwrap();
//! assert_eq!(vocab.token_bytes(256), b"ow");
//! assert_eq!(vocab.token_bytes(257), b"low");
//! ```

use std::fmt;

use super::pretokenize::pieces;
use super::FxHashMap;

/// A trained vocabulary: the bytes of every token by id, the merges in the order learned, and
/// which ids are special tokens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BpeVocab {
    /// Bytes of each token, (V): 256 bytes, then the specials' text, then one token per merge.
    pub tokens: Vec<Vec<u8>>,
    /// (left id, right id) of each merge, in the order learned.
    pub merges: Vec<(u32, u32)>,
    /// The special tokens' text, in id order from 256.
    pub specials: Vec<String>,
    /// Bytes -> id of the byte tokens and the merged tokens (not the specials).
    ids: FxHashMap<Vec<u8>, u32>,
}

impl BpeVocab {
    /// The vocabulary before any merge: the 256 bytes, then the special tokens.
    pub fn base(specials: &[String]) -> BpeVocab {
        let mut tokens: Vec<Vec<u8>> = (0..=255u8).map(|b| vec![b]).collect();
        let ids = tokens.iter().enumerate().map(|(id, t)| (t.clone(), id as u32)).collect();
        tokens.extend(specials.iter().map(|s| s.as_bytes().to_vec()));
        BpeVocab { tokens, merges: Vec::new(), specials: specials.to_vec(), ids }
    }

    /// Number of tokens (bytes + specials + merges).
    pub fn vocab_size(&self) -> usize {
        self.tokens.len()
    }

    /// Id of the first merged token: 256 + the number of special tokens.
    pub fn first_merge_id(&self) -> u32 {
        (256 + self.specials.len()) as u32
    }

    /// Bytes of token `id` (panics if out of range: ids come from this vocabulary).
    pub fn token_bytes(&self, id: u32) -> &[u8] {
        &self.tokens[id as usize]
    }

    /// Adds the merge (left, right) and returns the id of the token it makes: a new token, or the
    /// one already in the vocabulary when another merge made the same bytes before ("ab"+"c" and
    /// "a"+"bc" are both "abc"; Hugging Face's trainer does the same, and encoder.json can only
    /// hold each token once).
    pub fn push_merge(&mut self, left: u32, right: u32) -> u32 {
        let bytes = [self.token_bytes(left), self.token_bytes(right)].concat();
        self.merges.push((left, right));
        let next_id = self.tokens.len() as u32;
        let id = *self.ids.entry(bytes.clone()).or_insert(next_id);
        if id == next_id {
            self.tokens.push(bytes);
        }
        id
    }

    /// Number of merges whose token was already in the vocabulary (see `push_merge`).
    pub fn repeated_merges(&self) -> usize {
        self.merges.len() - (self.tokens.len() - 256 - self.specials.len())
    }
}

/// What can go wrong before training starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TrainError {
    /// The requested vocabulary cannot even hold the bytes and the special tokens.
    VocabTooSmall { vocab_size: usize, needed: usize, specials: usize },
    /// A special token is empty or given twice.
    BadSpecial(String),
    /// No text to learn from.
    NoText,
}

impl fmt::Display for TrainError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TrainError::VocabTooSmall { vocab_size, needed, specials } => write!(
                f,
                "--vocab-size {vocab_size} is too small: the vocabulary needs at least {needed} tokens (the 256 \
                 bytes and {specials} special token{})",
                if *specials == 1 { "" } else { "s" }
            ),
            TrainError::BadSpecial(message) => write!(f, "{message}"),
            TrainError::NoText => write!(f, "the input has no text to learn merges from"),
        }
    }
}

impl std::error::Error for TrainError {}

/// Checks the special tokens (non-empty, distinct) and that `vocab_size` holds the bytes and them.
pub fn check_request(vocab_size: usize, specials: &[String]) -> Result<(), TrainError> {
    for (i, s) in specials.iter().enumerate() {
        if s.is_empty() {
            return Err(TrainError::BadSpecial("a special token cannot be empty".into()));
        }
        if specials[..i].contains(s) {
            return Err(TrainError::BadSpecial(format!("the special token {s:?} is given twice")));
        }
    }
    let needed = 256 + specials.len();
    if vocab_size < needed {
        return Err(TrainError::VocabTooSmall { vocab_size, needed, specials: specials.len() });
    }
    Ok(())
}

/// Cuts `text` at every occurrence of a special token and returns the pieces of text between them
/// (the specials themselves are dropped: they are tokens of their own, never merged with anything).
/// Where two specials start at the same place, the longer wins.
pub fn split_on_specials<'a>(text: &'a str, specials: &[String]) -> Vec<&'a str> {
    if specials.is_empty() {
        return vec![text];
    }
    let mut out = Vec::new();
    let mut start = 0; // start of the current ordinary text
    let mut i = 0; // where we look for a special
    let bytes = text.as_bytes();
    while i < bytes.len() {
        let found = specials.iter().filter(|s| bytes[i..].starts_with(s.as_bytes())).map(|s| s.len()).max();
        match found {
            Some(len) => {
                if start < i {
                    out.push(&text[start..i]);
                }
                i += len;
                start = i;
            }
            None => i += 1,
        }
    }
    if start < bytes.len() {
        out.push(&text[start..]);
    }
    out
}

/// Adds the pre-tokens of one document to `counts`: split on the specials, then GPT-2's pieces.
pub fn count_document(text: &str, specials: &[String], counts: &mut FxHashMap<String, u64>) {
    for part in split_on_specials(text, specials) {
        for piece in pieces(part) {
            match counts.get_mut(piece) {
                Some(n) => *n += 1,
                None => {
                    counts.insert(piece.to_string(), 1);
                }
            }
        }
    }
}

/// The words (distinct pre-tokens, as bytes) of some documents with their counts, sorted by bytes so
/// that everything after is deterministic.
pub fn count_words<'a>(documents: impl IntoIterator<Item = &'a str>, specials: &[String]) -> Vec<(Vec<u8>, u64)> {
    let mut counts = FxHashMap::default();
    for doc in documents {
        count_document(doc, specials, &mut counts);
    }
    sorted_words(counts)
}

/// Pre-token counts as (bytes, count) sorted by bytes.
pub fn sorted_words(counts: FxHashMap<String, u64>) -> Vec<(Vec<u8>, u64)> {
    let mut words: Vec<(Vec<u8>, u64)> = counts.into_iter().map(|(s, n)| (s.into_bytes(), n)).collect();
    words.sort_unstable();
    words
}

/// Is (count, left bytes, right bytes) of pair `a` ahead of pair `b`? More frequent first; on a tie,
/// the lexicographically greater (left, right). The one rule both trainers share.
pub fn pair_beats(vocab: &BpeVocab, a: (u64, u32, u32), b: (u64, u32, u32)) -> bool {
    let key = |(n, l, r): (u64, u32, u32)| (n, vocab.token_bytes(l), vocab.token_bytes(r));
    key(a) > key(b)
}

/// Replaces every occurrence of (left, right) in `word`, left to right, by `new_id`
/// ("a a a" with (a, a) becomes "aa a"). Returns whether anything changed.
pub fn merge_word(word: &mut Vec<u32>, left: u32, right: u32, new_id: u32) -> bool {
    let mut out = Vec::with_capacity(word.len());
    let mut i = 0;
    while i < word.len() {
        if i + 1 < word.len() && word[i] == left && word[i + 1] == right {
            out.push(new_id);
            i += 2;
        } else {
            out.push(word[i]);
            i += 1;
        }
    }
    let changed = out.len() != word.len();
    *word = out;
    changed
}

/// Adds `sign * count` to the count of every adjacent pair of `word`.
pub fn add_pairs(word: &[u32], count: i64, pair_counts: &mut FxHashMap<(u32, u32), i64>) {
    for w in word.windows(2) {
        *pair_counts.entry((w[0], w[1])).or_insert(0) += count;
    }
}

/// The merge-and-update step (an exercise: `exercises/bpe_merge.rs`): merge the pair (left, right)
/// into `new_id` in every word that contains it, and update `pair_counts` from those words only,
/// not by recounting everything: take the word's pairs out, merge, put the new pairs in.
/// `words[i]` is a word's tokens and `counts[i]` how often it occurs.
#[cfg(not(feature = "exercise-bpe_merge"))]
pub fn merge_and_update(
    words: &mut [Vec<u32>],
    counts: &[u64],
    pair_counts: &mut FxHashMap<(u32, u32), i64>,
    (left, right): (u32, u32),
    new_id: u32,
) {
    for (word, &count) in words.iter_mut().zip(counts) {
        // Only words that contain the pair change.
        if !word.windows(2).any(|w| w[0] == left && w[1] == right) {
            continue;
        }
        add_pairs(word, -(count as i64), pair_counts); // the old pairs go
        merge_word(word, left, right, new_id);
        add_pairs(word, count as i64, pair_counts); // the new pairs come
    }
    pair_counts.retain(|_, n| *n > 0);
}

// With `--features exercise-bpe_merge`, your version from `exercises/bpe_merge.rs` takes this one's
// place everywhere (the lesson trainer calls it; tests/tokenizer_train.rs judges it).
#[cfg(feature = "exercise-bpe_merge")]
pub use crate::exercises::bpe_merge::merge_and_update;

/// Learns merges on `words` (distinct pre-tokens and their counts, from `count_words`) until the
/// vocabulary has `vocab_size` tokens or no pair is left. The lesson version: each merge scans every
/// pair count for the best one, and every word for the pair.
pub fn train_bpe(words: &[(Vec<u8>, u64)], vocab_size: usize, specials: &[String]) -> Result<BpeVocab, TrainError> {
    check_request(vocab_size, specials)?;
    let mut vocab = BpeVocab::base(specials);
    // Each word starts as its bytes: token id b for byte b.
    let mut tokens: Vec<Vec<u32>> = words.iter().map(|(w, _)| w.iter().map(|&b| b as u32).collect()).collect();
    let counts: Vec<u64> = words.iter().map(|(_, n)| *n).collect();

    // Count every adjacent pair once, weighted by how often its word occurs.
    let mut pair_counts: FxHashMap<(u32, u32), i64> = FxHashMap::default();
    for (word, &count) in tokens.iter().zip(&counts) {
        add_pairs(word, count as i64, &mut pair_counts);
    }

    while vocab.vocab_size() < vocab_size {
        // The most frequent pair; ties to the lexicographically greater one.
        let mut best: Option<(u64, u32, u32)> = None;
        for (&(l, r), &n) in &pair_counts {
            let candidate = (n as u64, l, r);
            if n > 0 && best.is_none_or(|b| pair_beats(&vocab, candidate, b)) {
                best = Some(candidate);
            }
        }
        let Some((_, left, right)) = best else {
            break; // every word is a single token: nothing left to merge
        };
        let new_id = vocab.push_merge(left, right);
        merge_and_update(&mut tokens, &counts, &mut pair_counts, (left, right), new_id);
    }
    Ok(vocab)
}
