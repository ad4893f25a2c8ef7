"""Serving soak: mixed clients against `reelrt serve` for a long time; nothing may grow or fail.

    python -m reelrt.bench.serve_soak bundles/gpt2-int4 --image bundles/mobilenet-int8 --minutes 20

Clients, all at once and in a loop: streaming completions read to the end, whole completions,
streams abandoned after a few events (the client closes the socket), malformed requests (bad
JSON, bad parameters, an oversized body, an unknown model) and, with --image, v2 image
classifications. Well-formed requests stay within the server's slots plus waiting line, so
every one of them must get 200; malformed ones must get a 4xx. The server's resident memory
(anonymous part, as bench/soak.py explains) is sampled every --sample-s seconds; the run exits
1 when it grew more than --max-growth-mb after the first minute, or on any wrong answer.
"""
from __future__ import annotations

import argparse
import base64
import http.client
import json
import random
import sys
import threading
import time
from collections import Counter

import cv2
import numpy as np

from reelrt.bench.serving import free_port, server
from reelrt.bench.soak import resident


def _post(port: int, path: str, body: bytes, content_type: str = "application/json") -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
    try:
        conn.request("POST", path, body, {"Content-Type": content_type})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def _abandon(port: int, rng: random.Random) -> int:
    """A stream left after a few events."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
    conn.request("POST", "/v1/completions", json.dumps({"model": "gen", "prompt": "The dragon", "max_tokens": 200,
                                                        "ignore_eos": True, "stream": True}),
                 {"Content-Type": "application/json"})
    response = conn.getresponse()
    for _ in range(rng.randint(1, 5)):
        response.readline()
    conn.close()
    return response.status


MALFORMED = [b"{oops", b'{"model": "gen", "prompt": "x", "max_tokens": 0}', b'{"model": "gen", "prompt": 7}',
             b'{"model": "ghost", "prompt": "x"}', b'{"model": "gen", "prompt": "x", "top_p": 2}']


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m reelrt.bench.serve_soak", description=__doc__.split("\n\n")[0])
    p.add_argument("generator", help="a GPT-2 bundle")
    p.add_argument("--image", help="an image classifier bundle (adds v2 infer clients)")
    p.add_argument("--minutes", type=float, default=20)
    p.add_argument("--parallel", type=int, default=4)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--sample-s", type=float, default=10)
    p.add_argument("--max-growth-mb", type=float, default=32)
    args = p.parse_args(argv)
    port = free_port()
    targets = [f"gen={args.generator}"] + ([f"img={args.image}"] if args.image else [])
    cmd = [sys.executable, "-m", "reelrt", "serve", *targets, "--port", str(port), "--parallel", str(args.parallel),
           "--threads", str(args.threads), "--max-body-bytes", "1000000"]
    counts: Counter[str] = Counter()
    wrong: list[str] = []
    stop = threading.Event()
    png = cv2.imencode(".png", np.random.default_rng(0).integers(0, 256, (120, 160, 3), dtype=np.uint8))[1].tobytes()

    def client(kind: str, seed: int) -> None:
        rng = random.Random(seed)
        while not stop.is_set():
            try:
                if kind == "stream" or kind == "whole":
                    body = {"model": "gen", "prompt": f"Quest {rng.randint(0, 999)}: the innkeeper says",
                            "max_tokens": rng.randint(8, 96), "temperature": rng.choice([0, 0.8]), "seed": seed,
                            "stream": kind == "stream"}
                    status, answer = _post(port, "/v1/completions", json.dumps(body).encode())
                    ok = status == 200 and (b"[DONE]" in answer if kind == "stream" else b'"choices"' in answer)
                elif kind == "abandon":
                    ok = _abandon(port, rng) == 200
                elif kind == "malformed":
                    body = rng.choice(MALFORMED + [b"x" * 1_200_000])
                    status, answer = _post(port, "/v1/completions", body)
                    ok = 400 <= status < 500
                else:
                    body = {"inputs": [{"name": "image", "datatype": "BYTES", "shape": [1],
                                        "data": [base64.b64encode(png).decode()]}]}
                    status, answer = _post(port, "/v2/models/img/infer", json.dumps(body).encode())
                    ok = status == 200
                counts[kind] += 1
                if not ok:
                    wrong.append(f"{kind}: {status if kind != 'abandon' else ''} {answer[:120]!r}")
            except Exception as e:  # a refused connection or a reset: the server failed this client
                wrong.append(f"{kind}: {type(e).__name__}: {e}")
                time.sleep(1)

    kinds = ["stream", "stream", "whole", "abandon", "malformed"] + (["image"] if args.image else [])
    samples: list[tuple[float, float]] = []
    with server(cmd, port, "/v2/health/ready") as proc:
        threads = [threading.Thread(target=client, args=(k, i), daemon=True) for i, k in enumerate(kinds)]
        for t in threads:
            t.start()
        start = time.monotonic()
        while time.monotonic() - start < args.minutes * 60:
            time.sleep(args.sample_s)
            samples.append((time.monotonic() - start, resident(proc.pid)[0] / 2**20))
            print(f"{samples[-1][0]:7.0f} s  anonymous RSS {samples[-1][1]:7.1f} MB  {dict(counts)}"
                  f"  wrong {len(wrong)}", flush=True)
        stop.set()
        for t in threads:
            t.join(timeout=300)
    settled = [mb for t, mb in samples if t >= 60] or [mb for _, mb in samples]
    growth = settled[-1] - settled[0]
    print(f"requests {dict(counts)}; wrong answers {len(wrong)}; anonymous RSS after the first minute"
          f" {settled[0]:.1f} -> {settled[-1]:.1f} MB ({growth:+.1f} MB)")
    for line in wrong[:10]:
        print("  ", line)
    return 1 if wrong or growth > args.max_growth_mb else 0


if __name__ == "__main__":
    sys.exit(main())
