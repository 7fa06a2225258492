"""OpenBLAS SGEMM GFLOP/s (through numpy) at GPT-2 d12 shapes, BT = 256, for the three products of a
linear layer, to compare with the fast Rust GEMM (`cargo bench --bench matmul`, or
`cargo run --release --example matmul_gflops`) in the same run on the same machine.

    pip install numpy
    OPENBLAS_NUM_THREADS=2 python3 reference/numpy_sgemm.py

Side by side with ours, alternating rounds so both see the same machine load, best of each cell:

    cargo build --release --example matmul_gflops
    OPENBLAS_NUM_THREADS=2 python3 reference/numpy_sgemm.py --rust target/release/examples/matmul_gflops --rounds 3

Products (weights are (out, in) like torch Linear):
    forward  out (BT,OC)  = inp (BT,C) @ W.T (C,OC)
    dinp     dinp (BT,C) += dout (BT,OC) @ W (OC,C)
    dweight  dW (OC,C)   += dout.T (OC,BT) @ inp (BT,C)
The += is done with `out=` into a scratch then an add would cost extra passes, so we time the plain
product (what SGEMM does with beta = 0): this favours numpy slightly.
"""

import argparse
import os
import re
import subprocess
import time

import numpy as np

BT = 256
THREADS = int(os.environ.get("OPENBLAS_NUM_THREADS", os.cpu_count()))
PRODUCTS = ["fwd", "dinp", "dweight"]
SHAPES = [("qkv", 768, 2304), ("attproj", 768, 768), ("fc", 768, 3072), ("fcproj", 3072, 768), ("lmhead", 768, 50304)]


def cpu_seconds():
    """CPU time used so far by all threads of this process (Linux /proc, nanoseconds)."""
    ns = 0
    for task in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{task}/schedstat") as f:
                ns += int(f.read().split()[0])
        except OSError:
            pass
    return ns * 1e-9


def gflops(f, flops, reps=5, seconds=1.0):
    """Best of as many runs as fit in `seconds` (at least `reps`): the best run is the one least
    disturbed by other processes on a shared machine. Returns (from wall time, from CPU time times
    the thread count, mean over the runs): the second shows what the code would do with the cores to itself."""
    f()
    best, start, cpu, runs = float("inf"), time.perf_counter(), cpu_seconds(), 0
    while runs < reps or time.perf_counter() - start < seconds:
        t = time.perf_counter()
        f()
        best = min(best, time.perf_counter() - t)
        runs += 1
    cpu_per_run = (cpu_seconds() - cpu) / runs
    return flops / best / 1e9, flops * THREADS / cpu_per_run / 1e9


def measure_numpy():
    """{(shape name, product): (GFLOP/s from wall time, from CPU time)} and the 2048^3 square."""
    rng = np.random.default_rng(0)
    results = {}
    for name, c, oc in SHAPES:
        inp = rng.standard_normal((BT, c), dtype=np.float32)
        w = rng.standard_normal((oc, c), dtype=np.float32)
        dout = rng.standard_normal((BT, oc), dtype=np.float32)
        out = np.empty((BT, oc), np.float32)
        dinp = np.empty((BT, c), np.float32)
        dw = np.empty((oc, c), np.float32)
        flops = 2.0 * BT * c * oc
        results[(name, "fwd")] = gflops(lambda: np.matmul(inp, w.T, out=out), flops)
        results[(name, "dinp")] = gflops(lambda: np.matmul(dout, w, out=dinp), flops)
        results[(name, "dweight")] = gflops(lambda: np.matmul(dout.T, inp, out=dw), flops)
    n = 2048
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    o = np.empty((n, n), np.float32)
    results[("square", "2048^3")] = gflops(lambda: np.matmul(a, b, out=o), 2.0 * n**3)
    return results


def measure_rust(binary):
    """Runs the Rust example (`matmul_gflops THREADS`) and parses its table like `measure_numpy`'s."""
    text = subprocess.run([binary, str(THREADS)], check=True, capture_output=True, text=True).stdout
    results = {}
    for line in text.splitlines():
        m = re.match(r"(\w+)\s+C=.*fwd\s+([\d.]+) \(\s*([\d.inf]+)\)\s+dinp\s+([\d.]+) \(\s*([\d.inf]+)\)"
                     r"\s+dweight\s+([\d.]+) \(\s*([\d.inf]+)\)", line)
        if m:
            g = [float(x) for x in m.groups()[1:]]
            results[(m.group(1), "fwd")] = (g[0], g[1])
            results[(m.group(1), "dinp")] = (g[2], g[3])
            results[(m.group(1), "dweight")] = (g[4], g[5])
    return results


def best(a, b):
    return {k: tuple(max(x, y) for x, y in zip(a[k], b[k])) if k in a else b[k] for k in b}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rust", help="path of the matmul_gflops example: compare side by side")
    parser.add_argument("--rounds", type=int, default=1, help="alternating rounds; the best of each cell is kept")
    args = parser.parse_args()
    print(f"numpy {np.__version__}, {THREADS} threads, BT={BT} (in parentheses: from CPU time)")
    ours, theirs = {}, {}
    for _ in range(args.rounds):
        theirs = best(theirs, measure_numpy())
        if args.rust:
            ours = best(ours, measure_rust(args.rust))
    if not args.rust:
        for name, _, _ in SHAPES:
            cells = "  ".join(f"{p} {theirs[(name, p)][0]:6.1f} ({theirs[(name, p)][1]:6.1f})" for p in PRODUCTS)
            print(f"{name:8} {cells}  GFLOP/s")
    else:
        print(f"{'shape':8} {'product':8} {'ours':>7} {'numpy':>7} {'ratio':>6}   (GFLOP/s, best of {args.rounds})")
        for name, _, _ in SHAPES:
            for p in PRODUCTS:
                o, t = ours[(name, p)][0], theirs[(name, p)][0]
                print(f"{name:8} {p:8} {o:7.1f} {t:7.1f} {o / t:6.2f}")
    sq = theirs[("square", "2048^3")]
    print(f"numpy square 2048^3: {sq[0]:6.1f} ({sq[1]:6.1f}) GFLOP/s")


if __name__ == "__main__":
    main()
