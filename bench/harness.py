"""The measuring core every benchmark shares: systems, interleaved timing, statistics.

A System is described by an importable factory ("module:function") and keyword
arguments, not by a live object, so the same system can be rebuilt in a child process
to measure its peak memory and cold start without anything else loaded beside it.
A factory returns a zero-argument step to time; a step may return a dict of metrics it
measured itself (time to first token, decode ms/token), which are summarised too.
"""
from __future__ import annotations

import importlib
import statistics
import time
from dataclasses import dataclass, field
from typing import Any, Callable

Step = Callable[[], "dict[str, float] | None"]


@dataclass
class System:
    name: str                   # the row label: "reelrt int8 (openvino)", "pytorch eager"
    workload: str               # what is measured: "mobilenetv2 batch 1"; rows of one workload are compared
    factory: str                # "module:function" returning a Step
    kwargs: dict[str, Any] = field(default_factory=dict)
    is_reelrt: bool = False
    size_bytes: int | None = None

    def build(self) -> Step:
        module, func = self.factory.split(":")
        return getattr(importlib.import_module(module), func)(**self.kwargs)


@dataclass
class Stats:
    median: float
    p90: float
    p99: float
    mean: float
    n: int

    @classmethod
    def of(cls, samples: list[float]) -> "Stats":
        if not samples:
            raise ValueError("no samples")
        ordered = sorted(samples)
        return cls(statistics.median(ordered), percentile(ordered, 90), percentile(ordered, 99),
                   statistics.fmean(ordered), len(ordered))


def percentile(ordered: list[float], q: float) -> float:
    """Linear-interpolated percentile of already sorted samples."""
    if len(ordered) == 1:
        return ordered[0]
    pos = (len(ordered) - 1) * q / 100
    lo = int(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


@dataclass
class Result:
    system: System
    latency_ms: Stats
    metrics: dict[str, Stats]


def interleave(steps: list[Step], warmup: int, iterations: int | None, seconds: float | None,
               on_round: Callable[[int], None] | None = None) -> tuple[list[list[float]], list[list[dict]]]:
    """Run A B C A B C ... so that drift of the machine hits every system alike.

    Stops after `iterations` rounds, or once `seconds` of wall time have passed (at least
    5 rounds), whichever comes first. Returns per-step latencies (ms) and returned metrics.
    """
    for _ in range(warmup):
        for step in steps:
            step()
    times: list[list[float]] = [[] for _ in steps]
    metrics: list[list[dict]] = [[] for _ in steps]
    start = time.perf_counter()
    rounds = 0
    while True:
        for i, step in enumerate(steps):
            t0 = time.perf_counter()
            extra = step()
            times[i].append((time.perf_counter() - t0) * 1e3)
            if extra:
                metrics[i].append(extra)
        rounds += 1
        if on_round:
            on_round(rounds)
        if iterations is not None and rounds >= iterations:
            break
        if seconds is not None and rounds >= 5 and time.perf_counter() - start >= seconds:
            break
        if iterations is None and seconds is None:
            raise ValueError("give iterations or seconds")
    return times, metrics


def measure(systems: list[System], warmup: int = 3, iterations: int | None = 50, seconds: float | None = None,
            on_round: Callable[[int], None] | None = None) -> list[Result]:
    """Build every system, time them interleaved, return their statistics in the same order."""
    steps = [s.build() for s in systems]
    times, metrics = interleave(steps, warmup, iterations, seconds, on_round)
    results = []
    for system, t, m in zip(systems, times, metrics):
        keys = sorted({k for d in m for k in d})
        results.append(Result(system, Stats.of(t), {k: Stats.of([d[k] for d in m if k in d]) for k in keys}))
    return results


def ratios(results: list[Result], baseline: str) -> dict[str, float]:
    """Each system's median latency over the baseline system's, within each workload."""
    base = {r.system.workload: r.latency_ms.median for r in results if r.system.name == baseline}
    return {f"{r.system.workload} / {r.system.name}": r.latency_ms.median / base[r.system.workload]
            for r in results if r.system.workload in base}
