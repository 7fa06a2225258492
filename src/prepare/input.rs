//! Where documents come from: plain text files (one document each), `.jsonl` files (one JSON object
//! a line, its "text" field a document) and texts compiled into the binary. `shards.rs` encodes what
//! these yield.

use std::borrow::Cow;
use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;

use anyhow::{bail, Context};

/// Where documents come from.
pub enum Input {
    /// A file on disk: `.jsonl` (one document per line), `.parquet` (one document per row of its
    /// `text` column, `parquet.rs`) or text (one document).
    File(PathBuf),
    /// A text compiled into the binary: (name for messages, the document).
    Embedded(&'static str, &'static str),
}

impl Input {
    /// Size in bytes, for the progress line (0 if unknown).
    pub(super) fn size(&self) -> u64 {
        match self {
            Input::File(path) if is_parquet(path) => super::parquet::text_size(path),
            Input::File(path) => std::fs::metadata(path).map_or(0, |m| m.len()),
            Input::Embedded(_, text) => text.len() as u64,
        }
    }

    /// Calls `each` with every document of this input, in order. A .jsonl file is read a line at a
    /// time, so a file larger than memory is fine.
    pub fn for_each_document(
        &self,
        mut each: impl FnMut(Cow<'static, str>) -> anyhow::Result<()>,
    ) -> anyhow::Result<()> {
        let path = match self {
            Input::Embedded(_, text) => return each(Cow::Borrowed(*text)),
            Input::File(path) => path,
        };
        if is_parquet(path) {
            return super::parquet::for_each_document(path, each);
        }
        let name = path.display();
        let file = std::fs::File::open(path).with_context(|| format!("{name}: cannot read the file"))?;
        if file.metadata().is_ok_and(|m| m.len() == 0) {
            bail!("{name}: the file is empty");
        }
        let mut reader = BufReader::with_capacity(1 << 20, file);
        let is_jsonl = path.extension().is_some_and(|e| e == "jsonl");
        if !is_jsonl {
            // A text file is one document.
            let mut bytes = Vec::new();
            reader.read_to_end(&mut bytes).with_context(|| format!("{name}: cannot read the file"))?;
            let text = String::from_utf8(bytes).map_err(|e| {
                let offset = e.utf8_error().valid_up_to();
                let line = e.as_bytes()[..offset].iter().filter(|&&b| b == b'\n').count() + 1;
                anyhow::anyhow!("{name}:{line}: invalid UTF-8 at byte offset {offset} (line {line})")
            })?;
            return each(Cow::Owned(text));
        }

        // JSON Lines: one object per line, its "text" field is a document; blank lines are skipped.
        let mut line = Vec::new();
        let (mut line_no, mut offset, mut documents) = (0, 0, 0);
        loop {
            line.clear();
            let n = reader.read_until(b'\n', &mut line).with_context(|| format!("{name}: cannot read the file"))?;
            if n == 0 {
                break;
            }
            line_no += 1;
            let text = std::str::from_utf8(&line).map_err(|e| {
                let at = offset + e.valid_up_to();
                anyhow::anyhow!("{name}:{line_no}: invalid UTF-8 at byte offset {at} (line {line_no})")
            })?;
            offset += n;
            if text.trim().is_empty() {
                continue;
            }
            each(Cow::Owned(jsonl_document(&name, line_no, text)?))?;
            documents += 1;
        }
        if documents == 0 {
            bail!("{name}: no documents (every line is blank)");
        }
        Ok(())
    }
}

/// The "text" field of one line of a .jsonl file (line `line_no` of `name`, for errors).
fn jsonl_document(name: &impl std::fmt::Display, line_no: usize, text: &str) -> anyhow::Result<String> {
    let value: serde_json::Value = serde_json::from_str(text).map_err(|e| {
        // serde_json's message ends "at line 1 column N"; its line is always 1 here, so keep the column.
        let message = e.to_string();
        let position = format!(" at line {} column {}", e.line(), e.column());
        let message = message.strip_suffix(&position).unwrap_or(&message);
        anyhow::anyhow!("{name}:{line_no}: not valid JSON (column {}): {message}", e.column())
    })?;
    let mut object = match value {
        serde_json::Value::Object(object) => object,
        other => bail!(
            "{name}:{line_no}: the line is not a JSON object but {}: expected one object a line, like \
             {{\"text\": \"...\"}}",
            json_kind(&other)
        ),
    };
    match object.remove("text") {
        Some(serde_json::Value::String(s)) => Ok(s),
        Some(other) => bail!("{name}:{line_no}: the \"text\" field is not a string but {}", json_kind(&other)),
        None => bail!("{name}:{line_no}: the JSON object has no \"text\" field"),
    }
}

fn is_parquet(path: &std::path::Path) -> bool {
    path.extension().is_some_and(|e| e == "parquet")
}

/// What kind of JSON value this is, for messages: "an array", "a number", ...
fn json_kind(value: &serde_json::Value) -> &'static str {
    match value {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}
