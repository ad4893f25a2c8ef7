"""What preprocessing one 1080p frame costs, for every interpolation a manifest can name, with OpenCV and
with numpy alone, exact and with a reducing gap.

    flock /tmp/reelrt-bench.lock python -m reelrt.bench.preprocessing [--size 224 --resize 256]
        [--gaps none,2,1] [--rounds 5] [--calls 20] [--json F]

The Preprocessor of a policy (size, resize, centre crop, the interpolation, ImageNet's mean/std)
turns a 1920x1080 BGR photograph (scikit-learn's, scaled up) into the model's input; the figure is
the median (and p90) over rounds x calls of that call alone, which is what a frame costs on top of
the model's own run. "numpy" hides OpenCV from the image module for the measurement (the base
install without `reelrt[images]`); OpenCV's own filters (cubic, nearest, lanczos) have no numpy
path there and are skipped. Configurations are interleaved round by round, so a busy moment on a
shared machine falls on all of them alike.
"""
from __future__ import annotations

import argparse
import json
import statistics
import time
from contextlib import contextmanager
from typing import Iterator

import numpy as np

from reelrt.bench.harness import percentile
from reelrt.bench.machine import describe
from reelrt.runtime.tasks import antialias, image

INTERPOLATIONS = ("area", "linear", "cubic", "nearest", "lanczos", *antialias.NAMES)


def photo_frame(height: int = 1080, width: int = 1920) -> np.ndarray:
    """A real photograph at 1080p: scikit-learn's china.jpg, scaled up (BGR)."""
    import cv2
    from sklearn.datasets import load_sample_image

    return cv2.resize(load_sample_image("china.jpg")[:, :, ::-1], (width, height), interpolation=cv2.INTER_CUBIC)


@contextmanager
def opencv(present: bool) -> Iterator[None]:
    """The image module with OpenCV (as installed) or without it (numpy's paths)."""
    saved = image.cv2
    if not present:
        image.cv2 = None
    try:
        yield
    finally:
        image.cv2 = saved


def configurations(size: int, resize: int, gaps: list[float | None]) -> list[tuple[str, dict]]:
    out = []
    for backend in ("opencv", "numpy"):
        for interpolation in INTERPOLATIONS:
            if backend == "numpy" and interpolation not in ("area", "linear") and interpolation not in antialias.NAMES:
                continue
            for gap in gaps:
                if gap is not None and interpolation in ("nearest", "pil-nearest"):
                    continue   # a reduction would change what nearest means
                policy = {"size": [size, size], "resize": resize, "crop": "center", "interpolation": interpolation,
                          "reducing_gap": gap, "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}
                out.append((backend, policy))
    return out


def measure(frame: np.ndarray, configs: list[tuple[str, dict]], rounds: int, calls: int) -> list[list[float]]:
    times: list[list[float]] = [[] for _ in configs]
    preprocessors = []
    for backend, policy in configs:
        with opencv(backend == "opencv"):
            preprocessors.append(image.Preprocessor(policy))
    for _ in range(rounds):
        for (backend, policy), pre, sink in zip(configs, preprocessors, times):
            out = np.empty((3, pre.height, pre.width), np.float32)
            with opencv(backend == "opencv"):
                pre(frame, False, out)       # coefficients cached, buffers warm
                for _ in range(calls):
                    start = time.perf_counter()
                    pre(frame, False, out)
                    sink.append(time.perf_counter() - start)
    return times


def table(configs: list[tuple[str, dict]], times: list[list[float]]) -> str:
    lines = ["| backend | interpolation | reducing_gap | median ms | p90 ms | within 1 ms |",
             "| --- | --- | --- | --- | --- | --- |"]
    for (backend, policy), samples in zip(configs, times):
        median = statistics.median(samples) * 1e3
        lines.append(f"| {backend} | {policy['interpolation']} | {policy['reducing_gap'] or 'exact'} | {median:.2f} |"
                     f" {percentile(sorted(samples), 90) * 1e3:.2f} | {'yes' if median <= 1.0 else 'no'} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--resize", type=int, default=256)
    p.add_argument("--gaps", default="none,2,1", help="reducing gaps, 'none' for exact")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--calls", type=int, default=20)
    p.add_argument("--json", help="also write the figures here")
    args = p.parse_args(argv)
    gaps = [None if g.strip() == "none" else float(g) for g in args.gaps.split(",")]
    configs = configurations(args.size, args.resize, gaps)
    times = measure(photo_frame(), configs, args.rounds, args.calls)
    machine = describe(threads=1, bandwidth=False)
    print(f"1920x1080 BGR frame -> {args.size}x{args.size} (shorter side {args.resize}, centre crop); "
          f"{machine['cpu']} ({machine['logical_cores']} CPUs; {' '.join(machine['flags'])}); OpenCV's own threads")
    print(table(configs, times))
    if args.json:
        rows = [{"backend": b, "interpolation": pol["interpolation"], "reducing_gap": pol["reducing_gap"],
                 "median_ms": statistics.median(t) * 1e3, "p90_ms": percentile(sorted(t), 90) * 1e3}
                for (b, pol), t in zip(configs, times)]
        with open(args.json, "w") as f:
            json.dump({"machine": machine, "size": args.size, "resize": args.resize, "rows": rows}, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
