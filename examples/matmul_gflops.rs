//! Quick GFLOP/s table of the fast GEMM at GPT-2 d12 shapes (BT = 256): forward, dinp, dweight.
//! `cargo run --release --example matmul_gflops [threads]`. The criterion version is `benches/matmul.rs`.

use gpt2::cpu::fast::matmul::{gemm, Isa, Strided};
use std::time::Instant;

fn main() {
    let threads: usize = std::env::args().nth(1).map_or(2, |s| s.parse().expect("threads"));
    let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().expect("pool");
    let isa = std::env::args().nth(2).map_or(Isa::best(), |s| match s.as_str() {
        "portable" => Isa::Portable,
        "avx2" => Isa::Avx2,
        _ => Isa::Avx512,
    });
    let bt = 256;
    println!("{isa:?}, {threads} threads, BT={bt}");
    for (name, c, oc) in
        [("qkv", 768, 2304), ("attproj", 768, 768), ("fc", 768, 3072), ("fcproj", 3072, 768), ("lmhead", 768, 50304)]
    {
        let inp = vec![0.5f32; bt * c];
        let w = vec![0.25f32; oc * c];
        let dout = vec![0.125f32; bt * oc];
        let mut out = vec![0.0f32; bt * oc];
        let mut dinp = vec![0.0f32; bt * c];
        let mut dw = vec![0.0f32; oc * c];
        let flops = 2.0 * (bt * c * oc) as f64;
        let time = |f: &mut dyn FnMut()| {
            f();
            let mut best = f64::MAX;
            let reps = if oc > 10000 { 3 } else { 10 };
            for _ in 0..reps {
                let t = Instant::now();
                f();
                best = best.min(t.elapsed().as_secs_f64());
            }
            flops / best / 1e9
        };
        pool.install(|| {
            let fwd = time(&mut || {
                gemm(
                    isa,
                    bt,
                    oc,
                    c,
                    Strided { data: &inp, rs: c, cs: 1 },
                    Strided { data: &w, rs: 1, cs: c },
                    &mut out,
                    oc,
                    None,
                    false,
                )
            });
            let di = time(&mut || {
                gemm(
                    isa,
                    bt,
                    c,
                    oc,
                    Strided { data: &dout, rs: oc, cs: 1 },
                    Strided { data: &w, rs: c, cs: 1 },
                    &mut dinp,
                    c,
                    None,
                    true,
                )
            });
            let dwt = time(&mut || {
                gemm(
                    isa,
                    oc,
                    c,
                    bt,
                    Strided { data: &dout, rs: 1, cs: oc },
                    Strided { data: &inp, rs: c, cs: 1 },
                    &mut dw,
                    c,
                    None,
                    true,
                )
            });
            println!("{name:8} C={c:5} OC={oc:6}  fwd {fwd:7.1}  dinp {di:7.1}  dweight {dwt:7.1}  GFLOP/s");
        });
    }
}
