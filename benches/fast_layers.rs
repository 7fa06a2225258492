//! The readable layers against their fast versions in `src/cpu/fast/` (other than matmul, which has
//! `benches/matmul.rs`), at GPT-2 d12 shapes with B = 4, T = 64, on the default rayon pool.
//!
//!   cargo bench --bench fast_layers

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use gpt2::cpu::{attention, fast, gelu};
use std::time::Duration;

const BT: usize = 256;
const C: usize = 768;

fn bench_gelu(crit: &mut Criterion) {
    let n = BT * 4 * C;
    let x: Vec<f32> = (0..n).map(|i| ((i % 1000) as f32 - 500.0) / 100.0).collect();
    let dout = vec![0.5f32; n];
    let (mut out, mut dx) = (vec![0.0f32; n], vec![0.0f32; n]);
    let mut group = crit.benchmark_group("gelu_BT256_4C");
    group.throughput(Throughput::Elements(n as u64)).warm_up_time(Duration::from_millis(500));
    group.bench_function("forward/readable", |b| b.iter(|| gelu::gelu_forward(&mut out, &x)));
    group.bench_function("forward/fast", |b| b.iter(|| fast::gelu::gelu_forward(&mut out, &x)));
    group.bench_function("backward/readable", |b| b.iter(|| gelu::gelu_backward(&mut dx, &x, &dout)));
    group.bench_function("backward/fast", |b| b.iter(|| fast::gelu::gelu_backward(&mut dx, &x, &dout)));
    group.finish();
}

fn bench_attention(crit: &mut Criterion) {
    let (b, t, nh) = (4, 64, 12);
    let inp: Vec<f32> = (0..b * t * 3 * C).map(|i| ((i % 997) as f32 - 498.0) / 500.0).collect();
    let dout = vec![0.01f32; b * t * C];
    let (mut out, mut lse) = (vec![0.0f32; b * t * C], vec![0.0f32; b * nh * t]);
    attention::attention_forward(&mut out, &mut lse, &inp, b, t, C, nh);
    let (mut dinp, mut delta) = (vec![0.0f32; b * t * 3 * C], vec![0.0f32; b * nh * t]);
    let mut scratch = (vec![0.0f32; b * t * C], vec![0.0f32; b * nh * t]);
    let mut group = crit.benchmark_group("attention_B4_T64_NH12");
    group.warm_up_time(Duration::from_millis(500));
    group.bench_function("forward/readable", |bn| {
        bn.iter(|| attention::attention_forward(&mut scratch.0, &mut scratch.1, &inp, b, t, C, nh))
    });
    group.bench_function("forward/fast", |bn| {
        bn.iter(|| fast::attention::attention_forward(&mut scratch.0, &mut scratch.1, &inp, b, t, C, nh))
    });
    group.bench_function("backward/readable", |bn| {
        bn.iter(|| attention::attention_backward(&mut dinp, &mut delta, &dout, &inp, &out, &lse, b, t, C, nh))
    });
    group.bench_function("backward/fast", |bn| {
        bn.iter(|| fast::attention::attention_backward(&mut dinp, &mut delta, &dout, &inp, &out, &lse, b, t, C, nh))
    });
    group.finish();
}

criterion_group!(benches, bench_gelu, bench_attention);
criterion_main!(benches);
