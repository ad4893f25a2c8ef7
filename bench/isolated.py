"""Peak memory and cold start of one system, each in a fresh process of its own.

In the benchmark process every system is loaded at once, so its memory says nothing
about any one of them. Here a child (the same interpreter, the same import path, the
same thread settings) rebuilds one System from its factory and kwargs, answers once and
reports its peak resident set size. Cold start is timed from the parent, from just
before the child is spawned to the moment it has its first answer: interpreter start,
imports, loading and the first inference, as a client's user would wait for them.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass

from .harness import System, one_line, thread_env

# The child: rebuild the system, run it once, note the wall clock at the first answer,
# then report peak RSS. The parent's clock and the child's are the same wall clock.
CHILD = """
import json, sys
for p in reversed(json.loads(sys.argv[2])):
    if p not in sys.path:
        sys.path.insert(0, p)
import time
from reelrt.bench.harness import System, one_line
from reelrt.bench.machine import peak_rss_bytes
try:
    step = System(**json.loads(sys.argv[1])).build()
    step()
    answered = time.time()
    for _ in range(int(sys.argv[3]) - 1):
        step()
except Exception as e:
    print("REELRT-CHILD " + json.dumps({"error": one_line(e)}), flush=True)
    sys.exit(1)
print("REELRT-CHILD " + json.dumps({"answered": answered, "peak_rss_bytes": peak_rss_bytes()}), flush=True)
"""


@dataclass
class Isolated:
    """What one child run measured, or why it could not."""
    peak_rss_bytes: int | None = None
    cold_start_ms: float | None = None
    error: str | None = None


def measure_isolated(system: System, threads: int, timeout: float = 300.0, steps: int = 1) -> Isolated:
    """Run `system` alone in a child process; never raises for the system's own failures."""
    spec = json.dumps({"name": system.name, "workload": system.workload, "factory": system.factory,
                       "kwargs": system.kwargs})
    env = {**os.environ, **thread_env(threads)}
    paths = json.dumps([p for p in sys.path if p])
    start = time.time()
    try:
        proc = subprocess.run([sys.executable, "-c", CHILD, spec, paths, str(max(1, steps))], env=env,
                              capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return Isolated(error=f"child run took over {timeout:g} s")
    report = next((line for line in reversed(proc.stdout.splitlines()) if line.startswith("REELRT-CHILD ")), None)
    found = json.loads(report.split(" ", 1)[1]) if report else {}
    if proc.returncode != 0 or "answered" not in found:
        lines = proc.stderr.strip().splitlines()
        return Isolated(error=found.get("error") or one_line(lines[-1] if lines else f"child exited with status {proc.returncode}"))
    return Isolated(peak_rss_bytes=found["peak_rss_bytes"], cold_start_ms=(found["answered"] - start) * 1e3)
