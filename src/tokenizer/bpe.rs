//! Byte-pair encoding of one piece (a "word" from `pretokenize.rs`), and the fast hash map it uses.
//!
//! Start with one token per byte, then repeatedly merge the adjacent pair whose merge was learned
//! earliest (lowest rank in vocab.bpe), until no adjacent pair has a merge. Ties (the same pair
//! twice) go to the leftmost, as in GPT-2's `encoder.py`.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// A small, fast, non-cryptographic hasher (the "FxHash" used inside rustc). Our keys are short
/// byte strings and pairs of ids that no adversary chooses, so we do not need SipHash's protection.
#[derive(Default, Clone, Copy)]
pub struct FxHasher {
    hash: u64,
}

const FX_SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

impl FxHasher {
    #[inline]
    fn add(&mut self, word: u64) {
        self.hash = (self.hash.rotate_left(5) ^ word).wrapping_mul(FX_SEED);
    }
}

impl Hasher for FxHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            self.add(u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]));
        }
        let mut tail = 0u64;
        for (i, &b) in chunks.remainder().iter().enumerate() {
            tail |= (b as u64) << (8 * i);
        }
        self.add(tail);
    }

    #[inline]
    fn write_u8(&mut self, i: u8) {
        self.add(i as u64);
    }

    #[inline]
    fn write_u32(&mut self, i: u32) {
        self.add(i as u64);
    }

    #[inline]
    fn write_u64(&mut self, i: u64) {
        self.add(i);
    }

    #[inline]
    fn write_usize(&mut self, i: usize) {
        self.add(i as u64);
    }

    #[inline]
    fn finish(&self) -> u64 {
        // The multiply mixes input bits only upwards, so the low bits are weak; hashbrown picks the
        // bucket from the low bits. Rotating the well-mixed high bits down (as rustc-hash 2 does)
        // keeps keys that differ only in high bits, like (left, right) id pairs, from colliding.
        self.hash.rotate_left(26)
    }
}

/// A HashMap using `FxHasher`.
pub type FxHashMap<K, V> = HashMap<K, V, BuildHasherDefault<FxHasher>>;

/// One learned merge: its rank (0 = learned first, merged first) and the token it makes.
#[derive(Clone, Copy, Debug)]
pub struct Merge {
    pub rank: u32,
    pub merged: u32,
}

/// Key of the merge table: the pair (left, right) of token ids packed into one u64.
#[inline]
pub fn pair_key(left: u32, right: u32) -> u64 {
    ((left as u64) << 32) | right as u64
}

/// Pieces at least this long use `bpe_word_long`: the linear scan of `bpe_word` costs O(n) per merge,
/// so O(n^2) for a piece of n bytes (seconds for a 100 kB run of letters without a space).
pub const LONG_WORD: usize = 256;

/// Encodes one piece: `byte_ids` maps each byte to its one-byte token, `merges` maps a pair to its
/// merge. Appends the resulting ids to `out`. Long pieces go to `bpe_word_long`, which gives the same
/// ids in O(n log n).
pub fn bpe(word: &[u8], byte_ids: &[u32; 256], merges: &FxHashMap<u64, Merge>, out: &mut Vec<u32>) {
    if word.len() >= LONG_WORD {
        bpe_word_long(word, byte_ids, merges, out);
    } else {
        bpe_word(word, byte_ids, merges, out);
    }
}

/// BPE of one piece, the simple way: a vector of tokens and a linear scan for the best pair.
pub fn bpe_word(word: &[u8], byte_ids: &[u32; 256], merges: &FxHashMap<u64, Merge>, out: &mut Vec<u32>) {
    // parts: the current tokens of the word, (n); ranks[i]: rank of merging parts[i] and parts[i+1], (n-1).
    let mut parts: Vec<u32> = word.iter().map(|&b| byte_ids[b as usize]).collect();
    let rank_of = |parts: &[u32], i: usize| merges.get(&pair_key(parts[i], parts[i + 1])).map_or(u32::MAX, |m| m.rank);
    let mut ranks: Vec<u32> = (0..parts.len().saturating_sub(1)).map(|i| rank_of(&parts, i)).collect();

    // Find the lowest-ranked pair (leftmost on ties). A linear scan: words are short.
    while let Some((i, &rank)) = ranks.iter().enumerate().min_by_key(|&(_, &r)| r) {
        if rank == u32::MAX {
            break; // no adjacent pair can merge
        }
        // Merge parts[i] and parts[i+1] into one token.
        parts[i] = merges[&pair_key(parts[i], parts[i + 1])].merged;
        parts.remove(i + 1);
        ranks.remove(i);
        // Only the pairs touching the new token changed.
        if i > 0 {
            ranks[i - 1] = rank_of(&parts, i - 1);
        }
        if i < ranks.len() {
            ranks[i] = rank_of(&parts, i);
        }
    }
    out.extend_from_slice(&parts);
}

/// BPE of one piece in O(n log n): the same merges as `bpe_word`, in the same order, but the next
/// pair to merge comes from a min-heap of (rank, position) instead of a scan, and the tokens form a
/// linked list so a merge does not shift the rest of the word.
pub fn bpe_word_long(word: &[u8], byte_ids: &[u32; 256], merges: &FxHashMap<u64, Merge>, out: &mut Vec<u32>) {
    use std::cmp::Reverse;
    use std::collections::BinaryHeap;

    let n = word.len();
    // Token i starts at byte i; after merges only some starts are `alive`. next/prev link live tokens
    // (n and usize::MAX mean none).
    let mut ids: Vec<u32> = word.iter().map(|&b| byte_ids[b as usize]).collect();
    let mut alive = vec![true; n];
    let mut next: Vec<usize> = (1..=n).collect();
    let mut prev: Vec<usize> = (0..n).map(|i| i.wrapping_sub(1)).collect();
    let rank_at = |ids: &[u32], left: usize, right: usize| merges.get(&pair_key(ids[left], ids[right])).map(|m| m.rank);

    // Candidate merges as (rank, left position): the heap pops the lowest rank, then the leftmost.
    let mut heap = BinaryHeap::new();
    for i in 0..n.saturating_sub(1) {
        if let Some(rank) = rank_at(&ids, i, i + 1) {
            heap.push(Reverse((rank, i)));
        }
    }
    while let Some(Reverse((rank, i))) = heap.pop() {
        // Entries go stale when a neighbour merges: skip those that no longer describe a live pair.
        let j = if alive[i] { next[i] } else { n };
        if j >= n || rank_at(&ids, i, j) != Some(rank) {
            continue;
        }
        // Merge token j into token i.
        ids[i] = merges[&pair_key(ids[i], ids[j])].merged;
        alive[j] = false;
        next[i] = next[j];
        if next[j] < n {
            prev[next[j]] = i;
        }
        // The two pairs that now touch token i.
        let p = prev[i];
        if p < n {
            if let Some(r) = rank_at(&ids, p, i) {
                heap.push(Reverse((r, p)));
            }
        }
        if next[i] < n {
            if let Some(r) = rank_at(&ids, i, next[i]) {
                heap.push(Reverse((r, i)));
            }
        }
    }
    let mut i = 0;
    while i < n {
        out.push(ids[i]);
        i = next[i];
    }
}
