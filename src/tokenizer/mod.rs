//! GPT-2's tokenizer: byte-level byte-pair encoding (BPE), written by hand.
//!
//! Text becomes token ids in three steps:
//! 1. `pretokenize.rs` cuts the text into pieces ("Hello", " world", "!") with GPT-2's split rules;
//! 2. each piece's UTF-8 bytes start as one token per byte (GPT-2's 256 base tokens);
//! 3. `bpe.rs` merges adjacent tokens in the order GPT-2 learned the merges (data/gpt2/vocab.bpe).
//!
//! The vocabulary files store tokens as printable strings: GPT-2 maps each byte to a visible
//! character (`bytes_to_unicode` below, so a space is stored as "Ġ"). We undo that map once, when
//! loading, and work with raw bytes from then on. Decoding is just concatenating each token's bytes.
//!
//! `<|endoftext|>` (id 50256) is a special token that `encode` never produces: the text
//! "<|endoftext|>" inside a document is encoded as ordinary text. Callers add the id themselves.
//!
//! ```
//! use gpt2::tokenizer::Tokenizer;
//! let tok = Tokenizer::gpt2();
//! let ids = tok.encode("Hello world");
//! assert_eq!(ids, [15496, 995]); // "Hello", " world"
//! assert_eq!(tok.decode(&ids).unwrap(), "Hello world");
//! ```
//!
//! Your own vocabulary: `train.rs` learns merges from text (the lesson version; `train_fast.rs` is its
//! fast twin), `save.rs` writes them as encoder.json + vocab.bpe (and Hugging Face's tokenizer.json),
//! and `Tokenizer::from_dir` loads them like GPT-2's. Tokens that no merge makes and that are not a
//! byte are special tokens (`<|endoftext|>`, ...): `encode` never produces them.
//!
//! The twin of this module is tiktoken's `gpt2` encoding: `tests/tokenizer.rs` checks we produce the
//! same ids on a varied corpus (`reference/tiktoken_golden.py` writes the expected ids).

mod bpe;
pub mod ids;
mod pretokenize;
pub mod save;
mod stream;
pub mod train;
pub mod train_fast;
mod unicode_tables;

pub use bpe::{FxHashMap, FxHasher};
pub use pretokenize::{pieces, split_for_parallel, Pieces};
pub use stream::StreamDecoder;
pub use unicode_tables::{char_class, CharClass};

use std::fmt;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use bpe::{bpe, pair_key, Merge};

/// GPT-2's vocabulary (token -> id), as shipped in data/gpt2 and embedded in the binary.
pub const GPT2_ENCODER_JSON: &str = include_str!("../../data/gpt2/encoder.json");
/// GPT-2's 50,000 merges in the order they were learned.
pub const GPT2_VOCAB_BPE: &str = include_str!("../../data/gpt2/vocab.bpe");
/// The text of the special end-of-text token.
pub const EOT_TEXT: &str = "<|endoftext|>";

/// Magic number and version of llm.c's tokenizer file (`tokenizer.bin`).
pub const LLMC_TOKENIZER_MAGIC: i32 = 20240328;
pub const LLMC_TOKENIZER_VERSION: i32 = 2;

/// What can go wrong loading vocabulary files or decoding ids.
#[derive(Debug)]
pub enum TokenizerError {
    /// A file could not be read or written.
    Io { path: PathBuf, source: io::Error },
    /// A vocabulary file is malformed; `line` is 1-based, 0 when the problem is not on one line.
    Format { file: String, line: usize, message: String },
    /// `decode` got an id that is not in the vocabulary; `position` is its index in the input.
    IdOutOfRange { id: u32, position: usize, vocab_size: usize },
}

impl fmt::Display for TokenizerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TokenizerError::Io { path, source } => write!(f, "{}: {source}", path.display()),
            TokenizerError::Format { file, line: 0, message } => write!(f, "{file}: {message}"),
            TokenizerError::Format { file, line, message } => write!(f, "{file}:{line}: {message}"),
            TokenizerError::IdOutOfRange { id, position, vocab_size } => write!(
                f,
                "token id {id} at position {position} is out of range (the vocabulary has ids 0..{})",
                vocab_size - 1
            ),
        }
    }
}

impl std::error::Error for TokenizerError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            TokenizerError::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// GPT-2's map from the 256 byte values to printable characters, as in GPT-2's `encoder.py`:
/// printable Latin-1 bytes ('!'..='~', '¡'..='¬', '®'..='ÿ') map to themselves, the other 68 bytes
/// (control characters, space, ...) to U+0100, U+0101, ... in byte order. So b' ' (32) -> 'Ġ' (U+0120).
pub fn bytes_to_unicode() -> [char; 256] {
    let printable = |b: u32| (0x21..=0x7E).contains(&b) || (0xA1..=0xAC).contains(&b) || (0xAE..=0xFF).contains(&b);
    let mut map = ['\0'; 256];
    let mut next_unprintable = 256u32;
    for b in 0..256u32 {
        let cp = if printable(b) {
            b
        } else {
            next_unprintable += 1;
            next_unprintable - 1
        };
        map[b as usize] = char::from_u32(cp).unwrap_or(char::REPLACEMENT_CHARACTER);
    }
    map
}

/// `Tokenizer::gpt2().digest()`, computed once.
pub fn gpt2_digest() -> i32 {
    static DIGEST: std::sync::OnceLock<i32> = std::sync::OnceLock::new();
    *DIGEST.get_or_init(|| Tokenizer::gpt2().digest())
}

/// A loaded byte-level BPE vocabulary.
#[derive(Clone)]
pub struct Tokenizer {
    /// Bytes of each token, indexed by id, (V).
    tokens: Vec<Vec<u8>>,
    /// Bytes -> id for every ordinary token (not `<|endoftext|>`): most pieces are one token.
    encoder: FxHashMap<Vec<u8>, u32>,
    /// The one-byte token of each byte value.
    byte_ids: [u32; 256],
    /// (left id, right id) packed by `pair_key` -> rank and merged id.
    merges: FxHashMap<u64, Merge>,
    eot: u32,
}

impl Tokenizer {
    /// GPT-2's tokenizer from the vocabulary files embedded in the binary.
    pub fn gpt2() -> Tokenizer {
        // The embedded files are checked by the tests; a failure here is a build problem, not a user's.
        Tokenizer::from_strs(GPT2_ENCODER_JSON, "encoder.json", GPT2_VOCAB_BPE, "vocab.bpe")
            .expect("the embedded GPT-2 vocabulary files are valid")
    }

    /// Loads a tokenizer from GPT-2's two files: encoder.json (token -> id) and vocab.bpe (merges).
    pub fn from_files(encoder_json: &Path, vocab_bpe: &Path) -> Result<Tokenizer, TokenizerError> {
        let read = |path: &Path| {
            std::fs::read_to_string(path).map_err(|source| TokenizerError::Io { path: path.to_path_buf(), source })
        };
        let (enc, bpe) = (read(encoder_json)?, read(vocab_bpe)?);
        Tokenizer::from_strs(&enc, &encoder_json.display().to_string(), &bpe, &vocab_bpe.display().to_string())
    }

    /// Loads a tokenizer from the contents of encoder.json and vocab.bpe; the names are for errors.
    pub fn from_strs(
        encoder_json: &str,
        encoder_name: &str,
        vocab_bpe: &str,
        bpe_name: &str,
    ) -> Result<Tokenizer, TokenizerError> {
        let mut unicode_to_byte = FxHashMap::default();
        for (b, c) in bytes_to_unicode().iter().enumerate() {
            unicode_to_byte.insert(*c, b as u8);
        }
        let (tokens, eot) = parse_encoder_json(encoder_json, encoder_name, &unicode_to_byte)?;
        let vocab_size = tokens.len();
        let enc_err =
            |line: usize, message: String| TokenizerError::Format { file: encoder_name.into(), line, message };
        let mut encoder = FxHashMap::default();
        for (id, bytes) in tokens.iter().enumerate() {
            if id as u32 != eot {
                encoder.insert(bytes.clone(), id as u32);
            }
        }
        let mut byte_ids = [0u32; 256];
        for (b, slot) in byte_ids.iter_mut().enumerate() {
            *slot = *encoder.get(&vec![b as u8]).ok_or_else(|| enc_err(0, format!("no token for the byte {b}")))?;
        }
        let merges = parse_merges(vocab_bpe, bpe_name, &unicode_to_byte, &encoder)?;
        // Tokens that are neither a byte nor made by a merge are special tokens (`<|endoftext|>`, and
        // those of a trained tokenizer): `encode` never produces them from text.
        let mut made = vec![false; vocab_size];
        for id in byte_ids.iter().chain(merges.values().map(|m| &m.merged)) {
            made[*id as usize] = true;
        }
        encoder.retain(|_, id| made[*id as usize]);
        Ok(Tokenizer { tokens, encoder, byte_ids, merges, eot })
    }

    /// Loads a tokenizer directory as `gpt2 tokenizer train` writes it: encoder.json and vocab.bpe.
    pub fn from_dir(dir: &Path) -> Result<Tokenizer, TokenizerError> {
        if !dir.is_dir() {
            return Err(TokenizerError::Format {
                file: dir.display().to_string(),
                line: 0,
                message: "not a directory: expected a tokenizer directory with encoder.json and vocab.bpe \
                          (as `gpt2 tokenizer train --out DIR` writes)"
                    .into(),
            });
        }
        Tokenizer::from_files(&dir.join(save::ENCODER_JSON), &dir.join(save::VOCAB_BPE))
    }

    /// GPT-2's tokenizer, or the one in `dir` when given (the `--tokenizer DIR` of every command).
    pub fn gpt2_or_dir(dir: Option<&Path>) -> Result<Tokenizer, TokenizerError> {
        match dir {
            Some(dir) => Tokenizer::from_dir(dir),
            None => Ok(Tokenizer::gpt2()),
        }
    }

    /// A digest of the vocabulary (every token's bytes by id, and the merges by rank), as a positive
    /// i32 for a checkpoint header slot: two tokenizers with the same digest encode alike.
    /// CRC-32C, with its top bit cleared (and 0 made 1, so that 0 can mean "not recorded").
    pub fn digest(&self) -> i32 {
        let mut crc = 0u32;
        for t in &self.tokens {
            crc = crc32c::crc32c_append(crc, &(t.len() as u32).to_le_bytes());
            crc = crc32c::crc32c_append(crc, t);
        }
        let mut merges: Vec<(u32, u64, u32)> = self.merges.iter().map(|(&k, m)| (m.rank, k, m.merged)).collect();
        merges.sort_unstable();
        for (rank, key, merged) in merges {
            crc = crc32c::crc32c_append(crc, &rank.to_le_bytes());
            crc = crc32c::crc32c_append(crc, &key.to_le_bytes());
            crc = crc32c::crc32c_append(crc, &merged.to_le_bytes());
        }
        crc32c::crc32c_append(crc, &self.eot.to_le_bytes());
        ((crc & 0x7fff_ffff) as i32).max(1)
    }

    /// Number of tokens, including `<|endoftext|>` (50257 for GPT-2).
    pub fn vocab_size(&self) -> usize {
        self.tokens.len()
    }

    /// The id of `<|endoftext|>` (50256 for GPT-2).
    pub fn eot_token(&self) -> u32 {
        self.eot
    }

    /// The bytes of one token, or None if `id` is out of range.
    pub fn token_bytes(&self, id: u32) -> Option<&[u8]> {
        self.tokens.get(id as usize).map(Vec::as_slice)
    }

    /// A special token (`<|endoftext|>`, or one given to `tokenizer train --special`): neither a byte
    /// nor made by a merge, so never produced by `encode`, and no text of the documents.
    pub fn is_special(&self, id: u32) -> bool {
        self.token_bytes(id).is_some_and(|bytes| self.encoder.get(bytes) != Some(&id))
    }

    /// Encodes text to token ids. `<|endoftext|>` in the text is ordinary text, never id 50256.
    pub fn encode(&self, text: &str) -> Vec<u32> {
        let mut out = Vec::with_capacity(text.len() / 4 + 1);
        self.encode_into(text, &mut out);
        out
    }

    /// Appends the token ids of `text` to `out`.
    pub fn encode_into(&self, text: &str, out: &mut Vec<u32>) {
        // Pieces that are not one token are BPE-encoded once per call and remembered:
        // piece -> (start, len) of its ids in `cached_ids`.
        let mut cache: FxHashMap<&str, (usize, usize)> = FxHashMap::default();
        let mut cached_ids: Vec<u32> = Vec::new();
        for piece in pieces(text) {
            // Most pieces (" the", " and") are a token of their own.
            if let Some(&id) = self.encoder.get(piece.as_bytes()) {
                out.push(id);
                continue;
            }
            if let Some(&(start, len)) = cache.get(piece) {
                out.extend_from_slice(&cached_ids[start..start + len]);
                continue;
            }
            let start = cached_ids.len();
            bpe(piece.as_bytes(), &self.byte_ids, &self.merges, &mut cached_ids);
            let ids = &cached_ids[start..];
            out.extend_from_slice(ids);
            cache.insert(piece, (start, ids.len()));
        }
    }

    /// Encodes a long text on all cores: cuts it where GPT-2's split cuts anyway
    /// (`split_for_parallel`, about 1 MiB a chunk), encodes the chunks in parallel and joins the ids.
    /// Gives exactly the ids of `encode`.
    pub fn encode_parallel(&self, text: &str) -> Vec<u32> {
        use rayon::prelude::*;
        let chunks = split_for_parallel(text, 1 << 20);
        if chunks.len() == 1 {
            return self.encode(text);
        }
        let parts: Vec<Vec<u32>> = chunks.par_iter().map(|chunk| self.encode(chunk)).collect();
        parts.concat()
    }

    /// The bytes the ids stand for, concatenated. Errors on the first id outside the vocabulary.
    pub fn decode_bytes(&self, ids: &[u32]) -> Result<Vec<u8>, TokenizerError> {
        let mut out = Vec::with_capacity(ids.len() * 4);
        for (position, &id) in ids.iter().enumerate() {
            let bytes = self.token_bytes(id).ok_or(TokenizerError::IdOutOfRange {
                id,
                position,
                vocab_size: self.vocab_size(),
            })?;
            out.extend_from_slice(bytes);
        }
        Ok(out)
    }

    /// The text the ids stand for. Bytes that are not valid UTF-8 (a character cut between tokens,
    /// or ids a model sampled in an odd order) become U+FFFD, as Python's `errors="replace"` does.
    pub fn decode(&self, ids: &[u32]) -> Result<String, TokenizerError> {
        let bytes = self.decode_bytes(ids)?;
        Ok(match String::from_utf8(bytes) {
            Ok(s) => s,
            Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
        })
    }

    /// A decoder that yields text as soon as complete characters arrive (for printing samples).
    pub fn stream_decoder(&self) -> StreamDecoder<'_> {
        StreamDecoder::new(self)
    }

    /// Writes llm.c's tokenizer file: a header of 256 little-endian i32 (`[0]` = 20240328, `[1]` = 2,
    /// `[2]` = vocab size, `[3]` = EOT id), then for each token its length as one byte and its bytes.
    /// The file is written atomically (temporary file, then rename).
    pub fn write_llmc_tokenizer(&self, path: &Path) -> Result<(), TokenizerError> {
        let io_err = |source| TokenizerError::Io { path: path.to_path_buf(), source };
        if let Some((id, t)) = self.tokens.iter().enumerate().find(|(_, t)| t.len() > 255) {
            let message = format!("token {id} is {} bytes, llm.c's format allows at most 255", t.len());
            return Err(TokenizerError::Format { file: path.display().to_string(), line: 0, message });
        }
        let header = crate::files::header_bytes(&[
            LLMC_TOKENIZER_MAGIC,
            LLMC_TOKENIZER_VERSION,
            self.vocab_size() as i32,
            self.eot as i32,
        ]);
        crate::files::write_atomic_io(path, |w| {
            w.write_all(&header)?;
            for t in &self.tokens {
                w.write_all(&[t.len() as u8])?;
                w.write_all(t)?;
            }
            Ok(())
        })
        .map_err(io_err)
    }
}

/// encoder.json's tokens, as bytes indexed by id, and the id of `<|endoftext|>`; `name` is for errors.
fn parse_encoder_json(
    encoder_json: &str,
    name: &str,
    unicode_to_byte: &FxHashMap<char, u8>,
) -> Result<(Vec<Vec<u8>>, u32), TokenizerError> {
    let enc_err = |line: usize, message: String| TokenizerError::Format { file: name.into(), line, message };
    // encoder.json: {"token": id, ...} with tokens written through bytes_to_unicode.
    let json: std::collections::HashMap<String, u32> = serde_json::from_str(encoder_json)
        .map_err(|e| enc_err(e.line(), format!("expected a JSON object of token -> id: {e}")))?;
    let vocab_size = json.len();
    let mut tokens: Vec<Option<Vec<u8>>> = vec![None; vocab_size];
    let mut eot = None;
    for (text, &id) in &json {
        let mapped = text.chars().map(|c| unicode_to_byte.get(&c).copied()).collect::<Option<Vec<u8>>>();
        let bytes = if text == EOT_TEXT {
            eot = Some(id);
            text.as_bytes().to_vec()
        } else {
            // A special token of a trained tokenizer is written as its own text, which may hold
            // characters outside the byte map ("<|im start|>"): its bytes are then its UTF-8.
            mapped.unwrap_or_else(|| text.as_bytes().to_vec())
        };
        let slot = tokens.get_mut(id as usize).ok_or_else(|| {
            enc_err(0, format!("token {text:?} has id {id}, but ids must be 0..{vocab_size} (one per token)"))
        })?;
        if slot.is_some() {
            return Err(enc_err(0, format!("id {id} is used by two tokens")));
        }
        *slot = Some(bytes);
    }
    // Every slot is filled: vocab_size distinct ids below vocab_size.
    let tokens: Vec<Vec<u8>> = tokens.into_iter().map(Option::unwrap_or_default).collect();
    let eot = eot.ok_or_else(|| enc_err(0, format!("no {EOT_TEXT} token")))?;

    Ok((tokens, eot))
}

/// vocab.bpe's merges, keyed by the pair of ids they join, ranked by line; `name` is for errors.
fn parse_merges(
    vocab_bpe: &str,
    name: &str,
    unicode_to_byte: &FxHashMap<char, u8>,
    encoder: &FxHashMap<Vec<u8>, u32>,
) -> Result<FxHashMap<u64, Merge>, TokenizerError> {
    let bpe_err = |line: usize, message: String| TokenizerError::Format { file: name.into(), line, message };
    // vocab.bpe: "#version: 0.2", then one merge "left right" per line, earliest learned first.
    let to_bytes = |line: usize, s: &str| -> Result<Vec<u8>, TokenizerError> {
        s.chars()
            .map(|c| unicode_to_byte.get(&c).copied())
            .collect::<Option<Vec<u8>>>()
            .ok_or_else(|| bpe_err(line, format!("{s:?} has a character outside GPT-2's byte map")))
    };
    let mut merges = FxHashMap::default();
    let mut rank = 0u32;
    for (i, line) in vocab_bpe.lines().enumerate() {
        let line_no = i + 1;
        if line.starts_with("#version") || line.trim().is_empty() {
            continue;
        }
        let (left, right) = line
            .split_once(' ')
            .ok_or_else(|| bpe_err(line_no, format!("expected two tokens separated by a space, found {line:?}")))?;
        let (left, right) = (to_bytes(line_no, left)?, to_bytes(line_no, right)?);
        let id_of = |bytes: &[u8]| {
            encoder.get(bytes).copied().ok_or_else(|| {
                bpe_err(line_no, format!("{:?} is not in the vocabulary", String::from_utf8_lossy(bytes)))
            })
        };
        let merged = id_of(&[left.as_slice(), right.as_slice()].concat())?;
        let key = pair_key(id_of(&left)?, id_of(&right)?);
        // Keep the first (lowest) rank if a merge is listed twice.
        merges.entry(key).or_insert(Merge { rank, merged });
        rank += 1;
    }
    Ok(merges)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_map_matches_gpt2() {
        let map = bytes_to_unicode();
        assert_eq!(map[b'!' as usize], '!');
        assert_eq!(map[b' ' as usize], 'Ġ');
        assert_eq!(map[b'\n' as usize], 'Ċ');
        assert_eq!(map[0], 'Ā');
        assert_eq!(map[0xAD], 'Ń');
        let mut sorted: Vec<char> = map.to_vec();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), 256, "the map is one-to-one");
    }

    #[test]
    fn heap_bpe_for_long_pieces_merges_like_the_simple_scan() {
        let tok = Tokenizer::gpt2();
        let mut state = 12345u64;
        let mut rand = |n: u64| {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (state >> 33) % n
        };
        for len in [1, 2, 3, 10, 100, 300, 1000] {
            for _ in 0..20 {
                // Few distinct bytes, so there are many merges and many ties.
                let alphabet: &[u8] = if rand(2) == 0 { b"ab" } else { b"thequickbrownfox  " };
                let word: Vec<u8> = (0..len).map(|_| alphabet[rand(alphabet.len() as u64) as usize]).collect();
                let (mut simple, mut heap) = (Vec::new(), Vec::new());
                bpe::bpe_word(&word, &tok.byte_ids, &tok.merges, &mut simple);
                bpe::bpe_word_long(&word, &tok.byte_ids, &tok.merges, &mut heap);
                assert_eq!(simple, heap, "{:?}", String::from_utf8_lossy(&word));
            }
        }
    }

    #[test]
    fn embedded_vocabulary_loads_with_gpt2_sizes() {
        let tok = Tokenizer::gpt2();
        assert_eq!(tok.vocab_size(), crate::config::GPT2_VOCAB_SIZE);
        assert_eq!(tok.eot_token(), crate::config::EOT_TOKEN);
        assert_eq!(tok.merges.len(), 50_000);
        assert_eq!(tok.encode("Hello world"), [15496, 995]);
    }
}
