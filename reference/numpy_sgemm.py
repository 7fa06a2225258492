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

import time

import numpy as np

BT = 256
SHAPES = [("qkv", 768, 2304), ("attproj", 768, 768), ("fc", 768, 3072), ("fcproj", 3072, 768), ("lmhead", 768, 50304)]


def gflops(f, flops, reps):
    f()
    best = float("inf")
    for _ in range(reps):
        t = time.perf_counter()
        f()
        best = min(best, time.perf_counter() - t)
    return flops / best / 1e9


def main():
    rng = np.random.default_rng(0)
    print(f"numpy {np.__version__}, BT={BT}")
    for name, c, oc in SHAPES:
        inp = rng.standard_normal((BT, c), dtype=np.float32)
        w = rng.standard_normal((oc, c), dtype=np.float32)
        dout = rng.standard_normal((BT, oc), dtype=np.float32)
        out = np.empty((BT, oc), np.float32)
        dinp = np.empty((BT, c), np.float32)
        dw = np.empty((oc, c), np.float32)
        flops = 2.0 * BT * c * oc
        reps = 3 if oc > 10000 else 10
        fwd = gflops(lambda: np.matmul(inp, w.T, out=out), flops, reps)
        di = gflops(lambda: np.matmul(dout, w, out=dinp), flops, reps)
        dwt = gflops(lambda: np.matmul(dout.T, inp, out=dw), flops, reps)
        print(f"{name:8} C={c:5} OC={oc:6}  fwd {fwd:7.1f}  dinp {di:7.1f}  dweight {dwt:7.1f}  GFLOP/s")
    n = 2048
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    o = np.empty((n, n), np.float32)
    print(f"square   {n}^3: {gflops(lambda: np.matmul(a, b, out=o), 2.0 * n**3, 5):7.1f} GFLOP/s")


if __name__ == "__main__":
    main()
