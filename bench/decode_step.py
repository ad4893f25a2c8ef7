"""One decode step of reelrt's KVDecoder, alone: the loop's own per-token cost, which matters
most on small models (the tiny GPT-2's step is tens of microseconds).

    python -m reelrt.bench.decode_step BUNDLE [ROUNDS]

Batch 1, one thread, a 32-token prompt, then 128 timed steps per round (20 rounds unless
ROUNDS says otherwise); prints the median step in microseconds. To compare two versions of the code, run it from each checkout in turn, several
times each, alternating.
"""
from __future__ import annotations

import json
import statistics
import sys
import time

import numpy as np


def step_times(bundle: str, rounds: int, threads: int = 1) -> list[float]:
    """Seconds of each timed decode step."""
    from reelrt.runtime import load
    decoder = load(bundle, threads=threads).decoder
    token = np.array([5], np.int64)
    times = []
    for _ in range(rounds):
        decoder.start(1)
        decoder.prefill(0, np.arange(1, 33, dtype=np.int64))
        for _ in range(128):
            start = time.perf_counter()
            decoder.decode(token)
            times.append(time.perf_counter() - start)
    return times


def main(argv: list[str]) -> int:
    if not 1 <= len(argv) <= 2 or (len(argv) == 2 and not argv[1].isdigit()):
        print(__doc__.strip().splitlines()[3].strip(), file=sys.stderr)
        return 2
    times = step_times(argv[0], int(argv[1]) if len(argv) == 2 else 20)
    print(json.dumps({"median_us": round(statistics.median(times) * 1e6, 1), "steps": len(times)}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
