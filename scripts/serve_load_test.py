#!/usr/bin/env python3
"""Load test for `gpt2 serve`: N concurrent clients, each sending streamed completions back to back.

For each concurrency level it reports requests/s, generated tokens/s, p50/p99 time to first token and
request latency, and errors. It talks to loopback only, and every level is bounded both in requests
and in time, so the script always stops by itself.

    # start a server itself (and stop it at the end)
    python3 scripts/serve_load_test.py --binary target/release/gpt2 --init checkpoints/latest.bin
    # or test one that is already running
    python3 scripts/serve_load_test.py --url http://127.0.0.1:8080

Standard library only. The clients share the machine with the server: on a small box their own CPU
time is part of what is measured.
"""

import argparse
import http.client
import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.parse


def percentile(values, p):
    if not values:
        return float("nan")
    s = sorted(values)
    k = min(len(s) - 1, max(0, round(p / 100 * (len(s) - 1))))
    return s[k]


def one_request(host, port, body, timeout):
    """One streamed completion: (ok, error text, ttft s, latency s, completion tokens)."""
    started = time.perf_counter()
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request("POST", "/v1/completions", body=json.dumps(body), headers={"Content-Type": "application/json"})
        res = conn.getresponse()
        if res.status != 200:
            return False, f"HTTP {res.status}: {res.read()[:200]!r}", None, None, 0
        ttft, tokens, done = None, 0, False
        while True:
            line = res.readline()
            if not line:
                break
            line = line.strip()
            if not line.startswith(b"data: "):
                continue
            data = line[6:]
            if data == b"[DONE]":
                done = True
                break
            chunk = json.loads(data)
            if ttft is None and chunk["choices"][0]["text"]:
                ttft = time.perf_counter() - started
            if "usage" in chunk:
                tokens = chunk["usage"]["completion_tokens"]
        latency = time.perf_counter() - started
        if not done:
            return False, "the stream ended without [DONE]", None, None, 0
        return True, "", ttft if ttft is not None else latency, latency, tokens
    except (OSError, http.client.HTTPException, ValueError, KeyError) as e:
        return False, f"{type(e).__name__}: {e}", None, None, 0
    finally:
        conn.close()


def run_level(host, port, clients, requests, seconds, body, timeout):
    """`clients` threads share `requests` requests, stopping early after `seconds`."""
    results, lock = [], threading.Lock()
    left = [requests]
    deadline = time.perf_counter() + seconds

    def worker(i):
        n = 0
        while time.perf_counter() < deadline:
            with lock:
                if left[0] == 0:
                    return
                left[0] -= 1
            b = dict(body, seed=i * 100003 + n)
            n += 1
            r = one_request(host, port, b, timeout)
            with lock:
                results.append(r)

    started = time.perf_counter()
    threads = [threading.Thread(target=worker, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - started
    ok = [r for r in results if r[0]]
    errors = [r[1] for r in results if not r[0]]
    return {
        "clients": clients,
        "requests": len(ok),
        "errors": len(errors),
        "first_error": errors[0] if errors else "",
        "wall_s": wall,
        "req_per_s": len(ok) / wall,
        "tok_per_s": sum(r[4] for r in ok) / wall,
        "ttft_p50_ms": 1e3 * percentile([r[2] for r in ok], 50),
        "ttft_p99_ms": 1e3 * percentile([r[2] for r in ok], 99),
        "lat_p50_ms": 1e3 * percentile([r[3] for r in ok], 50),
        "lat_p99_ms": 1e3 * percentile([r[3] for r in ok], 99),
    }


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_healthy(host, port, proc, seconds=60):
    deadline = time.time() + seconds
    while time.time() < deadline:
        if proc is not None and proc.poll() is not None:
            sys.exit(f"the server exited with status {proc.returncode}")
        try:
            c = http.client.HTTPConnection(host, port, timeout=2)
            c.request("GET", "/healthz")
            if c.getresponse().status == 200:
                return
        except OSError:
            time.sleep(0.2)
    sys.exit("the server did not become healthy")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--url", help="a running server (loopback only)")
    ap.add_argument("--binary", default="target/release/gpt2", help="the gpt2 binary, to start a server")
    ap.add_argument("--init", help="the model to start the server with")
    ap.add_argument("--serve-args", default="", help="more flags for `gpt2 serve`")
    ap.add_argument("--clients", default="1,4,16,64", help="concurrency levels, comma separated")
    ap.add_argument("--requests", type=int, default=0, help="requests per level [default: 4 per client, at least 16]")
    ap.add_argument("--seconds", type=float, default=60, help="time limit per level")
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--prompt", default="The meaning of life is")
    ap.add_argument("--json", help="also write the results here")
    args = ap.parse_args()

    proc = None
    if args.url:
        u = urllib.parse.urlparse(args.url)
        host, port = u.hostname, u.port or 80
        if host not in ("127.0.0.1", "localhost", "::1"):
            sys.exit("this load test talks to loopback only")
    else:
        if not args.init:
            sys.exit("give --url of a running server, or --init MODEL to start one")
        host, port = "127.0.0.1", free_port()
        cmd = [args.binary, "serve", "--init", args.init, "--port", str(port)] + args.serve_args.split()
        proc = subprocess.Popen(cmd, stderr=subprocess.DEVNULL)
    try:
        wait_healthy(host, port, proc)
        body = {"prompt": args.prompt, "max_tokens": args.max_tokens, "temperature": 1.0, "top_k": 40, "stream": True}
        # warm up (first allocations, page faults)
        one_request(host, port, body, 60)
        rows = []
        for c in [int(x) for x in args.clients.split(",")]:
            n = args.requests or max(16, 4 * c)
            row = run_level(host, port, c, n, args.seconds, body, timeout=max(60, args.seconds))
            rows.append(row)
            print(
                f"clients {c:>3}: {row['requests']:>4} requests in {row['wall_s']:.1f} s, {row['errors']} errors"
                + (f" ({row['first_error']})" if row["errors"] else ""),
                file=sys.stderr,
            )
        print("| clients | requests | req/s | tokens/s | TTFT p50 (ms) | TTFT p99 (ms) | latency p50 (ms) | latency p99 (ms) | errors |")
        print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
        for r in rows:
            print(
                f"| {r['clients']} | {r['requests']} | {r['req_per_s']:.2f} | {r['tok_per_s']:.0f} | {r['ttft_p50_ms']:.0f} | "
                f"{r['ttft_p99_ms']:.0f} | {r['lat_p50_ms']:.0f} | {r['lat_p99_ms']:.0f} | {r['errors']} |"
            )
        base = next((r for r in rows if r["clients"] == 1), None)
        for r in rows:
            if base and r is not base and base["tok_per_s"] > 0:
                print(f"tokens/s at {r['clients']} clients = {r['tok_per_s'] / base['tok_per_s']:.1f}x that at 1 client")
        if args.json:
            with open(args.json, "w") as f:
                json.dump(rows, f, indent=1)
        if any(r["errors"] for r in rows):
            sys.exit(1)
    finally:
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()


if __name__ == "__main__":
    main()
