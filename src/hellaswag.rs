//! HellaSwag, scored the way llm.c's `dev/data/hellaswag.py` scores it ("completion style"), which is
//! how GPT-2 reproductions are compared (OpenAI's GPT-2 124M: acc_norm 0.2955 this way).
//!
//! An example is a context and 4 endings, one of them right (`label`). Each ending becomes a row of
//! tokens: the context's tokens, then the ending's, encoded as `" " + ending` (GPT-2's tokens carry
//! their leading space). The model reads each row, and the ending's loss is the cross-entropy of its
//! tokens only, each predicted from the position before it:
//!
//! ```text
//! row      c0 c1 c2 e0 e1 e2          (3 context tokens, 3 ending tokens)
//! input    c0 c1 c2 e0 e1             (the row without its last token)
//! target   c1 c2 e0 e1 e2             (the row shifted by one)
//! scored         ^  ^  ^              (positions 2, 3, 4 predict e0, e1, e2)
//! ```
//!
//! `acc` counts the examples whose right ending has the lowest summed loss, `acc_norm` those whose right
//! ending has the lowest mean loss (summed loss / its number of tokens). Ties go to the first ending,
//! as torch's `argmin` does.
//!
//! Two files are read: rowanz's `hellaswag_val.jsonl` (one JSON object a line with `ctx`, `endings`,
//! `label`) and llm.c's eval `.bin` (see `read_bin` for the layout). Several examples share a forward
//! pass: `score` packs `rows / 4` examples into a batch of rows padded to the longest row; causal
//! attention means the padding after a row's end changes none of its losses. A row longer than the
//! model's context is an error naming the example (llm.c's C loader asserts instead).

use crate::files::{read_file, read_header, FileError, HEADER_BYTES};
use crate::tokenizer::Tokenizer;
use byteorder::{ByteOrder, LittleEndian};
use std::path::Path;

/// llm.c's eval file: header `[20240522, 1, examples, longest example in bytes]`.
pub const EVAL_MAGIC: i32 = 20240522;
pub const EVAL_VERSION: i32 = 1;
/// Every HellaSwag example has 4 endings; llm.c's loader assumes it too.
pub const ENDINGS: usize = 4;

/// One example, tokenized.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Example {
    pub label: usize,
    pub context: Vec<u32>,
    pub endings: Vec<Vec<u32>>,
}

impl Example {
    /// The longest of its 4 rows, context + ending, in tokens.
    pub fn longest_row(&self) -> usize {
        self.context.len() + self.endings.iter().map(Vec::len).max().unwrap_or(0)
    }
}

/// Reads HellaSwag from a `.jsonl` file (tokenized here with GPT-2's tokenizer) or llm.c's `.bin`,
/// told apart by the file's first 4 bytes (the `.bin` magic number).
pub fn read(path: &Path) -> Result<Vec<Example>, FileError> {
    let bytes = read_file(path)?;
    if bytes.len() >= 4 && LittleEndian::read_i32(&bytes) == EVAL_MAGIC {
        parse_bin(path, &bytes)
    } else {
        parse_jsonl(path, &bytes, &Tokenizer::gpt2())
    }
}

/// rowanz's jsonl: `{"ctx": "...", "endings": ["...", x4], "label": 0..3, ...}` a line.
pub fn parse_jsonl(path: &Path, bytes: &[u8], tokenizer: &Tokenizer) -> Result<Vec<Example>, FileError> {
    let text = std::str::from_utf8(bytes)
        .map_err(|e| FileError::new(path, format!("invalid UTF-8 at byte offset {}", e.valid_up_to())))?;
    let mut examples = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let at = |m: String| FileError::new(path, format!("line {}: {m}", i + 1));
        if line.trim().is_empty() {
            continue;
        }
        let value: serde_json::Value = serde_json::from_str(line).map_err(|e| at(format!("not valid JSON: {e}")))?;
        let ctx = value.get("ctx").and_then(|v| v.as_str()).ok_or_else(|| at("no \"ctx\" string".into()))?;
        let endings =
            value.get("endings").and_then(|v| v.as_array()).ok_or_else(|| at("no \"endings\" array".into()))?;
        if endings.len() != ENDINGS {
            return Err(at(format!("\"endings\" has {} entries, expected {ENDINGS}", endings.len())));
        }
        let label = value
            .get("label")
            .and_then(|v| v.as_u64())
            .filter(|&l| (l as usize) < ENDINGS)
            .ok_or_else(|| at(format!("\"label\" must be an integer from 0 to {}", ENDINGS - 1)))?;
        let context = tokenizer.encode(ctx);
        if context.is_empty() {
            return Err(at("the context is empty: its first ending token would have nothing to predict it".into()));
        }
        let mut tokenized = Vec::with_capacity(ENDINGS);
        for ending in endings {
            let ending = ending.as_str().ok_or_else(|| at("an ending is not a string".into()))?;
            // GPT-2 tokens carry their leading space: the ending continues the context after one
            tokenized.push(tokenizer.encode(&format!(" {ending}")));
        }
        examples.push(Example { label: label as usize, context, endings: tokenized });
    }
    if examples.is_empty() {
        return Err(FileError::new(path, "no examples (every line is blank)"));
    }
    Ok(examples)
}

/// llm.c's eval `.bin` (written by `dev/data/data_common.py`'s `write_evalfile`): a 256-int32 header
/// `[20240522, 1, examples, longest example in bytes]`, then per example a run of little-endian u16:
/// `65535, bytes of this example (all of it, these fields included), index, label, endings (4),
/// context length, its tokens, then for each ending its length and its tokens`.
pub fn parse_bin(path: &Path, bytes: &[u8]) -> Result<Vec<Example>, FileError> {
    let h = read_header(path, bytes)?;
    if h[0] != EVAL_MAGIC || h[1] != EVAL_VERSION {
        return Err(FileError::new(
            path,
            format!("header starts [{}, {}], expected [{EVAL_MAGIC}, {EVAL_VERSION}] (llm.c eval file)", h[0], h[1]),
        ));
    }
    let n = usize::try_from(h[2])
        .ok()
        .filter(|&n| n > 0)
        .ok_or_else(|| FileError::new(path, format!("header says {} examples, expected a positive number", h[2])))?;
    let body = &bytes[HEADER_BYTES..];
    if !body.len().is_multiple_of(2) {
        return Err(FileError::new(path, format!("the body is {} bytes, not a whole number of u16s", body.len())));
    }
    let words: Vec<u16> = body.chunks_exact(2).map(LittleEndian::read_u16).collect();
    // no more examples than the file could hold (each is at least 8 u16s)
    let mut examples = Vec::with_capacity(n.min(words.len() / 8));
    let mut pos = 0;
    for i in 0..n {
        let err = |m: String| FileError::new(path, format!("example {i} (at byte {}): {m}", HEADER_BYTES + 2 * pos));
        let Some(head) = words.get(pos..pos + 5) else {
            return Err(err(format!("truncated: the header says {n} examples, the file ends after {i}")));
        };
        if head[0] != 65535 {
            return Err(err(format!("starts with {}, expected the delimiter 65535", head[0])));
        }
        let len_words = head[1] as usize / 2;
        if head[1] % 2 != 0 || len_words < 6 {
            return Err(err(format!("says it is {} bytes: too short, or not a whole number of u16s", head[1])));
        }
        let Some(example) = words.get(pos..pos + len_words) else {
            return Err(err(format!("says it is {} bytes, but the file ends before that", head[1])));
        };
        if head[2] as usize != i {
            return Err(err(format!("holds index {}, expected {i}", head[2])));
        }
        let (label, endings) = (head[3] as usize, head[4] as usize);
        if endings != ENDINGS || label >= endings {
            return Err(err(format!(
                "has {endings} endings and label {label}: expected {ENDINGS} endings and a label below it"
            )));
        }
        // then: a length and that many tokens, for the context and each ending
        let mut at = 5;
        let mut take = |what: &str| -> Result<Vec<u32>, FileError> {
            let len = *example.get(at).ok_or_else(|| err(format!("ends before the {what}'s length")))? as usize;
            let tokens = example
                .get(at + 1..at + 1 + len)
                .ok_or_else(|| err(format!("the {what} of {len} tokens runs past the example's end")))?;
            if len == 0 {
                return Err(err(format!("the {what} is empty")));
            }
            at += 1 + len;
            Ok(tokens.iter().map(|&t| t as u32).collect())
        };
        let context = take("context")?;
        let endings = (0..ENDINGS).map(|e| take(&format!("ending {e}"))).collect::<Result<Vec<_>, _>>()?;
        if at != len_words {
            return Err(err(format!("says it is {} bytes, but its fields take {}", head[1], 2 * at)));
        }
        examples.push(Example { label, context, endings });
        pos += len_words;
    }
    if pos != words.len() {
        return Err(FileError::new(
            path,
            format!("{} bytes after the {n} examples the header announces", 2 * (words.len() - pos)),
        ));
    }
    Ok(examples)
}

/// Writes examples as llm.c's eval `.bin` (the inverse of `parse_bin`); for tests and for users who
/// want llm.c to read a file we tokenized.
pub fn write_bin(path: &Path, examples: &[Example]) -> Result<(), FileError> {
    let mut words: Vec<u16> = Vec::new();
    let mut longest = 0;
    for (i, ex) in examples.iter().enumerate() {
        let start = words.len();
        words.extend([65535, 0, i as u16, ex.label as u16, ex.endings.len() as u16]);
        for part in std::iter::once(&ex.context).chain(&ex.endings) {
            words.push(part.len() as u16);
            words.extend(part.iter().map(|&t| t as u16));
        }
        let bytes = 2 * (words.len() - start);
        words[start + 1] = bytes as u16;
        longest = longest.max(bytes);
    }
    let header = crate::files::header_bytes(&[EVAL_MAGIC, EVAL_VERSION, examples.len() as i32, longest as i32]);
    crate::files::write_atomic(path, |w| {
        w.write_all(&header)?;
        let mut bytes = vec![0u8; 2 * words.len()];
        LittleEndian::write_u16_into(&words, &mut bytes);
        w.write_all(&bytes)
    })
}

/// The losses of one example's 4 endings and what they pick.
#[derive(Clone, Debug, PartialEq)]
pub struct ExampleScore {
    /// Summed and mean cross-entropy over each ending's tokens.
    pub sum_loss: [f32; ENDINGS],
    pub mean_loss: [f32; ENDINGS],
    /// argmin of sum_loss (acc) and of mean_loss (acc_norm).
    pub pred: usize,
    pub pred_norm: usize,
}

/// The totals over examples.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Accuracy {
    pub examples: usize,
    pub correct: usize,
    pub correct_norm: usize,
}

impl Accuracy {
    pub fn acc(&self) -> f64 {
        self.correct as f64 / self.examples.max(1) as f64
    }
    pub fn acc_norm(&self) -> f64 {
        self.correct_norm as f64 / self.examples.max(1) as f64
    }
}

/// The first index of the smallest value (torch's argmin).
fn argmin(x: &[f32]) -> usize {
    let mut best = 0;
    for (i, &v) in x.iter().enumerate() {
        if v < x[best] {
            best = i;
        }
    }
    best
}

/// Checks every row fits in `max_t` input positions (a row of n tokens needs n - 1: the last is only
/// a target) before any work is done.
pub fn check_fits(examples: &[Example], max_t: usize, what: &str) -> Result<(), String> {
    match examples.iter().position(|e| e.longest_row() - 1 > max_t) {
        Some(i) => Err(format!(
            "HellaSwag example {i} has a row of {} tokens (context {} + ending), longer than {what} of {max_t} \
             positions + 1",
            examples[i].longest_row(),
            examples[i].context.len()
        )),
        None => Ok(()),
    }
}

/// Scores `examples`, `rows / 4` at a time: `forward(inputs, targets, b, t)` must return the B*T
/// per-position losses of the model on that batch. `progress(done, accuracy)` is called after each batch.
pub fn score(
    examples: &[Example],
    rows: usize,
    mut forward: impl FnMut(&[u32], &[u32], usize, usize) -> anyhow::Result<Vec<f32>>,
    mut progress: impl FnMut(usize, &Accuracy),
) -> anyhow::Result<(Accuracy, Vec<ExampleScore>)> {
    let per_batch = (rows / ENDINGS).max(1);
    let mut total = Accuracy::default();
    let mut scores = Vec::with_capacity(examples.len());
    let (mut inputs, mut targets) = (Vec::new(), Vec::new());
    for batch in examples.chunks(per_batch) {
        // the batch: 4 rows per example, all padded to the longest row (minus its last token)
        let b = batch.len() * ENDINGS;
        let t = batch.iter().map(|e| e.longest_row() - 1).max().unwrap_or(1).max(1);
        inputs.clear();
        inputs.resize(b * t, 0);
        targets.clear();
        targets.resize(b * t, 0);
        for (e, ex) in batch.iter().enumerate() {
            for (k, ending) in ex.endings.iter().enumerate() {
                let r = (e * ENDINGS + k) * t;
                let row: Vec<u32> = ex.context.iter().chain(ending).copied().collect();
                inputs[r..r + row.len() - 1].copy_from_slice(&row[..row.len() - 1]);
                targets[r..r + row.len() - 1].copy_from_slice(&row[1..]);
            }
        }
        let losses = forward(&inputs, &targets, b, t)?;
        anyhow::ensure!(losses.len() == b * t, "the forward pass returned {} losses for B*T = {}", losses.len(), b * t);
        for (e, ex) in batch.iter().enumerate() {
            let mut sum_loss = [0.0f32; ENDINGS];
            let mut mean_loss = [0.0f32; ENDINGS];
            for (k, ending) in ex.endings.iter().enumerate() {
                // ending token j sits at row position context + j and is predicted at the one before
                let r = (e * ENDINGS + k) * t + ex.context.len() - 1;
                sum_loss[k] = losses[r..r + ending.len()].iter().sum();
                mean_loss[k] = sum_loss[k] / ending.len() as f32;
            }
            let (pred, pred_norm) = (argmin(&sum_loss), argmin(&mean_loss));
            total.examples += 1;
            total.correct += (pred == ex.label) as usize;
            total.correct_norm += (pred_norm == ex.label) as usize;
            scores.push(ExampleScore { sum_loss, mean_loss, pred, pred_norm });
        }
        progress(total.examples, &total);
    }
    Ok((total, scores))
}
