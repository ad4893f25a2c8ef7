"""What thread safety costs an ImageClassifier at batch 1 (an experiment: not in the wheel).

    flock /tmp/reelrt-bench.lock python bench/experiments/threads.py BUNDLE [--rounds 20] [--calls 300]

The classifier keeps one input buffer per thread (threading.local) so that it can be shared;
this times classify() of a 1080p frame with that buffer against the same classifier with one
plain shared buffer (the unsafe layout it replaced), interleaved A B A B, and prints the
medians and the cost of the buffer lookup alone.
"""
from __future__ import annotations

import argparse
import sys
import time
import timeit

import numpy as np

from reelrt.runtime import load
from reelrt.runtime.tasks.image import ImageClassifier


def _shared_batch(self: ImageClassifier, n: int) -> np.ndarray:
    """The unsafe layout: one buffer on the object, whatever thread asks."""
    buffer = getattr(self, "_shared_buffer", None)
    if buffer is None or buffer.shape[0] < n:
        p = self.preprocess
        buffer = self._shared_buffer = np.empty((n, p.channels, p.height, p.width), np.float32)
    return buffer[:n]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="bench/experiments/threads.py", description=__doc__.split("\n\n")[0])
    p.add_argument("bundle", help="an image-classification bundle")
    p.add_argument("--rounds", type=int, default=20)
    p.add_argument("--calls", type=int, default=300, help="classify() calls per round and layout")
    args = p.parse_args(argv)

    clf = load(args.bundle, device="cpu", spin=True)
    frame = np.random.default_rng(0).integers(0, 256, (1080, 1920, 3), np.uint8)
    layouts = {"per-thread buffer": ImageClassifier._batch, "shared buffer": _shared_batch}
    times: dict[str, list[float]] = {name: [] for name in layouts}
    per_call: dict[str, float] = {}
    for name, batch in layouts.items():
        clf._batch = batch.__get__(clf)
        clf.classify(frame)  # warm-up
        per_call[name] = min(timeit.repeat(lambda: clf._batch(1), number=100_000, repeat=5)) / 100_000
    for _ in range(args.rounds):
        for name, batch in layouts.items():
            clf._batch = batch.__get__(clf)
            start = time.perf_counter()
            for _ in range(args.calls):
                clf.classify(frame, top_k=1)
            times[name].append((time.perf_counter() - start) / args.calls)
    print(f"{args.bundle}: classify(1080p frame), batch 1, {args.rounds} rounds x {args.calls} calls, interleaved")
    print("| layout | median ms per call | buffer lookup ns |")
    print("| --- | ---: | ---: |")
    for name in layouts:
        print(f"| {name} | {np.median(times[name]) * 1e3:.3f} | {per_call[name] * 1e9:.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
