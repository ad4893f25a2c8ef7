"""What the prefill chunk trades, in-process (an experiment: not in the wheel).

    python bench/experiments/prefill_chunk.py BUNDLE [--chunks 8,16,32] [--clients 8] [--rounds 4]

K threads share one SlotGenerator with K slots, each sending 4 requests of a 32-token prompt
and 128 new tokens one after another (the serving bench's workload without HTTP); chunk sizes
are interleaved round by round. Per chunk: aggregate tokens/s, inter-token gap p50/p99 and time
to first token p50/p99 (medians over rounds). A smaller chunk spreads a newcomer's prompt over
more decode steps: even gaps for the rows already decoding, a later first token for it.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time

import numpy as np

from reelrt.bench.serving import run_clients
from reelrt.runtime import load
from reelrt.runtime.tasks.generation.slots import SlotGenerator

REQUESTS, PROMPT, NEW = 4, 32, 128


def one_round(gen, clients: int, chunk: int) -> dict[str, float]:
    slots = SlotGenerator(gen, slots=clients, prefill_chunk=chunk)
    streams: list[tuple[float, list[float]]] = []

    def client(c: int) -> None:
        rng = np.random.default_rng(c)
        for _ in range(REQUESTS):
            ids = [int(t) for t in rng.integers(1, gen.text_vocab, PROMPT)]
            sent = time.perf_counter()
            streams.append((sent, [time.perf_counter() for _ in slots.stream_ids(ids, NEW, stop_token_ids=())]))
    wall = run_clients(clients, client)
    slots.close()
    gaps = np.concatenate([np.diff(stamps) for _, stamps in streams]) * 1e3
    first = np.array([(stamps[0] - sent) * 1e3 for sent, stamps in streams])
    return {"tokens/s": clients * REQUESTS * NEW / wall, "gap p50": np.median(gaps), "gap p99": np.percentile(gaps, 99),
            "first p50": np.median(first), "first p99": np.percentile(first, 99)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("bundle", help="a GPT-2 bundle")
    p.add_argument("--chunks", default="8,16,32")
    p.add_argument("--clients", type=int, default=8)
    p.add_argument("--rounds", type=int, default=4)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)
    gen = load(args.bundle, threads=args.threads, spin=True)
    chunks = [int(c) for c in args.chunks.split(",")]
    rounds: dict[int, list[dict[str, float]]] = {c: [] for c in chunks}
    for r in range(args.rounds):
        for chunk in (chunks if r % 2 == 0 else chunks[::-1]):
            rounds[chunk].append(one_round(gen, args.clients, chunk))
    print("| chunk | tokens/s | gap p50 ms | gap p99 ms | first token p50 ms | p99 ms |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: |")
    for chunk, results in rounds.items():
        m = {key: statistics.median(r[key] for r in results) for key in results[0]}
        print(f"| {chunk} | {m['tokens/s']:.0f} | {m['gap p50']:.2f} | {m['gap p99']:.2f} | {m['first p50']:.1f}"
              f" | {m['first p99']:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
