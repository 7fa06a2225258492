//! Training a byte-level BPE tokenizer, the fast way. The twin of `train.rs` (the lesson version):
//! the same merges in the same order, tie rule included (`tests/tokenizer_train.rs` checks it), but
//! without scanning everything at every merge:
//!
//! - **the best pair** comes from a max-heap of (count, left bytes, right bytes) with lazy
//!   invalidation: an entry is not removed when its pair's count changes. Counts of existing pairs
//!   only go down when a merge happens, except pairs with the new token, which are pushed afresh
//!   after each merge. So every live pair has an entry whose stored count is at least its true count;
//!   a popped entry whose count is out of date is pushed back with the true count, and the first
//!   popped entry that is up to date is the true best.
//! - **the words to update** come from an index pair -> words that contain it (it may also list words
//!   that no longer do; those are skipped);
//! - **the counts** change only at the merged places: in `x a b y`, merging (a, b) into X takes away
//!   (x, a), (a, b), (b, y) and adds (x, X), (X, y), each times the word's count.
//!
//! Counting the pre-tokens of the input (`count_words_parallel`) runs on all cores.

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::io::Write;
use std::time::Instant;

use rayon::prelude::*;

use super::pretokenize::split_for_parallel;
use super::train::{check_request, count_document, split_on_specials, BpeVocab, TrainError};
use super::FxHashMap;

/// A heap entry: a pair and its count when it was pushed. Ordered as `train::pair_beats` orders
/// pairs: by count, then by the left token's bytes, then the right token's bytes.
#[derive(PartialEq, Eq)]
struct Candidate {
    count: u64,
    left_bytes: Vec<u8>,
    right_bytes: Vec<u8>,
    pair: (u32, u32),
}

impl Ord for Candidate {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.count, &self.left_bytes, &self.right_bytes, self.pair).cmp(&(
            other.count,
            &other.left_bytes,
            &other.right_bytes,
            other.pair,
        ))
    }
}

impl PartialOrd for Candidate {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

fn candidate(vocab: &BpeVocab, pair: (u32, u32), count: u64) -> Candidate {
    Candidate {
        count,
        left_bytes: vocab.token_bytes(pair.0).to_vec(),
        right_bytes: vocab.token_bytes(pair.1).to_vec(),
        pair,
    }
}

/// Prints "merges done/total, merges/s, time left" on one stderr line, at most twice a second.
struct Progress {
    enabled: bool,
    start: Instant,
    last: Instant,
    total: usize,
}

impl Progress {
    fn tick(&mut self, done: usize, finished: bool) {
        if !self.enabled || (!finished && self.last.elapsed().as_secs_f64() < 0.5) {
            return;
        }
        self.last = Instant::now();
        let seconds = self.start.elapsed().as_secs_f64().max(1e-9);
        let rate = done as f64 / seconds;
        let left = if rate > 0.0 { self.total.saturating_sub(done) as f64 / rate } else { 0.0 };
        let mut err = std::io::stderr().lock();
        let _ = write!(err, "\rtokenizer: {done}/{} merges, {rate:.0} merges/s, {left:.0} s left   ", self.total);
        if finished {
            let _ = writeln!(err);
        }
    }
}

/// The pairs of adjacent tokens in the words: each pair's count (over the words, times each word's
/// count) and the words it occurs in (each word once, in order; a list may keep words that no
/// longer hold the pair: the merge finds none there).
struct PairIndex {
    counts: FxHashMap<(u32, u32), i64>,
    words: FxHashMap<(u32, u32), Vec<u32>>,
}

impl PairIndex {
    fn new(tokens: &[Vec<u32>], counts: &[u64]) -> Self {
        let mut index = PairIndex { counts: FxHashMap::default(), words: FxHashMap::default() };
        for (i, (word, &count)) in tokens.iter().zip(counts).enumerate() {
            for w in word.windows(2) {
                let pair = (w[0], w[1]);
                *index.counts.entry(pair).or_insert(0) += count as i64;
                index.note_word(pair, i as u32);
            }
        }
        index
    }

    /// Records that word `wi` holds `pair` (once: words are visited in order).
    fn note_word(&mut self, pair: (u32, u32), wi: u32) {
        let list = self.words.entry(pair).or_default();
        if list.last() != Some(&wi) {
            list.push(wi);
        }
    }

    /// Merges `pair` into `new_id` everywhere in word `wi` (which occurs `count` times), updating
    /// the counts of the pairs around each merged place; the pairs with the new token go to `grown`.
    fn merge_in_word(
        &mut self,
        word: &mut Vec<u32>,
        wi: u32,
        count: i64,
        pair: (u32, u32),
        new_id: u32,
        grown: &mut Vec<(u32, u32)>,
    ) {
        let (left, right) = pair;
        let mut add = |pair: (u32, u32), delta: i64| *self.counts.entry(pair).or_insert(0) += delta;
        let mut out: Vec<u32> = Vec::with_capacity(word.len());
        let mut i = 0;
        let mut changed = false;
        while i < word.len() {
            if i + 1 < word.len() && word[i] == left && word[i + 1] == right {
                // x a b y -> x X y
                if let Some(&x) = out.last() {
                    add((x, left), -count);
                    add((x, new_id), count);
                    grown.push((x, new_id));
                }
                add((left, right), -count);
                if let Some(&y) = word.get(i + 2) {
                    add((right, y), -count);
                    add((new_id, y), count);
                    grown.push((new_id, y));
                }
                out.push(new_id);
                i += 2;
                changed = true;
            } else {
                out.push(word[i]);
                i += 1;
            }
        }
        if changed {
            *word = out;
            // The word now holds the pairs with the new token.
            for w in word.windows(2) {
                if w[0] == new_id || w[1] == new_id {
                    self.note_word((w[0], w[1]), wi);
                }
            }
        }
    }
}

/// Learns the same merges as `train::train_bpe` on the same `words`, fast. `progress` prints a
/// progress line on stderr.
pub fn train_bpe_fast(
    words: &[(Vec<u8>, u64)],
    vocab_size: usize,
    specials: &[String],
    progress: bool,
) -> Result<BpeVocab, TrainError> {
    check_request(vocab_size, specials)?;
    let mut vocab = BpeVocab::base(specials);
    let mut tokens: Vec<Vec<u32>> = words.iter().map(|(w, _)| w.iter().map(|&b| b as u32).collect()).collect();
    let counts: Vec<u64> = words.iter().map(|(_, n)| *n).collect();

    let mut index = PairIndex::new(&tokens, &counts);
    let mut heap: BinaryHeap<Candidate> =
        index.counts.iter().map(|(&pair, &n)| candidate(&vocab, pair, n as u64)).collect();

    let mut progress = Progress {
        enabled: progress,
        start: Instant::now(),
        last: Instant::now(),
        total: vocab_size - vocab.vocab_size(),
    };
    let start_size = vocab.vocab_size();
    let mut grown: Vec<(u32, u32)> = Vec::new(); // pairs with the new token, pushed after each merge
    while vocab.vocab_size() < vocab_size {
        // The best pair whose entry is up to date.
        let Some(top) = heap.pop() else { break };
        let current = index.counts.get(&top.pair).copied().unwrap_or(0).max(0) as u64;
        if current != top.count {
            if current > 0 && current < top.count {
                heap.push(Candidate { count: current, ..top });
            }
            // current > top.count: a newer entry with the true count is in the heap.
            continue;
        }
        let (left, right) = top.pair;
        let new_id = vocab.push_merge(left, right);

        // Merge in every word that contains the pair; update the counts at the merged places.
        let mut list = index.words.remove(&top.pair).unwrap_or_default();
        list.sort_unstable();
        list.dedup();
        grown.clear();
        for &wi in &list {
            let count = counts[wi as usize] as i64;
            index.merge_in_word(&mut tokens[wi as usize], wi, count, top.pair, new_id, &mut grown);
        }
        index.counts.remove(&top.pair);
        grown.sort_unstable();
        grown.dedup();
        for &pair in &grown {
            let n = index.counts.get(&pair).copied().unwrap_or(0);
            if n > 0 {
                heap.push(candidate(&vocab, pair, n as u64));
            }
        }
        progress.tick(vocab.vocab_size() - start_size, false);
    }
    progress.tick(vocab.vocab_size() - start_size, true);
    Ok(vocab)
}

/// Adds the pre-token counts of `documents` to `counts` on all cores: the documents are split on the
/// special tokens, long parts cut where GPT-2's split cuts anyway (`split_for_parallel`), and the
/// parts counted in parallel, each thread into its own table; then the tables are added up.
/// Gives exactly the counts of `train::count_document` on each document.
pub fn count_words_parallel(documents: &[String], specials: &[String], counts: &mut FxHashMap<String, u64>) {
    let chunks: Vec<&str> = documents
        .iter()
        .flat_map(|d| split_on_specials(d, specials))
        .flat_map(|part| split_for_parallel(part, 1 << 20))
        .collect();
    let tables: Vec<FxHashMap<String, u64>> = chunks
        .par_iter()
        .fold(FxHashMap::default, |mut table, chunk| {
            count_document(chunk, &[], &mut table);
            table
        })
        .collect();
    for table in tables {
        for (piece, n) in table {
            *counts.entry(piece).or_insert(0) += n;
        }
    }
}
