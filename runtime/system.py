"""Facts about the machine and the installed libraries, read in one place.

The runtime needs the CPU's name (recorded by `reelrt compile`) and its feature flags (the
optimised-graph cache key); benchmarks and provenance add library versions. Every reader of
/proc/cpuinfo or of package metadata in reelrt goes through here.
"""
from __future__ import annotations

import functools
import platform
from importlib import metadata
from typing import Iterable


@functools.lru_cache(maxsize=1)
def cpu_info(path: str = "/proc/cpuinfo") -> dict[str, str]:
    """The first processor's fields from /proc/cpuinfo ("model name", "flags", ...); empty off Linux."""
    fields: dict[str, str] = {}
    try:
        with open(path) as f:
            for line in f:
                if not line.strip():
                    break
                key, _, value = line.partition(":")
                fields[key.strip()] = value.strip()
    except OSError:
        pass
    return fields


def cpu_name() -> str:
    return cpu_info().get("model name") or platform.processor() or platform.machine()


def cpu_flags(path: str = "/proc/cpuinfo") -> set[str]:
    """The CPU's feature flags as /proc/cpuinfo spells them: "flags" on x86 (avx2, avx512_vnni,
    amx_tile, ...), "Features" on ARM (asimd, asimddp, fphp, ...)."""
    info = cpu_info(path)
    return set((info.get("flags") or info.get("Features", "")).split())


@functools.lru_cache(maxsize=1)
def cpu_features() -> tuple[str, ...]:
    """The instruction-set extensions this CPU reports to its own instructions (CPUID on x86, the
    hardware capabilities on ARM), as numpy's dispatcher detected them: AVX2, AVX512VNNI, ASIMDDP...

    Unlike /proc/cpuinfo this is what the code that runs sees, emulators included, so it is the
    part of the CPU that decides which integer kernels ONNX Runtime takes."""
    try:
        from numpy._core._multiarray_umath import __cpu_features__ as features
    except ImportError:  # numpy < 2
        from numpy.core._multiarray_umath import __cpu_features__ as features
    return tuple(sorted(name for name, present in features.items() if present))


@functools.lru_cache(maxsize=1)
def cpu_signature() -> str:
    """A short key for this CPU class: the machine and its instruction-set extensions."""
    import hashlib
    text = platform.machine() + ":" + " ".join(cpu_features())
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def library_versions(distributions: Iterable[str]) -> dict[str, str]:
    """Installed versions of the named distributions; those not installed are left out."""
    found = {}
    for name in distributions:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return found
