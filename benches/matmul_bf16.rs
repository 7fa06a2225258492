//! bf16 against fp32 matmul throughput at GPT-2 d12 shapes (BT = 256), the three products of a
//! linear layer through the GEMMs that `matmul_forward` / `matmul_backward` call:
//! `fast::matmul::gemm` (fp32 operands) and `fast::matmul::bf16::gemm_bf16` (bf16 operands packed as
//! 16-bit words, fp32 accumulation; see src/cpu/fast/matmul/bf16.rs). Throughput is in FLOPs
//! (2·BT·C·OC per product): criterion's "Gelem/s" reads as GFLOP/s.
//!
//!   cargo bench --bench matmul_bf16
//!   cargo bench --bench matmul_bf16 -- forward     (one product only)

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use gpt2::cpu::fast::matmul::bf16::{gemm_bf16, Bf16Isa};
use gpt2::cpu::fast::matmul::{gemm, Isa, Strided};
use gpt2::precision::round_bf16;
use std::time::Duration;

const BT: usize = 256;
/// (name, C, OC) of the linear layers of GPT-2 small.
const SHAPES: [(&str, usize, usize); 5] =
    [("qkv", 768, 2304), ("attproj", 768, 768), ("fc", 768, 3072), ("fcproj", 3072, 768), ("lmhead", 768, 50304)];

fn values(n: usize, seed: u32) -> Vec<f32> {
    // bf16 numbers (both GEMMs get the same inputs), varied so no kernel sees only constants
    (0..n)
        .map(|i| round_bf16(((i as u32).wrapping_mul(2654435761).wrapping_add(seed) >> 16) as f32 / 65536.0 - 0.5))
        .collect()
}

fn bench(crit: &mut Criterion) {
    println!(
        "1 element = 1 FLOP: Gelem/s is GFLOP/s. fp32 kernel {:?}, bf16 kernel {:?}",
        Isa::best(),
        Bf16Isa::best()
    );
    for (name, c, oc) in SHAPES {
        let (inp, weight, dout) = (values(BT * c, 1), values(oc * c, 2), values(BT * oc, 3));
        let (mut out, mut dinp, mut dweight) = (vec![0.0f32; BT * oc], vec![0.0f32; BT * c], vec![0.0f32; oc * c]);
        let flops = 2 * (BT * c * oc) as u64;
        // (product, m, n, k, A, B, C, ldc, accumulate)
        let products = [
            ("forward", BT, oc, c, Strided { data: &inp, rs: c, cs: 1 }, Strided { data: &weight, rs: 1, cs: c }),
            ("dinp", BT, c, oc, Strided { data: &dout, rs: oc, cs: 1 }, Strided { data: &weight, rs: c, cs: 1 }),
            ("dweight", oc, c, BT, Strided { data: &dout, rs: 1, cs: oc }, Strided { data: &inp, rs: c, cs: 1 }),
        ];
        for (product, m, n, k, a, b) in products {
            let dst: &mut [f32] = match product {
                "forward" => &mut out,
                "dinp" => &mut dinp,
                _ => &mut dweight,
            };
            let mut group = crit.benchmark_group(format!("{product}/{name}_C{c}_OC{oc}"));
            group.throughput(Throughput::Elements(flops)).sample_size(10).warm_up_time(Duration::from_millis(300));
            group.measurement_time(Duration::from_secs(2));
            group.bench_function("fp32", |bch| bch.iter(|| gemm(Isa::best(), m, n, k, a, b, dst, n, None, true)));
            group.bench_function("bf16", |bch| {
                bch.iter(|| gemm_bf16(Bf16Isa::best(), m, n, k, a, b, dst, n, None, true))
            });
            group.finish();
        }
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
