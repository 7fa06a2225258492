//! Writing FineWeb-like parquet files for the tests (`tests/prepare_parquet.rs`, `tests/mutation.rs`).

use parquet::basic::Compression;
use parquet::data_type::{ByteArray, ByteArrayType, Int64Type};
use parquet::file::properties::WriterProperties;
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::parser::parse_message_type;
use std::path::Path;
use std::sync::Arc;

/// Writes `docs` as a FineWeb-like parquet file: columns id, text, token_count; `per_group` rows a row group.
pub fn write_parquet(path: &Path, docs: &[String], per_group: usize, compression: Compression) {
    let schema = parse_message_type(
        "message schema { optional binary id (STRING); optional binary text (STRING); optional int64 token_count; }",
    )
    .unwrap();
    let props = Arc::new(WriterProperties::builder().set_compression(compression).build());
    let file = std::fs::File::create(path).unwrap();
    let mut writer = SerializedFileWriter::new(file, Arc::new(schema), props).unwrap();
    for (g, group) in docs.chunks(per_group).enumerate() {
        let mut rg = writer.next_row_group().unwrap();
        let defs = vec![1i16; group.len()];
        let ids: Vec<ByteArray> =
            (0..group.len()).map(|i| ByteArray::from(format!("<urn:{g}:{i}>").as_str())).collect();
        let texts: Vec<ByteArray> = group.iter().map(|d| ByteArray::from(d.as_bytes().to_vec())).collect();
        let counts: Vec<i64> = group.iter().map(|d| d.len() as i64).collect();
        let mut col = rg.next_column().unwrap().unwrap();
        col.typed::<ByteArrayType>().write_batch(&ids, Some(&defs), None).unwrap();
        col.close().unwrap();
        let mut col = rg.next_column().unwrap().unwrap();
        col.typed::<ByteArrayType>().write_batch(&texts, Some(&defs), None).unwrap();
        col.close().unwrap();
        let mut col = rg.next_column().unwrap().unwrap();
        col.typed::<Int64Type>().write_batch(&counts, Some(&defs), None).unwrap();
        col.close().unwrap();
        rg.close().unwrap();
    }
    let meta = writer.close().unwrap();
    assert_eq!(meta.row_groups().len(), docs.len().div_ceil(per_group));
}
