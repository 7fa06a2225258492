//! BPE training: the lesson trainer (`src/tokenizer/train.rs`) against the fast one
//! (`train_fast.rs`) on the same words, and pre-token counting on all cores, on 130 KB of the
//! shipped plays to a vocabulary of 500 (the small case). Compare with Hugging Face
//! `tokenizers` on the same text: `reference/bpe_train_vs_hf.py` (README, "Train your own tokenizer").
//!
//!     cargo bench --bench tokenizer_train

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use gpt2::prepare::SHAKESPEARE;
use gpt2::tokenizer::train::{count_words, train_bpe};
use gpt2::tokenizer::train_fast::{count_words_parallel, train_bpe_fast};
use gpt2::tokenizer::FxHashMap;

fn bench_train(c: &mut Criterion) {
    let text: String = SHAKESPEARE.iter().flat_map(|(_, t)| t.chars()).take(130_000).collect();
    let specials = vec!["<|endoftext|>".to_string()];
    let words = count_words([text.as_str()], &specials);

    let mut group = c.benchmark_group("tokenizer_train");
    group.sample_size(10);
    group.bench_function("lesson_130kb_vocab500", |b| b.iter(|| train_bpe(black_box(&words), 500, &specials)));
    group
        .bench_function("fast_130kb_vocab500", |b| b.iter(|| train_bpe_fast(black_box(&words), 500, &specials, false)));
    let docs = vec![text.clone()];
    group.throughput(Throughput::BytesDecimal(text.len() as u64));
    group.bench_function("count_130kb", |b| {
        b.iter(|| {
            let mut counts = FxHashMap::default();
            count_words_parallel(black_box(&docs), &specials, &mut counts);
            counts
        })
    });
    group.finish();
}

criterion_group!(benches, bench_train);
criterion_main!(benches);
