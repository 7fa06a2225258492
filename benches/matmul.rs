//! Matmul throughput at GPT-2 d12 shapes (BT = 256): the readable `cpu::matmul` against the blocked
//! `cpu::fast::matmul`, on 1 and 2 threads, for the three products of a linear layer:
//!   forward   out (BT,OC)  = inp (BT,C) · Wᵀ
//!   dinp      dinp (BT,C) += dout (BT,OC) · W
//!   dweight   dW (OC,C)   += doutᵀ (OC,BT) · inp (BT,C)
//! Throughput is in FLOPs (2·BT·C·OC per product), so criterion's "Gelem/s" reads as GFLOP/s.
//! Compare with OpenBLAS in the same run: `python3 reference/numpy_sgemm.py` right after.
//!
//!   cargo bench --bench matmul                 (everything but the readable LM head, ~16 s a call)
//!   cargo bench --bench matmul -- fast         (only the fast kernel)

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use gpt2::cpu::fast::matmul::{gemm, Isa, Strided};
use gpt2::cpu::{fast, matmul as readable};
use std::time::Duration;

const BT: usize = 256;
/// (name, C, OC) of each linear layer of GPT-2 small.
const SHAPES: [(&str, usize, usize); 5] =
    [("qkv", 768, 2304), ("attproj", 768, 768), ("fc", 768, 3072), ("fcproj", 3072, 768), ("lmhead", 768, 50304)];

fn pool(threads: usize) -> rayon::ThreadPool {
    rayon::ThreadPoolBuilder::new().num_threads(threads).build().expect("thread pool")
}

fn bench_matmul(crit: &mut Criterion) {
    println!("1 element = 1 FLOP: Gelem/s is GFLOP/s. Kernel: {:?}", Isa::best());
    let pools = [(1, pool(1)), (2, pool(2))];
    for (name, c, oc) in SHAPES {
        let inp = vec![0.5f32; BT * c];
        let weight = vec![0.25f32; oc * c];
        let bias = vec![0.1f32; oc];
        let dout = vec![0.125f32; BT * oc];
        let mut out = vec![0.0f32; BT * oc];
        let mut dinp = vec![0.0f32; BT * c];
        let mut dweight = vec![0.0f32; oc * c];
        let mut dbias = vec![0.0f32; oc];
        let flops = 2 * (BT * c * oc) as u64;
        let shape = format!("{name}_C{c}_OC{oc}");

        let mut group = crit.benchmark_group(format!("forward/{shape}"));
        group.throughput(Throughput::Elements(flops)).sample_size(10).warm_up_time(Duration::from_millis(500));
        for (threads, pool) in &pools {
            group.bench_function(BenchmarkId::new("fast", format!("{threads}threads")), |b| {
                b.iter(|| {
                    pool.install(|| fast::matmul::matmul_forward(&mut out, &inp, &weight, Some(&bias), BT, c, oc))
                })
            });
            if oc > 10_000 {
                continue; // the readable LM head: ~16 s a call, 10 samples minimum
            }
            group.bench_function(BenchmarkId::new("readable", format!("{threads}threads")), |b| {
                b.iter(|| pool.install(|| readable::matmul_forward(&mut out, &inp, &weight, Some(&bias), BT, c, oc)))
            });
        }
        group.finish();

        // the two backward products one at a time, through the GEMM that matmul_backward calls
        let mut group = crit.benchmark_group(format!("dinp/{shape}"));
        group.throughput(Throughput::Elements(flops)).sample_size(10).warm_up_time(Duration::from_millis(500));
        for (threads, pool) in &pools {
            group.bench_function(BenchmarkId::new("fast", format!("{threads}threads")), |b| {
                let (a, w) = (Strided { data: &dout, rs: oc, cs: 1 }, Strided { data: &weight, rs: c, cs: 1 });
                b.iter(|| pool.install(|| gemm(Isa::best(), BT, c, oc, a, w, &mut dinp, c, None, true)))
            });
        }
        group.finish();
        let mut group = crit.benchmark_group(format!("dweight/{shape}"));
        group.throughput(Throughput::Elements(flops)).sample_size(10).warm_up_time(Duration::from_millis(500));
        for (threads, pool) in &pools {
            group.bench_function(BenchmarkId::new("fast", format!("{threads}threads")), |b| {
                let (a, x) = (Strided { data: &dout, rs: 1, cs: oc }, Strided { data: &inp, rs: c, cs: 1 });
                b.iter(|| pool.install(|| gemm(Isa::best(), oc, c, BT, a, x, &mut dweight, c, None, true)))
            });
        }
        group.finish();

        // the whole backward (dinp + dweight + dbias: two products), readable vs fast
        let mut group = crit.benchmark_group(format!("backward/{shape}"));
        group.throughput(Throughput::Elements(2 * flops)).sample_size(10).warm_up_time(Duration::from_millis(500));
        for (threads, pool) in &pools {
            group.bench_function(BenchmarkId::new("fast", format!("{threads}threads")), |b| {
                b.iter(|| {
                    pool.install(|| {
                        let db = Some(&mut dbias[..]);
                        fast::matmul::matmul_backward(&mut dinp, &mut dweight, db, &dout, &inp, &weight, BT, c, oc)
                    })
                })
            });
            if oc > 10_000 {
                continue;
            }
            group.bench_function(BenchmarkId::new("readable", format!("{threads}threads")), |b| {
                b.iter(|| {
                    pool.install(|| {
                        let db = Some(&mut dbias[..]);
                        readable::matmul_backward(&mut dinp, &mut dweight, db, &dout, &inp, &weight, BT, c, oc)
                    })
                })
            });
        }
        group.finish();
    }
}

criterion_group!(benches, bench_matmul);
criterion_main!(benches);
