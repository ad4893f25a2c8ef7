"""What machine a benchmark ran on: CPU model, cores, vector and matrix extensions, memory,
and its memory bandwidth, measured once per run.

The bandwidth matters because token-by-token generation is bound by it: each decode step
reads every weight once, so weight bytes / bandwidth is the floor no runtime can beat.
"""
from __future__ import annotations

import os
import platform
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

# CPU flags (as /proc/cpuinfo spells them) that decide which kernels a runtime can use.
FLAGS = ("avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl", "avx512_vnni", "avx512_bf16", "avx512_fp16",
         "avx_vnni", "amx_tile", "amx_int8", "amx_bf16", "amx_fp16")
TRIAD_BLOCK = 1 << 15        # elements per block: the temporary stays in L1/L2, so only a, b and c touch memory


def describe(threads: int, bandwidth: bool = True) -> dict[str, Any]:
    """The machine as a JSON-able dict; `bandwidth` runs the triad (about a second)."""
    import psutil

    info = _cpuinfo()
    flags = set(info.get("flags", "").split())
    machine = {
        "cpu": info.get("model name") or platform.processor() or platform.machine(),
        "arch": platform.machine(),
        "physical_cores": psutil.cpu_count(logical=False) or os.cpu_count(),
        "logical_cores": psutil.cpu_count(logical=True),
        "flags": [f for f in FLAGS if f in flags],
        "memory_bytes": psutil.virtual_memory().total,
        "threads": threads,
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "versions": _versions(),
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


def _cpuinfo() -> dict[str, str]:
    """The first processor's fields from /proc/cpuinfo (empty off Linux)."""
    fields: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if not line.strip():
                    break
                key, _, value = line.partition(":")
                fields[key.strip()] = value.strip()
    except OSError:
        pass
    return fields


def _versions() -> dict[str, str]:
    """Versions of the libraries a benchmark's figures depend on, for those installed."""
    from importlib import metadata

    found = {}
    for dist in ("reelrt", "numpy", "onnxruntime", "openvino", "torch", "optimum", "opencv-python-headless",
                 "llama-cpp-python"):
        try:
            found[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return found
