"""What machine a benchmark ran on: CPU model, cores, vector and matrix extensions, memory,
and its memory bandwidth, measured once per run.

The bandwidth matters because token-by-token generation is bound by it: each decode step
reads every weight once, so weight bytes / bandwidth is the floor no runtime can beat.
"""
from __future__ import annotations

import os
import platform
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from reelrt.runtime.system import cpu_flags, cpu_name, library_versions

# CPU flags (as /proc/cpuinfo spells them) that decide which kernels a runtime can use.
FLAGS = ("avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl", "avx512_vnni", "avx512_bf16", "avx512_fp16",
         "avx_vnni", "amx_tile", "amx_int8", "amx_bf16", "amx_fp16")
# the libraries whose versions a benchmark's figures depend on
VERSIONED = ("reelrt", "numpy", "onnxruntime", "openvino", "torch", "optimum", "opencv-python-headless",
             "llama-cpp-python")
TRIAD_BLOCK = 1 << 15        # elements per block: the temporary stays in L1/L2, so only a, b and c touch memory


def describe(threads: int, bandwidth: bool = True) -> dict[str, Any]:
    """The machine as a JSON-able dict; `bandwidth` runs the triad (about a second)."""
    import psutil

    flags = cpu_flags()
    machine = {
        "cpu": cpu_name(),
        "arch": platform.machine(),
        "physical_cores": psutil.cpu_count(logical=False) or os.cpu_count(),
        "logical_cores": psutil.cpu_count(logical=True),
        "flags": [f for f in FLAGS if f in flags],
        "memory_bytes": psutil.virtual_memory().total,
        "threads": threads,
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "versions": library_versions(VERSIONED),
    }
    if bandwidth:
        machine["bandwidth_gb_s"] = round(triad_bandwidth(threads), 2)
    return machine


def triad_bandwidth(threads: int, elements: int = 1 << 24, repeats: int = 5) -> float:
    """STREAM triad a = b + s*c over arrays far larger than the caches, on `threads` threads;
    the best of `repeats` passes, in GB/s counting 3 arrays of float64 per element.

    numpy runs one ufunc on one thread, so each thread takes a contiguous slice; ufuncs
    release the GIL. The product goes through a small per-thread block that stays in cache,
    so memory sees exactly STREAM's traffic: read b and c, write a.
    """
    b = np.full(elements, 1.0)
    c = np.full(elements, 2.0)
    a = np.empty(elements)
    bounds = np.linspace(0, elements, threads + 1).astype(int)

    def triad(part: int) -> None:
        tmp = np.empty(TRIAD_BLOCK)
        for lo in range(bounds[part], bounds[part + 1], TRIAD_BLOCK):
            hi = min(lo + TRIAD_BLOCK, bounds[part + 1])
            t = tmp[:hi - lo]
            np.multiply(c[lo:hi], 3.0, out=t)
            np.add(b[lo:hi], t, out=a[lo:hi])

    best = float("inf")
    with ThreadPoolExecutor(threads) as pool:
        for _ in range(repeats):
            t0 = time.perf_counter()
            list(pool.map(triad, range(threads)))
            best = min(best, time.perf_counter() - t0)
    if a[0] != 7.0 or a[-1] != 7.0:
        raise RuntimeError("triad computed a wrong result")
    return 3 * a.nbytes / best / 1e9


def peak_rss_bytes() -> int:
    """This process's peak resident set size so far.

    On Linux this is VmHWM, the high-water mark of the current address space: getrusage's
    ru_maxrss also keeps the parent's peak across fork and exec, so a child spawned by a
    big benchmark process would report the parent's memory as its own.
    """
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        import resource
    except ImportError:  # Windows
        import psutil
        return int(psutil.Process().memory_info().peak_wset)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)  # bytes on macOS, KiB on the BSDs
