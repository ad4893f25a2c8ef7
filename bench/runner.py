"""`reelrt bench BUNDLE...`: every bundle and its peers measured side by side in one run.

Each family owns a module `reelrt.bench.<family>` whose `systems(bundles, peers, threads)`
returns the rows to measure (reelrt and peers, grouped by workload) and the peers it
skipped with a reason. This module opens the bundles, asks each family for its systems,
measures the machine once, times each workload's systems interleaved, runs each system
alone in a child process for its peak memory and cold start, and writes the reports.
A family, peer or system that cannot run is reported and the run goes on without it.
"""
from __future__ import annotations

import argparse
import importlib
import shlex
import sys
from pathlib import Path
from types import ModuleType

from reelrt.runtime import Bundle, open_bundle
from reelrt.runtime.errors import ReelrtError
from reelrt.runtime.backends.session import physical_cores

from .harness import PEERS, System, measure, one_line, pin_threads
from .isolated import measure_isolated
from .report import Run, write

DEFAULT_ITERATIONS = 50
DEFAULT_SECONDS = 20.0       # per system, when neither --iterations nor --seconds is given
CHILD_TIMEOUT = 300.0
BLOCK = 4                    # timed calls per turn, after one untimed call (see harness.interleave)


class FamilyUnavailable(ReelrtError):
    """This install has no benchmark module for a family."""


def bench(args: argparse.Namespace) -> int:
    peers = parse_peers(args.peers)
    threads = args.threads or physical_cores()
    pin_threads(threads)
    bundles = [open_bundle(path) for path in args.bundles]
    iterations, seconds = args.iterations, args.seconds
    if iterations is None and seconds is None:
        iterations, seconds = DEFAULT_ITERATIONS, DEFAULT_SECONDS
    run, failed = run_benchmark(bundles, peers, threads, warmup=args.warmup,
                                iterations=iterations, seconds=seconds, isolated=not args.no_isolated,
                                command=_command_line(args, threads))
    out = Path(args.out or "bench-results")
    paths = write(run, out, Path(args.json) if args.json else None)
    print(paths["markdown"].read_text())
    print(f"wrote {', '.join(str(p) for p in paths.values())}")
    return 1 if failed or not run.results else 0


def _command_line(args: argparse.Namespace, threads: int) -> str:
    """The command that repeats this run, for the report."""
    words = ["reelrt", "bench", *args.bundles, "--peers", args.peers, "--threads", str(threads),
             "--warmup", str(args.warmup)]
    for flag, value in (("--iterations", args.iterations), ("--seconds", args.seconds)):
        if value is not None:
            words += [flag, str(value)]
    return shlex.join(words + (["--no-isolated"] if args.no_isolated else []))


def parse_peers(text: str) -> set[str] | None:
    """'auto' -> None (every installed peer), 'none' -> no peer, else a comma-separated list."""
    if text == "auto":
        return None
    if text == "none":
        return set()
    peers = {p.strip() for p in text.split(",") if p.strip()}
    unknown = peers - set(PEERS)
    if unknown:
        raise ReelrtError(f"unknown peer(s) {', '.join(sorted(unknown))}; choose from {', '.join(PEERS)}, 'auto' or 'none'")
    return peers


def family_module(family: str) -> ModuleType:
    """The family's benchmark module; FamilyUnavailable when this install has none."""
    name = f"reelrt.bench.{family}"
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as e:
        if e.name == name:
            raise FamilyUnavailable(f"no benchmark module {name} in this install") from None
        raise


def run_benchmark(bundles: list[Bundle], peers: set[str] | None, threads: int, *, warmup: int,
                  iterations: int | None, seconds: float | None, isolated: bool, command: str,
                  bandwidth: bool = True) -> tuple[Run, list[str]]:
    """Measure `bundles` and their peers; return the run and the families that failed.

    `seconds` is a budget per system: a workload of four systems gets four times as long.
    """
    from tqdm import tqdm

    from .machine import describe

    by_family: dict[str, list[Bundle]] = {}
    for b in bundles:
        by_family.setdefault(b.manifest.family, []).append(b)
    run = Run(command=command, machine={},
              settings={"threads": threads, "warmup": warmup, "iterations": iterations, "seconds": seconds})
    failed: list[str] = []
    systems: list[tuple[str, System]] = []
    for family, group in by_family.items():
        try:
            found, skipped = family_module(family).systems(group, peers, threads)
        except Exception as e:
            run.errors.append({"family": family, "system": "(all)", "error": one_line(e)})
            failed.append(family)
            _say(f"{family}: not measured: {one_line(e)}")
            continue
        for peer, reason in skipped.items():
            run.skipped.append({"family": family, "peer": peer, "reason": one_line(reason)})
            _say(f"{family}: peer {peer} skipped: {one_line(reason)}")
        systems += [(family, s) for s in found]

    _say(f"measuring the machine (memory bandwidth on {threads} threads)" if bandwidth else "describing the machine")
    run.machine = describe(threads, bandwidth=bandwidth)

    for workload, group in _by_workload(systems, run).items():
        family = group[0][0]
        rows = [s for _, s in group]
        errors: dict[str, str] = {}
        rounds = -(-iterations // BLOCK) if iterations else None
        _say(f"measuring {workload} ({len(rows)} systems)")
        with tqdm(total=rounds, desc=f"{workload} ({len(rows)} systems)", unit="round", file=sys.stderr,
                  leave=False, disable=None) as bar:   # disable=None: drawn on a terminal only
            try:
                results = measure(rows, warmup, rounds, seconds * len(rows) if seconds else None,
                                  on_round=lambda _: bar.update(1), errors=errors, block=BLOCK)
            except Exception as e:
                errors = {"(all)": one_line(e)}
                results = []
        for name, error in errors.items():
            run.errors.append({"family": family, "system": f"{workload} / {name}", "error": error})
            _say(f"{workload} / {name}: failed: {error}")
        if errors and family not in failed:
            failed.append(family)
        run.results += results

    if isolated and run.results:
        _say("memory and cold start (one process each)")
        for r in tqdm(run.results, desc="memory and cold start", unit="system", file=sys.stderr, leave=False,
                      disable=None):
            run.isolated[(r.system.workload, r.system.name)] = measure_isolated(r.system, threads, CHILD_TIMEOUT)
    return run, failed


def _by_workload(systems: list[tuple[str, System]], run: Run) -> dict[str, list[tuple[str, System]]]:
    """Systems grouped by workload, in order; a repeated name within a workload is an error."""
    groups: dict[str, list[tuple[str, System]]] = {}
    for family, s in systems:
        group = groups.setdefault(s.workload, [])
        if any(s.name == other.name for _, other in group):
            run.errors.append({"family": family, "system": f"{s.workload} / {s.name}",
                               "error": "two systems of one workload share this name; the second was left out"})
            continue
        group.append((family, s))
    return groups


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)
