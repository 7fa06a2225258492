//! Text and token ids as the command line reads them: UTF-8 text, and token ids written as decimal
//! numbers (`gpt2 tokenize --decode`). Errors name the input, the line and what was wrong.

use anyhow::bail;

/// The bytes as text, or an error naming the first invalid byte's offset and line.
pub fn utf8(name: &str, bytes: Vec<u8>) -> anyhow::Result<String> {
    String::from_utf8(bytes).map_err(|e| {
        let offset = e.utf8_error().valid_up_to();
        let line = e.as_bytes()[..offset].iter().filter(|&&b| b == b'\n').count() + 1;
        anyhow::anyhow!(
            "{name}:{line}: invalid UTF-8 at byte offset {offset} (line {line}); the input must be UTF-8 text"
        )
    })
}

/// Token ids: plain decimal numbers (ASCII digits only, no sign) separated by white space, each below
/// `vocab_size`. An error names the input, the line, the word, and which number in the input it is.
pub fn parse_ids(name: &str, text: &str, vocab_size: usize) -> anyhow::Result<Vec<u32>> {
    let mut ids = Vec::new();
    for (line_no, line) in text.lines().enumerate() {
        let line_no = line_no + 1;
        for word in line.split_whitespace() {
            let number = ids.len() + 1;
            // `str::parse` would also take a leading '+'; a token id is digits and nothing else.
            if !word.bytes().all(|b| b.is_ascii_digit()) {
                bail!(
                    "{name}:{line_no}: {word:?} (number {number} in the input) is not a token id: expected whole \
                     numbers (digits 0-9 only) separated by white space"
                );
            }
            // Only digits, so parsing fails only when the number is too large for a u32.
            match word.parse::<u32>() {
                Ok(id) if (id as usize) < vocab_size => ids.push(id),
                _ => bail!(
                    "{name}:{line_no}: token id {word} (number {number} in the input) is out of range: {} ids \
                     are 0..{}",
                    if vocab_size == crate::config::GPT2_VOCAB_SIZE { "GPT-2's" } else { "the tokenizer's" },
                    vocab_size - 1
                ),
            }
        }
    }
    Ok(ids)
}
