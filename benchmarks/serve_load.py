"""Load test of ``glmtune serve`` on localhost: N requests at concurrency C, streaming and not, mixed.

Starts the server itself (twice: ``--max-batch 8`` and ``--max-batch 1``, i.e. batching on and off),
sends the requests with C client threads (standard library HTTP only), and prints requests/s,
generated tokens/s, p50/p99 latency, the number of 5xx and incomplete responses, and the batching
gain. Bounded in count and time; talks to 127.0.0.1 only.

    python benchmarks/serve_load.py --model $GLMTUNE_REFERENCE/checkpoints/chatglm3-mini --requests 2000
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import socket
import statistics
import subprocess
import sys
import threading
import time


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def one(port: int, i: int, max_tokens: int) -> tuple[float, int, int, bool]:
    """(latency s, status, completion tokens, complete) of request ``i`` (odd ones stream)."""
    body = {"model": "m", "messages": [{"role": "user", "content": f"第{i}个问题：你好"}], "max_tokens": max_tokens,
            "temperature": 0, "stream": i % 2 == 1, "stream_options": {"include_usage": True}}
    start = time.perf_counter()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
    conn.request("POST", "/v1/chat/completions", json.dumps(body), {"Content-Type": "application/json"})
    resp = conn.getresponse()
    raw = resp.read().decode()
    conn.close()
    took = time.perf_counter() - start
    if resp.status != 200:
        return took, resp.status, 0, False
    if body["stream"]:
        events = [e[len("data: "):] for e in raw.split("\n\n") if e.startswith("data: ")]
        done = bool(events) and events[-1] == "[DONE]"
        usage = json.loads(events[-2]).get("usage", {}) if len(events) > 1 else {}
        return took, 200, usage.get("completion_tokens", 0), done
    data = json.loads(raw)
    return took, 200, data["usage"]["completion_tokens"], data["choices"][0]["finish_reason"] in ("stop", "length")


def run(model: str, requests: int, concurrency: int, max_batch: int, max_tokens: int) -> dict:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "glmtune", "serve", "--model", model, "--name", "m", "--port",
                             str(port), "--max-batch", str(max_batch), "--max-concurrent", str(concurrency),
                             "--max-queue", str(concurrency)], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})  # fmt: skip
    try:
        for _ in range(600):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.2)
        results: list[tuple[float, int, int, bool]] = []
        lock, counter = threading.Lock(), iter(range(requests))

        def worker() -> None:
            while True:
                with lock:
                    i = next(counter, None)
                if i is None:
                    return
                r = one(port, i, max_tokens)
                with lock:
                    results.append(r)

        start = time.perf_counter()
        threads = [threading.Thread(target=worker) for _ in range(concurrency)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.perf_counter() - start
    finally:
        proc.terminate()
        proc.wait(timeout=60)
    latencies = sorted(r[0] for r in results)
    return {"max_batch": max_batch, "requests": len(results), "wall_s": round(wall, 1),
            "requests_per_s": round(len(results) / wall, 2),
            "tokens_per_s": round(sum(r[2] for r in results) / wall, 1),
            "p50_s": round(statistics.median(latencies), 3), "p99_s": round(latencies[int(0.99 * (len(latencies) - 1))], 3),
            "status_5xx": sum(1 for r in results if r[1] >= 500), "incomplete": sum(1 for r in results if not r[3])}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", required=True)
    p.add_argument("--requests", type=int, default=2000)
    p.add_argument("--concurrency", type=int, default=16)
    p.add_argument("--max-tokens", type=int, default=16)
    args = p.parse_args()
    on = run(args.model, args.requests, args.concurrency, 8, args.max_tokens)
    off = run(args.model, args.requests, args.concurrency, 1, args.max_tokens)
    for row in (on, off):
        print(json.dumps(row))
    print(f"batching gain: {on['tokens_per_s'] / max(off['tokens_per_s'], 1e-9):.2f}x tokens/s")


if __name__ == "__main__":
    main()
