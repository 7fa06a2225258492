//! Parquet input: FineWeb and FineWeb-Edu as they ship (one document a row in a `text` column, plus
//! `id`, `url`, `date`, ...; many row groups a file; Snappy or zstd pages). Read with Apache Arrow's
//! `parquet` crate, one row group at a time and a batch of rows at a time within it, so memory holds
//! one page and one batch of documents, whatever the file's size. Only the `text` column is decoded.
//! Its twin is the `.jsonl` reader in `input.rs`; both hand documents to `shards.rs` the same way.

use std::borrow::Cow;
use std::path::Path;

use ::parquet::basic::Type as PhysicalType;
use ::parquet::column::reader::ColumnReader;
use ::parquet::data_type::ByteArray;
use ::parquet::file::reader::{FileReader, SerializedFileReader};
use anyhow::{bail, Context};

/// The column holding the documents.
const TEXT_COLUMN: &str = "text";
/// Rows decoded at a time.
const BATCH_ROWS: usize = 1024;

fn open(path: &Path) -> anyhow::Result<SerializedFileReader<std::fs::File>> {
    let name = path.display();
    let file = std::fs::File::open(path).with_context(|| format!("{name}: cannot read the file"))?;
    SerializedFileReader::new(file).with_context(|| format!("{name}: not a readable parquet file"))
}

/// The index of the top-level `text` column, which must hold strings (BYTE_ARRAY).
fn text_column(path: &Path, reader: &SerializedFileReader<std::fs::File>) -> anyhow::Result<usize> {
    let schema = reader.metadata().file_metadata().schema_descr();
    let columns: Vec<String> = schema.columns().iter().map(|c| c.path().string()).collect();
    let Some(i) = columns.iter().position(|c| c == TEXT_COLUMN) else {
        bail!(
            "{}: no \"{TEXT_COLUMN}\" column (the columns are: {}); FineWeb's documents are in \"{TEXT_COLUMN}\"",
            path.display(),
            columns.join(", ")
        );
    };
    let column = schema.column(i);
    if column.physical_type() != PhysicalType::BYTE_ARRAY || column.max_rep_level() > 0 {
        bail!(
            "{}: the \"{TEXT_COLUMN}\" column holds {:?}{}, expected one string a row",
            path.display(),
            column.physical_type(),
            if column.max_rep_level() > 0 { " lists" } else { "" }
        );
    }
    Ok(i)
}

/// The uncompressed size of the `text` column over all row groups: the progress line's total.
pub(super) fn text_size(path: &Path) -> u64 {
    let Ok(reader) = open(path) else { return 0 };
    let Ok(col) = text_column(path, &reader) else { return 0 };
    reader.metadata().row_groups().iter().map(|rg| rg.column(col).uncompressed_size().max(0) as u64).sum()
}

/// Calls `each` with the `text` of every row, in file order.
pub(super) fn for_each_document(
    path: &Path,
    mut each: impl FnMut(Cow<'static, str>) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let name = path.display();
    let reader = open(path)?;
    let col = text_column(path, &reader)?;
    let max_def = reader.metadata().file_metadata().schema_descr().column(col).max_def_level();
    let mut row = 0usize;
    let (mut values, mut defs): (Vec<ByteArray>, Vec<i16>) = (Vec::with_capacity(BATCH_ROWS), Vec::new());
    for g in 0..reader.num_row_groups() {
        let group = reader.get_row_group(g).with_context(|| format!("{name}: row group {g} cannot be read"))?;
        let ColumnReader::ByteArrayColumnReader(mut text) =
            group.get_column_reader(col).with_context(|| format!("{name}: row group {g} cannot be read"))?
        else {
            bail!("{name}: the \"{TEXT_COLUMN}\" column is not a string column");
        };
        loop {
            values.clear();
            defs.clear();
            let def_levels = if max_def > 0 { Some(&mut defs) } else { None };
            let (rows, _, _) = text
                .read_records(BATCH_ROWS, def_levels, None, &mut values)
                .with_context(|| format!("{name}: row group {g} cannot be decoded (near row {row})"))?;
            if rows == 0 {
                break;
            }
            if max_def > 0 {
                if let Some(null) = defs.iter().position(|&d| d < max_def) {
                    bail!("{name}: row {}: the \"{TEXT_COLUMN}\" value is null", row + null);
                }
            }
            for (k, value) in values.drain(..).enumerate() {
                let text = String::from_utf8(value.data().to_vec()).map_err(|e| {
                    anyhow::anyhow!(
                        "{name}: row {}: the text is not valid UTF-8 (at byte {})",
                        row + k,
                        e.utf8_error().valid_up_to()
                    )
                })?;
                each(Cow::Owned(text))?;
            }
            row += rows;
        }
    }
    if row == 0 {
        bail!("{name}: no documents (the file has no rows)");
    }
    Ok(())
}
