"""`reelrt bench` and `reelrt demo`: their arguments; the work is in runner.py and demo.py."""
from __future__ import annotations

from reelrt.parsing import command, non_negative_int, positive_float, positive_int


def add_parsers(sub) -> None:
    """`reelrt bench`, `reelrt demo`."""
    p = command(sub, "bench", "reelrt.bench.runner:bench", "measure bundles and peers side by side",
                "Latency (median/p90/p99), throughput, memory, cold start and size of each bundle and of its peers,"
                " interleaved in one run; writes JSON, a Markdown table and a PNG plot.")
    p.add_argument("bundles", nargs="+")
    p.add_argument("--peers", default="auto", help="comma-separated peers, 'auto' (all installed) or 'none'")
    p.add_argument("--out", default=None, help="directory for results.json, results.md and results.png")
    p.add_argument("--json", default=None, help="also write the JSON here")
    p.add_argument("--iterations", type=positive_int, default=None,
                   help="timed calls per system, rounded up to blocks of 4 (default: 50, or 20 s per system, whichever ends first)")
    p.add_argument("--seconds", type=positive_float, default=None, help="time budget per system instead of iterations")
    p.add_argument("--threads", type=positive_int, default=None)
    p.add_argument("--warmup", type=non_negative_int, default=3, help="untimed rounds before measuring")
    p.add_argument("--no-isolated", action="store_true",
                   help="skip the per-system child processes that measure peak memory and cold start")

    p = command(sub, "demo", "reelrt.bench.demo:main", "build default bundles, show them answering, print a benchmark table")
    p.add_argument("--workdir", default=None, help="where demo bundles are built and cached"
                   " (default: $REELRT_DEMO_DIR or bundles/demo)")
    p.add_argument("--seconds", type=positive_float, default=2.0, help="benchmark time budget per system")
    p.add_argument("--out", default="bench-results/demo", help="directory for the benchmark's JSON, Markdown and PNG")
