//! `prepare` on parquet files as FineWeb ships them (`src/prepare/parquet.rs`): several row groups,
//! the documents in a `text` column among others, Snappy or zstd pages. The shards must equal, token
//! for token, those of the same documents given as `.jsonl`.

#[path = "common/parquet.rs"]
mod parquet_writer;
use gpt2::tokenizer::Tokenizer;
use parquet::basic::{Compression, ZstdLevel};
use parquet::data_type::{ByteArray, ByteArrayType};
use parquet::file::properties::WriterProperties;
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::parser::parse_message_type;
use parquet_writer::write_parquet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

fn documents() -> Vec<String> {
    let mut docs: Vec<String> = vec![
        "The first document. It has two sentences.".into(),
        "".into(), // an empty document is an EOT alone, as in .jsonl
        "Unicode: café, naïve, 東京, 🤖 and\nnew lines\n\n".into(),
        "<|endoftext|> inside a document is ordinary text".into(),
    ];
    for i in 0..40 {
        docs.push(format!("Document {i}: {}", "words and more words, ".repeat(i % 7 + 1)));
    }
    docs
}

fn prepare(input: &Path, out: &Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_gpt2"))
        .args(["prepare", "-i", input.to_str().unwrap(), "-o", out.to_str().unwrap(), "--val-tokens", "50"])
        .args(["--shard-tokens", "300"])
        .output()
        .unwrap()
}

fn shard_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "bin") && !p.ends_with("tokenizer.bin"))
        .collect();
    // in stream order: the validation shard holds the first tokens
    files.sort_by_key(|p| (!p.file_name().unwrap().to_string_lossy().starts_with("val_"), p.clone()));
    files
}

fn tokens_of(files: &[PathBuf]) -> Vec<u16> {
    files
        .iter()
        .flat_map(|f| {
            let bytes = std::fs::read(f).unwrap();
            bytes[1024..].chunks_exact(2).map(|b| u16::from_le_bytes([b[0], b[1]])).collect::<Vec<_>>()
        })
        .collect()
}

#[test]
fn parquet_shards_equal_jsonl_shards_token_for_token() {
    let docs = documents();
    let dir = tempfile::tempdir().unwrap();
    // the same documents as .jsonl
    let jsonl = dir.path().join("docs.jsonl");
    let lines: Vec<String> = docs.iter().map(|d| serde_json::json!({ "text": d }).to_string()).collect();
    std::fs::write(&jsonl, lines.join("\n") + "\n").unwrap();
    let out_jsonl = dir.path().join("out_jsonl");
    assert!(prepare(&jsonl, &out_jsonl).status.success());
    let want_files = shard_files(&out_jsonl);
    // and what they must be: EOT before each document, then its tokens
    let tok = Tokenizer::gpt2();
    let mut expected = Vec::new();
    for d in &docs {
        expected.push(50256u16);
        expected.extend(tok.encode(d).iter().map(|&t| t as u16));
    }
    assert_eq!(tokens_of(&want_files), expected);

    for (name, compression) in [
        ("snappy.parquet", Compression::SNAPPY),
        ("zstd.parquet", Compression::ZSTD(ZstdLevel::default())),
        ("plain.parquet", Compression::UNCOMPRESSED),
    ] {
        let path = dir.path().join(name);
        write_parquet(&path, &docs, 5, compression);
        let out = dir.path().join(format!("out_{name}"));
        let run = prepare(&path, &out);
        assert!(run.status.success(), "{name}: {}", String::from_utf8_lossy(&run.stderr));
        let stdout = String::from_utf8_lossy(&run.stdout);
        assert!(stdout.contains(&format!("prepared {} documents", docs.len())), "{stdout}");
        let files = shard_files(&out);
        assert_eq!(files.len(), want_files.len(), "{name}: the same shards");
        for (a, b) in files.iter().zip(&want_files) {
            assert_eq!(std::fs::read(a).unwrap(), std::fs::read(b).unwrap(), "{name}: {} differs", a.display());
        }
        println!("{name}: {} row groups, {} shards equal to the .jsonl run's", docs.len().div_ceil(5), files.len());
    }
}

#[test]
fn bad_parquet_files_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let error = |path: &Path| -> String {
        let run = prepare(path, &dir.path().join("out"));
        assert!(!run.status.success());
        let err = String::from_utf8_lossy(&run.stderr).into_owned();
        println!("{err}");
        assert!(err.contains(&path.display().to_string()), "names the file: {err}");
        err
    };
    let garbage = dir.path().join("garbage.parquet");
    std::fs::write(&garbage, b"this is not parquet at all").unwrap();
    assert!(error(&garbage).contains("not a readable parquet file"));
    // no text column
    let schema = parse_message_type("message schema { optional binary body (STRING); }").unwrap();
    let path = dir.path().join("notext.parquet");
    let mut writer = SerializedFileWriter::new(
        std::fs::File::create(&path).unwrap(),
        Arc::new(schema),
        Arc::new(WriterProperties::builder().build()),
    )
    .unwrap();
    let mut rg = writer.next_row_group().unwrap();
    let mut col = rg.next_column().unwrap().unwrap();
    col.typed::<ByteArrayType>().write_batch(&[ByteArray::from("x")], Some(&[1]), None).unwrap();
    col.close().unwrap();
    rg.close().unwrap();
    writer.close().unwrap();
    let err = error(&path);
    assert!(err.contains("no \"text\" column (the columns are: body)"), "{err}");
}
