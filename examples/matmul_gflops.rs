//! Quick GFLOP/s table of the fast GEMM at GPT-2 d12 shapes (BT = 256): forward, dinp, dweight.
//! `cargo run --release --example matmul_gflops [threads] [avx512|avx2|portable]`. In parentheses: the
//! mean rate from CPU time (see `cpu_seconds`). The criterion version is `benches/matmul.rs`.

use gpt2::cpu::fast::matmul::{gemm, Isa, Strided};
use std::time::Instant;

/// CPU time used so far by all threads of this process (from /proc, nanosecond resolution): on a
/// shared machine, FLOPs per CPU-second (times the thread count) shows what the code would do alone.
fn cpu_seconds() -> f64 {
    let mut ns = 0u64;
    for task in std::fs::read_dir("/proc/self/task").expect("/proc") {
        let stat = std::fs::read_to_string(task.expect("task").path().join("schedstat")).unwrap_or_default();
        ns += stat.split_whitespace().next().and_then(|x| x.parse().ok()).unwrap_or(0);
    }
    ns as f64 * 1e-9
}

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
            // best of as many runs as fit in a second (at least 5): the machine is shared, so the best
            // run is the one least disturbed by other processes
            let (mut best, start, cpu, mut runs) = (f64::MAX, Instant::now(), cpu_seconds(), 0);
            while runs < 5 || start.elapsed().as_secs_f64() < 1.0 {
                let t = Instant::now();
                f();
                best = best.min(t.elapsed().as_secs_f64());
                runs += 1;
            }
            let cpu_per_run = (cpu_seconds() - cpu) / runs as f64;
            (flops / best / 1e9, flops * threads as f64 / cpu_per_run / 1e9)
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
            println!(
                "{name:8} C={c:5} OC={oc:6}  fwd {:6.1} ({:6.1})  dinp {:6.1} ({:6.1})  dweight {:6.1} ({:6.1})  GFLOP/s",
                fwd.0, fwd.1, di.0, di.1, dwt.0, dwt.1
            );
        });
    }
}
