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
        self.hash
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

/// Encodes one piece: `byte_ids` maps each byte to its one-byte token, `merges` maps a pair to its
/// merge. Appends the resulting ids to `out`.
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
