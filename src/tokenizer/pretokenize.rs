//! GPT-2's pre-tokenizer, written out by hand: it cuts text into the pieces ("words") that BPE then
//! encodes one at a time. Merges never cross a piece boundary.
//!
//! GPT-2 (and tiktoken) describe the cut with one regular expression, tried left to right at each
//! position, first alternative that matches wins:
//!
//! ```text
//! 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
//! ```
//!
//! Read as rules, at the start of each piece:
//! 1. a contraction: `'` followed by lowercase `s t m d re ve ll` (so "it's" is "it" + "'s",
//!    but "IT'S" is "IT" + "'" + "S": GPT-2 did not make these case-insensitive);
//! 2. an optional single space then a run of letters (" hello");
//! 3. an optional single space then a run of numbers (" 2024");
//! 4. an optional single space then a run of anything else that is not white space (" ...");
//! 5. a run of white space. If it reaches the end of the text it is all one piece. Otherwise its last
//!    character is left for the next piece (so that " word" keeps its space), unless the run is a
//!    single character, which then stands alone.
//!
//! Character classes come from `unicode_tables.rs` (generated, Unicode 16.0.0).

use super::unicode_tables::{char_class, CharClass, ASCII_CLASS};

/// Iterator over the pieces of a text: each item is a `&str` slice of the input, and the pieces
/// concatenated give back the input exactly.
pub struct Pieces<'a> {
    text: &'a str,
    /// Byte offset where the next piece starts.
    pos: usize,
}

/// Cuts `text` into GPT-2's pre-tokens.
pub fn pieces(text: &str) -> Pieces<'_> {
    Pieces { text, pos: 0 }
}

impl<'a> Iterator for Pieces<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        if self.pos >= self.text.len() {
            return None;
        }
        let start = self.pos;
        let end = piece_end(self.text, start);
        self.pos = end;
        Some(&self.text[start..end])
    }
}

/// The character starting at byte `i` (which must be a char boundary) and its class and length in bytes.
#[inline]
fn char_at(text: &str, i: usize) -> Option<(char, CharClass, usize)> {
    let b = *text.as_bytes().get(i)?;
    if b < 128 {
        // ASCII fast path: one byte, one table look-up.
        return Some((b as char, ASCII_CLASS[b as usize], 1));
    }
    let c = text[i..].chars().next()?;
    Some((c, char_class(c), c.len_utf8()))
}

/// Class of the character at byte `i`, or None at the end of the text.
#[inline]
fn class_at(text: &str, i: usize) -> Option<CharClass> {
    char_at(text, i).map(|(_, class, _)| class)
}

/// Byte offset just past the run of characters of class `class` that starts at byte `i`.
#[inline]
fn run_end(text: &str, mut i: usize, class: CharClass) -> usize {
    let bytes = text.as_bytes();
    while i < bytes.len() {
        let b = bytes[i];
        if b < 128 {
            if ASCII_CLASS[b as usize] != class {
                break;
            }
            i += 1;
        } else {
            match char_at(text, i) {
                Some((_, c, len)) if c == class => i += len,
                _ => break,
            }
        }
    }
    i
}

/// Length in bytes of a contraction (`'s`, `'re`, ...) at byte `i`, or 0 if there is none.
#[inline]
fn contraction_len(bytes: &[u8], i: usize) -> usize {
    // bytes[i] is the apostrophe.
    match (bytes.get(i + 1), bytes.get(i + 2)) {
        (Some(b'r'), Some(b'e')) | (Some(b'v'), Some(b'e')) | (Some(b'l'), Some(b'l')) => 3,
        (Some(b's' | b't' | b'm' | b'd'), _) => 2,
        _ => 0,
    }
}

/// Byte offset where the piece starting at byte `start` ends (start < text.len()).
fn piece_end(text: &str, start: usize) -> usize {
    let bytes = text.as_bytes();
    let Some((first, class, first_len)) = char_at(text, start) else {
        return text.len();
    };

    // Rule 1: contractions.
    if first == '\'' {
        let n = contraction_len(bytes, start);
        if n > 0 {
            return start + n;
        }
    }

    // Rules 2-4, with their optional leading space: " word", " 42", " ...".
    if first == ' ' {
        // (Followed by another space or the end, it is white space: rule 5.)
        if let Some(next @ (CharClass::Letter | CharClass::Number | CharClass::Other)) = class_at(text, start + 1) {
            return run_end(text, start + 1, next);
        }
    }
    if class != CharClass::Space {
        return run_end(text, start + first_len, class);
    }

    // Rule 5: a run of white space.
    let end = run_end(text, start, CharClass::Space);
    if end == text.len() {
        return end; // `\s+(?!\S)` takes it all at the end of the text
    }
    // Followed by a non-space: leave the run's last character for the next piece,
    // unless that would leave nothing (`\s+` then matches the single character).
    let last_len = text[start..end].chars().next_back().map_or(1, char::len_utf8);
    if end - start > last_len {
        end - last_len
    } else {
        end
    }
}

/// Cuts `text` into chunks of about `target_bytes` at places where GPT-2's split cuts anyway, so that
/// encoding the chunks one by one (in parallel, say) gives exactly the ids of encoding `text` whole.
///
/// A safe place is just after a single `\n` with a non-white-space ASCII character on each side
/// ("end.\nNext"): the pieces there are always "...end.", "\n", "Next..." (the newline stands alone
/// because it is followed by a non-space, and nothing in the pattern looks behind), and a chunk that
/// ends with that lone "\n" still makes it one piece. Text with no such place stays one chunk.
pub fn split_for_parallel(text: &str, target_bytes: usize) -> Vec<&str> {
    let bytes = text.as_bytes();
    let solid = |b: u8| b < 128 && ASCII_CLASS[b as usize] != CharClass::Space;
    let mut chunks = Vec::new();
    let mut start = 0;
    while bytes.len() - start > target_bytes.max(1) {
        // The first safe place at or after start + target_bytes.
        let from = start + target_bytes.max(1);
        let cut = (from..bytes.len().saturating_sub(1))
            .find(|&j| bytes[j] == b'\n' && solid(bytes[j - 1]) && solid(bytes[j + 1]))
            .map(|j| j + 1);
        match cut {
            Some(cut) => {
                chunks.push(&text[start..cut]);
                start = cut;
            }
            None => break,
        }
    }
    if start < bytes.len() || chunks.is_empty() {
        chunks.push(&text[start..]);
    }
    chunks
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(s: &str) -> Vec<&str> {
        pieces(s).collect()
    }

    #[test]
    fn splits_words_with_their_leading_space() {
        assert_eq!(split("Hello world"), ["Hello", " world"]);
        assert_eq!(split("a  b"), ["a", " ", " b"]);
        assert_eq!(split("x\n\ny"), ["x", "\n", "\n", "y"]);
        assert_eq!(split("x\n\n\ny"), ["x", "\n\n", "\n", "y"]);
        assert_eq!(split("end   "), ["end", "   "]);
    }

    #[test]
    fn contractions_are_lowercase_only() {
        assert_eq!(split("it's"), ["it", "'s"]);
        assert_eq!(split("IT'S"), ["IT", "'", "S"]);
        assert_eq!(split("we'll've"), ["we", "'ll", "'ve"]);
        assert_eq!(split("x '.s"), ["x", " '.", "s"]);
    }

    #[test]
    fn parallel_chunks_end_after_a_lone_newline_between_solid_characters() {
        let text = "one two.\n\nthree\nfour five\n six\nseven";
        let chunks = split_for_parallel(text, 3);
        assert_eq!(chunks, ["one two.\n\nthree\n", "four five\n six\n", "seven"]);
        assert_eq!(split_for_parallel("", 10), [""]);
        assert_eq!(split_for_parallel("short", 10), ["short"]);
    }

    #[test]
    fn numbers_and_punctuation_are_separate_runs() {
        assert_eq!(split("abc123!?"), ["abc", "123", "!?"]);
        assert_eq!(split(" 42 ..."), [" 42", " ..."]);
    }
}
