"""`reelrt demo`: the product on a fresh machine, with no arguments.

For each family (CNN, LSTM, GPT-2) its benchmark module builds default bundles from
built-in models (once; later runs reuse them), and each bundle shows itself answering.
Then the demo bundles are measured against PyTorch eager in a short interleaved run and
the table is printed. A family that is missing or fails is reported and the demo goes
on with the others; the exit status says whether every family made it.
"""
from __future__ import annotations

import argparse
import os
import textwrap
import time
from pathlib import Path

from reelrt.runtime import open_bundle
from reelrt.runtime.bundle.manifest import FAMILIES
from reelrt.runtime.backends.session import physical_cores

from .runner import family_module, run_benchmark
from .harness import one_line, pin_threads
from .report import markdown, to_json, write

DEFAULT_WORKDIR = "bundles/demo"


def main(args: argparse.Namespace) -> int:
    threads = physical_cores()
    pin_threads(threads)
    workdir = Path(args.workdir or os.environ.get("REELRT_DEMO_DIR") or DEFAULT_WORKDIR)
    print(f"reelrt demo: default bundles for {', '.join(FAMILIES)} under {workdir} "
          f"(built on the first run, reused after), {threads} threads", flush=True)
    failed: list[str] = []
    built: list[Path] = []
    for family in FAMILIES:
        print(f"\n== {family}: building the demo bundles", flush=True)
        start = time.perf_counter()
        try:
            module = family_module(family)
            paths = [Path(p) for p in module.demo(workdir)]
        except Exception as e:
            print(f"   {family} FAILED: {one_line(e)}", flush=True)
            failed.append(family)
            continue
        print(f"   {len(paths)} bundle(s) ready in {time.perf_counter() - start:.1f} s", flush=True)
        for path in paths:
            print(f"-- {path}", flush=True)
            try:
                print(textwrap.indent(module.show(path).rstrip(), "   "), flush=True)
            except Exception as e:
                print(f"   {family} FAILED to answer: {one_line(e)}", flush=True)
                failed.append(family)
                continue
            built.append(path)

    if built:
        print(f"\n== benchmark against PyTorch eager ({args.seconds:g} s per system; "
              "`reelrt bench` measures memory, cold start and every peer)", flush=True)
        run, bench_failed = run_benchmark([open_bundle(p) for p in built], {"pytorch"}, threads, warmup=2,
                                          iterations=None, seconds=args.seconds, isolated=False,
                                          command="reelrt demo", bandwidth=False)
        failed += bench_failed
        print(markdown(to_json(run), header=False), flush=True)
        paths = write(run, Path(args.out))
        print(f"reports: {', '.join(str(p) for p in paths.values())}")
    if failed:
        print(f"\nreelrt demo: finished with failures in {', '.join(dict.fromkeys(failed))}")
        return 1
    print("\nreelrt demo: done")
    return 0
