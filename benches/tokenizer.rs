//! Encode and decode throughput of the GPT-2 tokenizer on the shipped Shakespeare text (about 5 MB),
//! one thread, in MB/s (10^6 bytes). Compare with tiktoken on the same text, on the same machine right
//! before or after: `python3 reference/tiktoken_speed.py`. `encode_shakespeare_trained_8k` encodes the
//! same text with an 8192-token vocabulary trained on it (`gpt2 tokenizer train --vocab-size 8192`):
//! encoding with a trained vocabulary should stay within 10% of GPT-2's speed.
//!
//!     cargo bench --bench tokenizer

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use gpt2::tokenizer::train::count_words;
use gpt2::tokenizer::train_fast::train_bpe_fast;
use gpt2::tokenizer::{save, Tokenizer, EOT_TEXT};

/// All plays joined into one text, in file-name order (as reference/tiktoken_speed.py does).
fn shakespeare() -> String {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/data/shakespeare");
    let mut paths: Vec<_> = std::fs::read_dir(dir)
        .expect("data/shakespeare")
        .map(|e| e.expect("directory entry").path())
        .filter(|p| p.to_string_lossy().ends_with("_gut.txt"))
        .collect();
    paths.sort();
    paths.iter().map(|p| std::fs::read_to_string(p).expect("UTF-8 text")).collect()
}

/// An 8192-token vocabulary trained on `text`, as `gpt2 tokenizer train --vocab-size 8192` trains it,
/// loaded from its encoder.json and vocab.bpe.
fn trained_8k(text: &str) -> Tokenizer {
    let specials = vec![EOT_TEXT.to_string()];
    let vocab = train_bpe_fast(&count_words([text], &specials), 8192, &specials, false).expect("trains");
    Tokenizer::from_strs(&save::encoder_json(&vocab), "encoder.json", &save::vocab_bpe(&vocab), "vocab.bpe")
        .expect("its files load")
}

fn bench_tokenizer(c: &mut Criterion) {
    let tok = Tokenizer::gpt2();
    let text = shakespeare();
    let ids = tok.encode(&text);
    let trained = trained_8k(&text);

    let mut group = c.benchmark_group("tokenizer");
    group.sample_size(10);
    group.throughput(Throughput::BytesDecimal(text.len() as u64));
    group.bench_function("encode_shakespeare", |b| b.iter(|| tok.encode(black_box(&text))));
    group.bench_function("encode_shakespeare_trained_8k", |b| b.iter(|| trained.encode(black_box(&text))));
    group.bench_function("decode_shakespeare", |b| b.iter(|| tok.decode(black_box(&ids))));
    group.finish();

    c.bench_function("load_gpt2_vocabulary", |b| b.iter(Tokenizer::gpt2));
}

criterion_group!(benches, bench_tokenizer);
criterion_main!(benches);
