"""OpenBLAS SGEMM GFLOP/s (through numpy) at GPT-2 d12 shapes, BT = 256, for the three products of a
linear layer, to compare with the fast Rust GEMM (`cargo bench --bench matmul`, or
`cargo run --release --example matmul_gflops`) in the same run on the same machine.

    pip install numpy
    OPENBLAS_NUM_THREADS=2 python3 reference/numpy_sgemm.py

Products (weights are (out, in) like torch Linear):
    forward  out (BT,OC)  = inp (BT,C) @ W.T (C,OC)
    dinp     dinp (BT,C) += dout (BT,OC) @ W (OC,C)
    dweight  dW (OC,C)   += dout.T (OC,BT) @ inp (BT,C)
The += is done with `out=` into a scratch then an add would cost extra passes, so we time the plain
product (what SGEMM does with beta = 0): this favours numpy slightly.
"""

import os
import time

import numpy as np

BT = 256
THREADS = int(os.environ.get("OPENBLAS_NUM_THREADS", os.cpu_count()))
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


def main():
    rng = np.random.default_rng(0)
    print(f"numpy {np.__version__}, {THREADS} threads, BT={BT} (in parentheses: from CPU time)")
    for name, c, oc in SHAPES:
        inp = rng.standard_normal((BT, c), dtype=np.float32)
        w = rng.standard_normal((oc, c), dtype=np.float32)
        dout = rng.standard_normal((BT, oc), dtype=np.float32)
        out = np.empty((BT, oc), np.float32)
        dinp = np.empty((BT, c), np.float32)
        dw = np.empty((oc, c), np.float32)
        flops = 2.0 * BT * c * oc
        fwd = gflops(lambda: np.matmul(inp, w.T, out=out), flops)
        di = gflops(lambda: np.matmul(dout, w, out=dinp), flops)
        dwt = gflops(lambda: np.matmul(dout.T, inp, out=dw), flops)
        print(
            f"{name:8} C={c:5} OC={oc:6}  fwd {fwd[0]:6.1f} ({fwd[1]:6.1f})  dinp {di[0]:6.1f} ({di[1]:6.1f})"
            f"  dweight {dwt[0]:6.1f} ({dwt[1]:6.1f})  GFLOP/s"
        )
    n = 2048
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    o = np.empty((n, n), np.float32)
    sq = gflops(lambda: np.matmul(a, b, out=o), 2.0 * n**3)
    print(f"square   {n}^3: {sq[0]:6.1f} ({sq[1]:6.1f}) GFLOP/s")


if __name__ == "__main__":
    main()
