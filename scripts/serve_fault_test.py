#!/usr/bin/env python3
"""Fault test for `gpt2 serve`: clients that misbehave, and the server must shrug them off.

Each round:
  1. clients that start a streamed completion and hang up after the first event (mid-stream),
  2. garbage: random bytes, broken HTTP, huge headers, bodies that lie about their length, bad JSON,
  3. connections that open and send nothing (all held open at once), and request heads with no body,
then it checks that the server is still up, that the next good request is served, that nothing is
left in the queue or the batch, and records the server's resident memory (VmRSS). Memory is bounded
when the later rounds do not keep growing it.

    python3 scripts/serve_fault_test.py --binary target/release/gpt2 --init checkpoints/latest.bin

Loopback only, standard library only, bounded in rounds and time.
"""

import argparse
import http.client
import json
import random
import socket
import subprocess
import sys
import threading
import time


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return -1


def good_request(port):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    c.request("POST", "/v1/completions", body=json.dumps({"prompt": "Hello", "max_tokens": 8}),
              headers={"Content-Type": "application/json"})
    r = c.getresponse()
    body = json.loads(r.read())
    c.close()
    return r.status, body


def metric(port, name):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    c.request("GET", "/metrics")
    text = c.getresponse().read().decode()
    c.close()
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return None


def hang_up_mid_stream(port, max_tokens):
    s = socket.create_connection(("127.0.0.1", port), timeout=30)
    body = json.dumps({"prompt": "A long story:", "max_tokens": max_tokens, "stream": True}).encode()
    s.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
              + f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
    seen = b""
    while b"data: " not in seen:
        chunk = s.recv(4096)
        if not chunk:
            break
        seen += chunk
    s.close()


GARBAGE = [
    lambda r: bytes(r.getrandbits(8) for _ in range(r.randint(1, 4096))),
    lambda r: b"GET / HTTP/1.1\r\nHost: x\r\n" + b"X-Big: " + b"a" * 200_000 + b"\r\n\r\n",
    lambda r: b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999\r\n\r\n{\"prompt\":",
    lambda r: b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 12\r\n\r\n{\"prompt\": [[[[",
    lambda r: b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\n\xff\xfe\x00\x01\x02",
    lambda r: b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nnonsense\r\n",
    lambda r: b"BREW /coffee HTCPCP/1.0\r\n\r\n",
    lambda r: b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 40\r\n\r\n"
              + json.dumps({"prompt": "x", "max_tokens": 10**30})[:40].encode(),
    lambda r: b"\r\n" * 5000,
]


def send_garbage(port, payload):
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=15)
        s.sendall(payload)
        s.shutdown(socket.SHUT_WR)
        while s.recv(65536):
            pass
        s.close()
    except OSError:
        pass  # the server may close first: that is fine


def run_parallel(fn, args_list, threads):
    it = iter(args_list)
    lock = threading.Lock()

    def worker():
        while True:
            with lock:
                a = next(it, None)
            if a is None:
                return
            try:
                fn(*a)
            except OSError:
                pass

    ts = [threading.Thread(target=worker) for _ in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--binary", default="target/release/gpt2")
    ap.add_argument("--init", required=True)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--hangups", type=int, default=100)
    ap.add_argument("--garbage", type=int, default=200)
    ap.add_argument("--silent", type=int, default=300, help="connections opened and left silent, per round")
    ap.add_argument("--timeout", type=int, default=5, help="the server's --timeout (seconds)")
    args = ap.parse_args()

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([args.binary, "serve", "--init", args.init, "--port", str(port), "--timeout", str(args.timeout)],
                            stderr=subprocess.DEVNULL)
    failures = []
    try:
        for _ in range(300):
            try:
                if good_request(port)[0] == 200:
                    break
            except OSError:
                time.sleep(0.2)
        print(f"server up, VmRSS {rss_kib(proc.pid)} KiB")
        rng = random.Random(0)
        for round_ in range(1, args.rounds + 1):
            t0 = time.time()
            run_parallel(hang_up_mid_stream, [(port, 500)] * args.hangups, 16)
            run_parallel(send_garbage, [(port, GARBAGE[i % len(GARBAGE)](rng),) for i in range(args.garbage)], 16)
            silent = []
            for _ in range(args.silent):
                try:
                    silent.append(socket.create_connection(("127.0.0.1", port), timeout=5))
                except OSError as e:
                    failures.append(f"round {round_}: could not open a silent connection: {e}")
                    break
            # heads with a body that never comes
            for _ in range(20):
                s = socket.create_connection(("127.0.0.1", port), timeout=5)
                s.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{")
                silent.append(s)
            # while all of those are open, a good request is still served
            status, body = good_request(port)
            if status != 200:
                failures.append(f"round {round_}: good request with {len(silent)} idle connections open got {status}: {body}")
            # the server closes silent connections after its timeout
            time.sleep(args.timeout + 1)
            closed = 0
            for s in silent:
                s.settimeout(0.5)
                try:
                    data = s.recv(1024)
                    # closed outright, or told 408 (a head without its body) and then closed
                    if data == b"" or data.startswith(b"HTTP/1.1 408"):
                        closed += 1
                except socket.timeout:
                    pass  # still open
                except OSError:
                    closed += 1  # reset by the server
                s.close()
            status, body = good_request(port)
            ok = status == 200 and body["usage"]["completion_tokens"] == 8
            if not ok:
                failures.append(f"round {round_}: the good request after the faults got {status}: {body}")
            if proc.poll() is not None:
                failures.append(f"round {round_}: the server exited with {proc.returncode}")
                break
            depth, active = metric(port, "gpt2_queue_depth"), metric(port, "gpt2_active_sequences")
            print(f"round {round_}: {args.hangups} hang-ups, {args.garbage} garbage, {len(silent)} silent "
                  f"({closed} closed by the server after {args.timeout} s); next request {status}; "
                  f"queue {depth:.0f}, active {active:.0f}; VmRSS {rss_kib(proc.pid)} KiB; {time.time() - t0:.1f} s")
            if depth != 0 or active != 0:
                failures.append(f"round {round_}: queue depth {depth}, active sequences {active} after the faults")
        print(f"cancelled (clients gone mid-generation): {metric(port, 'gpt2_cancelled_total'):.0f}")
    finally:
        alive = proc.poll() is None
        proc.terminate()
        proc.wait(10)
    if failures or not alive:
        print("FAILED:\n  " + "\n  ".join(failures + ([] if alive else ["the server died"])))
        sys.exit(1)
    print("OK: the server stayed up and served the next good request after every round")


if __name__ == "__main__":
    main()
