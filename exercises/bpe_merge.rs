//! Exercise 9: the merge-and-update step of BPE training. Reference: `src/tokenizer/train.rs`.
//! Judge: `cargo test --features exercise-bpe_merge --test tokenizer_train -- --nocapture`

use crate::tokenizer::FxHashMap;

/// One step of training, after the most frequent pair (left, right) was chosen and given the id
/// `new_id`. `words[i]` is a distinct pre-token as token ids, `counts[i]` how often it occurs, and
/// `pair_counts` the number of times each adjacent pair occurs in all words (weighted by counts).
///
/// Write: replace (left, right) by `new_id` in every word that contains it, left to right
/// ("a a a" with (a, a) becomes "aa a"), and update `pair_counts` from those words only.
///
/// Hints:
/// - Do not recount every word: only words that contain the pair change.
/// - For a word that changes: subtract its count from each of its adjacent pairs, merge, then add its
///   count to each adjacent pair of the merged word. `train.rs` has `merge_word` and `add_pairs`.
/// - Remove the pairs whose count reaches 0, so the trainer does not choose them.
pub fn merge_and_update(
    words: &mut [Vec<u32>],
    counts: &[u64],
    pair_counts: &mut FxHashMap<(u32, u32), i64>,
    (left, right): (u32, u32),
    new_id: u32,
) {
    todo!("exercise merge_and_update: write it in exercises/bpe_merge.rs (see EXERCISES.md)")
}
