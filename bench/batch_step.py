"""What a decode step costs as it decodes more rows: the ceiling of continuous batching.

    python -m reelrt.bench.batch_step BUNDLE [--rows 1,2,4,8,16] [--context 96] [--threads 2] [--json F]

Each row of KVDecoder's cache holds `--context` tokens (the serving bench's mean: a 32-token
prompt and half of 128 new tokens); one step appends a token to every row. For each row count:
the median step (ms), the tokens per second it gives (rows / step), and how much more a step of
R rows costs than a step of one. Then ONNX Runtime's profiler attributes the step to operator
types, with one thread so that kernel times add up to the step: batching pays where the step
is bound by reading weights, and stops paying where kernels are bound by arithmetic, which
grows with the rows (MatMulNBits' int8 dot products, attention over every row's cache).
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import onnxruntime as ort

from reelrt.runtime import load, open_bundle
from reelrt.runtime.tasks.generation.decoder import KVDecoder


def fill(decoder: KVDecoder, rows: int, context: int) -> None:
    """Every row holds `context` tokens (prefilled one row at a time, as the slots do)."""
    decoder.start(rows)
    prompt = np.arange(1, context + 1, dtype=np.int64) % decoder.vocab_size
    for row in range(rows):
        decoder.prefill(row, prompt)


def step_ms(decoder: KVDecoder, rows: int, context: int, steps: int) -> float:
    """Median milliseconds of `steps` decode steps over `rows` rows (the context grows by `steps`)."""
    fill(decoder, rows, context)
    tokens = np.full(rows, 5, np.int64)
    decoder.decode(tokens)  # the first step of a row count binds its buffers
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        decoder.decode(tokens)
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def by_operator(bundle: str, rows: int, context: int, steps: int) -> dict[str, float]:
    """ms per step by operator type, from ONNX Runtime's profiler on one thread (median per node)."""
    b = open_bundle(bundle)
    with tempfile.TemporaryDirectory() as tmp:
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.enable_profiling = True
        options.profile_file_prefix = str(Path(tmp) / "step")
        session = ort.InferenceSession(str(b.path(b.manifest.model)), options, providers=["CPUExecutionProvider"])
        decoder = KVDecoder.from_facts(session, b.manifest.extra)
        fill(decoder, rows, context)
        tokens = np.full(rows, 5, np.int64)
        for _ in range(steps):
            decoder.decode(tokens)
        events = json.loads(Path(session.end_profiling()).read_text())
    runs = sorted((e for e in events if e.get("cat") == "Session" and e["name"] == "model_run"), key=lambda e: e["ts"])
    first_step = runs[-steps]["ts"]  # the prefills ran before the decode steps
    per_node: dict[tuple[str, str], list[float]] = defaultdict(list)
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time") and e["ts"] >= first_step:
            per_node[(e["args"]["op_name"], e["name"])].append(e["dur"] / 1e3)
    shares: dict[str, float] = defaultdict(float)
    for (op, _), durations in per_node.items():
        shares[op] += statistics.median(durations)
    return dict(sorted(shares.items(), key=lambda kv: -kv[1]))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m reelrt.bench.batch_step", description=__doc__.split("\n\n")[0])
    p.add_argument("bundle", help="a GPT-2 bundle")
    p.add_argument("--rows", default="1,2,4,8,16", help="row counts to time, comma-separated")
    p.add_argument("--context", type=int, default=96, help="tokens in each row's cache")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--steps", type=int, default=40, help="timed steps per row count")
    p.add_argument("--rounds", type=int, default=3, help="passes over the row counts (medians of the passes)")
    p.add_argument("--json", help="write the figures here")
    args = p.parse_args(argv)
    rows = [int(r) for r in args.rows.split(",")]
    decoder = load(args.bundle, threads=args.threads, spin=True).decoder
    timed: dict[int, list[float]] = {r: [] for r in rows}
    for _ in range(args.rounds):
        for r in rows:
            timed[r].append(step_ms(decoder, r, args.context, args.steps))
    steps = {r: statistics.median(t) for r, t in timed.items()}
    profile = {r: by_operator(args.bundle, r, args.context, args.steps) for r in (rows[0], rows[-1])}
    report = {"bundle": args.bundle, "context": args.context, "threads": args.threads, "step_ms": steps,
              "profile_one_thread_ms": profile}
    print(table(report))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1) + "\n")
    return 0


def table(report: dict) -> str:
    steps = report["step_ms"]
    one = steps[min(steps)]
    lines = [f"{Path(report['bundle']).name}, {report['context']} tokens per row, {report['threads']} threads", "",
             "| rows | step ms | tokens/s | step vs 1 row |", "| ---: | ---: | ---: | ---: |"]
    for r, ms in steps.items():
        lines.append(f"| {r} | {ms:.2f} | {r / ms * 1e3:.0f} | {ms / one:.2f}x |")
    profile = report["profile_one_thread_ms"]
    counts = list(profile)
    ops = list(dict.fromkeys(op for r in counts for op in profile[r]))
    lines += ["", "One thread, ms per step by operator (ONNX Runtime's profiler):", "",
              "| operator | " + " | ".join(f"{r} row{'s' if r > 1 else ''}" for r in counts) + " | growth |",
              "| --- | " + " | ".join("---:" for _ in counts) + " | ---: |"]
    for op in ops[:6]:
        a, b = (profile[r].get(op, 0.0) for r in (counts[0], counts[-1]))
        lines.append(f"| {op} | {a:.2f} | {b:.2f} | {b / a if a else float('inf'):.1f}x |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
