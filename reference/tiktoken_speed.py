#!/usr/bin/env python3
"""One-thread encode throughput of tiktoken's GPT-2 encoding on the shipped Shakespeare text, the
baseline for `cargo bench --bench tokenizer` (run both on the same machine, one after the other).

    python3 reference/tiktoken_speed.py
"""
import glob
import os
import time

from tiktoken_golden import gpt2_encoding, ROOT


def main():
    paths = sorted(glob.glob(os.path.join(ROOT, "data/shakespeare/*_gut.txt")))
    text = "".join(open(p, encoding="utf-8").read() for p in paths)
    nbytes = len(text.encode("utf-8"))
    enc = gpt2_encoding()
    enc.encode_ordinary(text)  # warm up
    times = []
    for _ in range(5):
        t0 = time.perf_counter()
        ids = enc.encode_ordinary(text)
        times.append(time.perf_counter() - t0)
    best = min(times)
    median = sorted(times)[len(times) // 2]
    print(f"tiktoken {enc.name}: {nbytes / 1e6:.2f} MB -> {len(ids)} tokens; "
          f"best {nbytes / best / 1e6:.1f} MB/s, median {nbytes / median / 1e6:.1f} MB/s (one thread)")


if __name__ == "__main__":
    main()
