"""The measuring core every benchmark shares: systems, interleaved timing, statistics.

A System is described by an importable factory ("module:function") and keyword
arguments, not by a live object, so the same system can be rebuilt in a child process
to measure its peak memory and cold start without anything else loaded beside it.
A factory returns a zero-argument step to time; a step may return a dict of metrics it
measured itself (time to first token, decode ms/token), which are summarised too.

Every system of a run gets the same thread count: `thread_env` is what the benchmark
process and its child processes set before any math library starts its thread pool,
and families pass the same count to torch, ONNX Runtime and OpenVINO themselves.
"""
from __future__ import annotations

import importlib
import os
import statistics
import time
from dataclasses import dataclass, field
from typing import Any, Callable

Step = Callable[[], "dict[str, float] | None"]

# The peers a family may measure beside reelrt, and words that name each in a row label.
PEER_ALIASES = {
    "pytorch": ("pytorch", "torch eager"),
    "ort-naive": ("ort-naive", "onnxruntime naive", "ort naive", "naive export"),
    "optimum": ("optimum",),
    "opencv-dnn": ("opencv",),
    "openvino": ("openvino",),
    "llama.cpp": ("llama.cpp", "llama-cpp", "llama_cpp"),
}
PEERS = tuple(PEER_ALIASES)
THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS",
               "VECLIB_MAXIMUM_THREADS")


def thread_env(threads: int) -> dict[str, str]:
    """Environment that caps every math library's pool at `threads` (set before they load)."""
    return {name: str(threads) for name in THREAD_VARS}


def pin_threads(threads: int) -> None:
    """Cap the math libraries this process loads from now on (torch, OpenVINO) at `threads`.

    numpy is loaded already by then; its BLAS pool serves no timed step. Child processes
    get the same settings from their first instruction (see isolated.py)."""
    os.environ.update(thread_env(threads))


@dataclass
class System:
    name: str                   # the row label: "reelrt int8 (openvino)", "pytorch eager"
    workload: str               # what is measured: "mobilenetv2 batch 1"; rows of one workload are compared
    factory: str                # "module:function" returning a Step
    kwargs: dict[str, Any] = field(default_factory=dict)
    is_reelrt: bool = False
    size_bytes: int | None = None
    batch: int = 1              # items one step processes: throughput = batch / latency
    peer: str | None = None     # which peer this row is ("pytorch", ...); guessed from the name when None
    bytes_per_token: int | None = None  # generation: bytes a decode step reads (the bandwidth floor's numerator)

    @property
    def peer_name(self) -> str | None:
        """The peer this row stands for, or None for a reelrt row (or an unrecognised one)."""
        if self.is_reelrt:
            return None
        if self.peer:
            return self.peer
        label = self.name.lower()
        return next((p for p in PEER_ALIASES if any(a in label for a in PEER_ALIASES[p])), None)

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
               on_round: Callable[[int], None] | None = None, block: int = 1) -> tuple[list[list[float]], list[list[dict]]]:
    """Run A B C A B C ... so that drift of the machine hits every system alike.

    With block > 1 each turn is one untimed call followed by `block` timed ones: ONNX
    Runtime's worker threads spin for a while after a run, and on a 2-core machine that
    tail would otherwise be charged to whichever system runs next.
    Stops after `iterations` rounds, or once `seconds` of wall time have passed (at least
    5 timed calls per system), whichever comes first. Returns per-step latencies (ms) and
    returned metrics.
    """
    if iterations is None and seconds is None:
        raise ValueError("give iterations or seconds")
    for _ in range(warmup):
        for step in steps:
            step()
    times: list[list[float]] = [[] for _ in steps]
    metrics: list[list[dict]] = [[] for _ in steps]
    start = time.perf_counter()
    rounds = 0
    while True:
        for i, step in enumerate(steps):
            if block > 1:
                step()
            for _ in range(block):
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
        if seconds is not None and rounds * block >= 5 and time.perf_counter() - start >= seconds:
            break
    return times, metrics


def measure(systems: list[System], warmup: int = 3, iterations: int | None = 50, seconds: float | None = None,
            on_round: Callable[[int], None] | None = None, errors: dict[str, str] | None = None,
            block: int = 1) -> list[Result]:
    """Build every system, time them interleaved, return their statistics in the same order.

    With `errors`, a system whose factory raises is left out and its error recorded there
    under its name, so one broken peer does not cost the others their measurement.
    """
    built = []
    for system in systems:
        try:
            built.append((system, system.build()))
        except Exception as e:
            if errors is None:
                raise
            errors[system.name] = one_line(e)
    if not built:
        return []
    times, metrics = interleave([step for _, step in built], warmup, iterations, seconds, on_round, block)
    results = []
    for (system, _), t, m in zip(built, times, metrics):
        keys = sorted({k for d in m for k in d})
        results.append(Result(system, Stats.of(t), {k: Stats.of([d[k] for d in m if k in d]) for k in keys}))
    return results


def one_line(error: BaseException | str) -> str:
    """An error as one short line for a report: its type and the first line of its message."""
    text = error if isinstance(error, str) else f"{type(error).__name__}: {error}"
    return (text.strip().splitlines() or [""])[0][:300]


def ratios(results: list[Result], baseline: str | dict[str, str]) -> dict[str, float]:
    """Each system's median latency over the baseline system's, within each workload.

    `baseline` is one system name for every workload, or {workload: system name}.
    """
    names = baseline if isinstance(baseline, dict) else {r.system.workload: baseline for r in results}
    base = {r.system.workload: r.latency_ms.median for r in results if names.get(r.system.workload) == r.system.name}
    return {f"{r.system.workload} / {r.system.name}": r.latency_ms.median / base[r.system.workload]
            for r in results if r.system.workload in base}


def baselines(results: list[Result]) -> dict[str, str]:
    """The row each workload is compared against: PyTorch eager when it was measured, else
    the first peer, else the first row."""
    chosen: dict[str, str] = {}
    for rank in (lambda s: s.peer_name == "pytorch", lambda s: not s.is_reelrt, lambda s: True):
        for r in results:
            if r.system.workload not in chosen and rank(r.system):
                chosen[r.system.workload] = r.system.name
    return chosen


def fastest_peers(results: list[Result]) -> dict[str, str]:
    """The fastest non-reelrt row of each workload (by median latency)."""
    best: dict[str, Result] = {}
    for r in results:
        w = r.system.workload
        if not r.system.is_reelrt and (w not in best or r.latency_ms.median < best[w].latency_ms.median):
            best[w] = r
    return {w: r.system.name for w, r in best.items()}
