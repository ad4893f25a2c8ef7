"""A 60 fps game loop asking for one classification per frame: what the runtime costs the host.

    flock /tmp/reelrt-bench.lock python -m reelrt.bench.gameloop BUNDLE [--rounds 6] [--frames 120] [--json F]

The loop thread is pinned to one CPU (os.sched_setaffinity). At each frame's start it submits
the last frame to the classifier (`submit()`, never waiting) when the previous answer has
arrived, then does a fixed amount of native "render" work (numpy ufuncs, which release the GIL
as engine code would not need it) while the model runs, and sleeps to the next 16.7 ms vsync.
The classifier keeps the default placement and one thread per CPU (`--threads`), so its pool
threads share the loop's CPU, as an embedded runtime's would unless the host pins them
elsewhere (`affinity=`). Reported:

- frame time: the loop's work from the frame's start to its end (submit plus render work);
  p50/p99 over all frames, against the loop alone;
- inference latency: submit() to the answer, p50/p99;
- answers per frame: how many frames got a fresh answer (a frame whose previous answer is
  still pending submits nothing).

A last configuration pins the classifier to the other CPUs (`affinity=`, spin off), the
host's remedy when it has cores to spare. Configurations are interleaved round by round
(alone, spin off, spin on, pinned elsewhere), so a busy minute on a shared machine falls on
every configuration alike.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from reelrt.bench.harness import percentile

FPS = 60
FRAME_S = 1.0 / FPS


class Render:
    """A fixed amount of GIL-free CPU work, sized once to `ms` milliseconds on an idle core."""

    def __init__(self, ms: float):
        self.a = np.random.default_rng(0).random(1 << 15, dtype=np.float32)
        self.b = np.empty_like(self.a)
        for _ in range(50):  # first touches of the arrays
            self._step()
        per = []
        for _ in range(100):   # the quickest of many short blocks: the core's speed when nobody preempts it
            start = time.perf_counter()
            for _ in range(10):
                self._step()
            per.append((time.perf_counter() - start) / 10)
        self.iterations = max(1, round(ms / 1e3 / min(per)))

    def _step(self) -> None:
        np.sqrt(self.a, out=self.b)
        np.multiply(self.b, 0.5, out=self.b)
        np.add(self.b, self.a, out=self.b)

    def __call__(self) -> None:
        for _ in range(self.iterations):
            self._step()


def run_loop(render: Render, frames: int, clf, image: np.ndarray | None) -> dict[str, list[float]]:
    """`frames` frames at 60 fps; with a classifier, one submit() per frame when the last answer is in."""
    frame_ms, latency_ms = [], []
    answered = 0
    pending = None
    next_vsync = time.perf_counter()
    for _ in range(frames):
        start = time.perf_counter()
        if clf is not None:   # at the frame's start, as a game asks about the last frame: the model
            # then runs while this frame renders, so its threads and the render contend for the CPU
            if pending is not None and pending[0].done():
                pending[0].result()
                latency_ms.append((pending[1] - pending[2]) * 1e3)
                answered += 1
                pending = None
            if pending is None:
                submitted = time.perf_counter()
                future = clf.submit(image, top_k=1)
                pending = [future, 0.0, submitted]
                future.add_done_callback(lambda f, p=pending: p.__setitem__(1, time.perf_counter()))
        render()
        frame_ms.append((time.perf_counter() - start) * 1e3)
        next_vsync += FRAME_S
        delay = next_vsync - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        else:
            next_vsync = time.perf_counter()  # a missed vsync: start again from now
    if pending is not None:
        pending[0].result()
    return {"frame_ms": frame_ms, "latency_ms": latency_ms, "answered": [answered / frames]}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m reelrt.bench.gameloop", description=__doc__.split("\n\n")[0])
    p.add_argument("bundle", help="an image-classification bundle")
    p.add_argument("--rounds", type=int, default=6, help="rounds; each runs every configuration once")
    p.add_argument("--frames", type=int, default=120, help="frames per configuration and round (120 = 2 s)")
    p.add_argument("--render-ms", type=float, default=8.0, help="render work per frame, on an idle core")
    p.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 2,
                   help="classifier threads (default: one per CPU this process may use, so the pool shares the"
                        " loop's CPU)")
    p.add_argument("--cpu", type=int, default=None, help="the loop's CPU (default: the first one allowed)")
    p.add_argument("--json", help="write the figures here")
    args = p.parse_args(argv)
    if not hasattr(os, "sched_setaffinity"):
        sys.exit("gameloop needs os.sched_setaffinity (Linux) to pin the loop to one core")
    from reelrt.runtime import load

    cpu = args.cpu if args.cpu is not None else min(os.sched_getaffinity(0))
    image = np.random.default_rng(1).integers(0, 256, (720, 1280, 3), np.uint8)
    models = {"spin off": load(args.bundle, device="cpu", threads=args.threads, spin=False),
              "spin on": load(args.bundle, device="cpu", threads=args.threads, spin=True)}
    others = sorted(os.sched_getaffinity(0) - {cpu})
    if others:  # the host's remedy: keep the model off the loop's CPU
        models["spin off, other CPUs"] = load(args.bundle, device="cpu", threads=len(others), spin=False,
                                              affinity=others)
    os.sched_setaffinity(0, {cpu})   # from here on this thread is the game's loop thread
    render = Render(args.render_ms)
    for clf in models.values():      # warm up: first runs allocate, the worker thread starts
        for _ in range(5):
            clf.submit(image, top_k=1).result()
    configs = {"loop alone": None, **models}
    results: dict[str, dict[str, list[float]]] = {name: {"frame_ms": [], "latency_ms": [], "answered": []}
                                                  for name in configs}
    for _ in range(args.rounds):
        for name, clf in configs.items():
            for key, values in run_loop(render, args.frames, clf, image).items():
                results[name][key].extend(values)
    for clf in models.values():
        clf.close()
    summary = summarize(results)
    threads = models["spin off"].threads.threads
    print(table(summary, args, cpu, threads, render.iterations))
    if args.json:
        machine = {"cpu_count": os.cpu_count(), "loadavg": os.getloadavg(), "platform": platform.platform()}
        Path(args.json).write_text(json.dumps({"settings": vars(args) | {"loop_cpu": cpu, "model_threads": threads},
                                               "machine": machine, "summary": summary}, indent=1) + "\n")
    return 0


def summarize(results: dict[str, dict[str, list[float]]]) -> dict[str, dict[str, float | None]]:
    out = {}
    alone = statistics.median(results["loop alone"]["frame_ms"])
    for name, r in results.items():
        lat = r["latency_ms"]
        out[name] = {"frame_p50_ms": statistics.median(r["frame_ms"]),
                     "frame_p99_ms": percentile(sorted(r["frame_ms"]), 99),
                     "frame_p50_vs_alone": statistics.median(r["frame_ms"]) / alone,
                     "missed_vsync": sum(f > FRAME_S * 1e3 for f in r["frame_ms"]) / len(r["frame_ms"]),
                     "latency_p50_ms": statistics.median(lat) if lat else None,
                     "latency_p99_ms": percentile(sorted(lat), 99) if lat else None,
                     "answered_per_frame": statistics.mean(r["answered"]) if lat else None}
    return out


def table(summary: dict, args: argparse.Namespace, cpu: int, threads: int, iterations: int) -> str:
    def f(x, fmt="{:.2f}"):
        return "-" if x is None else fmt.format(x)
    lines = [f"game loop at {FPS} fps on CPU {cpu}, render work sized to {args.render_ms} ms on an idle core"
             f" ({iterations} steps), {args.rounds} rounds x"
             f" {args.frames} frames per configuration, interleaved; classifier {Path(args.bundle).name},"
             f" {threads} threads, default placement; load average {os.getloadavg()[0]:.1f}", "",
             "| configuration | frame p50 ms | frame p99 ms | p50 vs alone | frames over 16.7 ms | inference p50 ms"
             " | inference p99 ms | answers per frame |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for name, s in summary.items():
        lines.append(f"| {name} | {f(s['frame_p50_ms'])} | {f(s['frame_p99_ms'])} | {f(s['frame_p50_vs_alone'])}x"
                     f" | {s['missed_vsync']:.1%} | {f(s['latency_p50_ms'])} | {f(s['latency_p99_ms'])}"
                     f" | {f(s['answered_per_frame'])} |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
