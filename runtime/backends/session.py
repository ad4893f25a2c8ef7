"""ONNX Runtime sessions tuned for latency on small devices.

Defaults: one intra-op thread per physical core (hyper-threads slow small kernels down),
sequential execution, full graph optimisation. The optimised graph is cached (keyed by
the model's sha256, ONNX Runtime's version, the providers and the CPU) so the second load
of a bundle skips the optimiser.
"""
from __future__ import annotations

import glob
import hashlib
import os
import platform
from pathlib import Path
from typing import Sequence

import onnxruntime as ort

from reelrt.runtime.bundle.cache import cache_dir
from reelrt.runtime.errors import BackendUnavailableError, BundleError
from reelrt.runtime.system import cpu_flags

DEVICES = ("auto", "cpu", "cuda")


def physical_cores() -> int:
    """Cores, not hardware threads: the intra-op pool is fastest with one thread per core."""
    cores = set()
    for topo in glob.glob("/sys/devices/system/cpu/cpu[0-9]*/topology"):
        try:
            with open(f"{topo}/core_id") as a, open(f"{topo}/physical_package_id") as b:
                cores.add((a.read().strip(), b.read().strip()))
        except OSError:
            continue
    available = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(len(cores) or available, available))


def providers_for(device: str) -> list[str]:
    """Execution providers for a device name, best first; BackendUnavailableError if impossible."""
    if device not in DEVICES:
        raise BackendUnavailableError(f"unknown device {device!r}; choose one of {DEVICES}")
    available = ort.get_available_providers()
    if device == "cuda":
        if "CUDAExecutionProvider" not in available:
            raise BackendUnavailableError("device='cuda' needs onnxruntime-gpu and an NVIDIA GPU;"
                                          f" this onnxruntime offers {available}")
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    if device == "auto" and "CUDAExecutionProvider" in available:
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


def create_session(model: Path, model_sha256: str, *, device: str = "auto", threads: int | None = None,
                   optimize_cache: bool = True) -> ort.InferenceSession:
    """An InferenceSession for a verified model file, reusing a cached optimised graph when present."""
    if threads is not None and (not isinstance(threads, int) or threads < 1):
        raise ValueError(f"threads must be a positive int or None, not {threads!r}")
    providers = providers_for(device)
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or physical_cores()
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.log_severity_level = 3
    options.add_session_config_entry("session.intra_op.allow_spinning", "1")
    source = model
    cached = _optimized_path(model_sha256, providers) if optimize_cache and _has_no_external_data(model) else None
    if cached is not None and cached.is_file():
        source = cached
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    else:
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if cached is not None and _make_dir(cached.parent):
            tmp = cached.with_name(f".{os.getpid()}.{cached.name}")
            options.optimized_model_filepath = str(tmp)
    try:
        session = ort.InferenceSession(str(source), sess_options=options, providers=providers)
    except Exception as e:  # onnxruntime raises its own untyped errors for bad graphs
        if source != model:  # a damaged cache entry: drop it and build from the bundle
            cached.unlink(missing_ok=True)
            return create_session(model, model_sha256, device=device, threads=threads, optimize_cache=False)
        raise BundleError(f"ONNX Runtime cannot load {model.name}: {e}") from None
    if options.optimized_model_filepath:
        tmp = Path(options.optimized_model_filepath)
        if tmp.is_file():
            os.replace(tmp, cached)
    return session


def _optimized_path(model_sha256: str, providers: Sequence[str]) -> Path:
    key = "|".join([model_sha256, ort.__version__, ",".join(providers), platform.machine(), _cpu_flags_digest()])
    return cache_dir("ort", hashlib.sha256(key.encode()).hexdigest()[:32] + ".onnx")


def _cpu_flags_digest() -> str:
    """Optimised graphs may hold CPU-specific layouts, so the cache key names the CPU's features."""
    flags = cpu_flags()
    if not flags:
        return platform.processor() or "unknown"
    return hashlib.sha256(" ".join(sorted(flags)).encode()).hexdigest()[:16]


def _has_no_external_data(model: Path) -> bool:
    # ONNX Runtime cannot save an optimised graph over 2 GB without external-data settings.
    return not any(model.parent.glob(model.name + ".data")) and model.stat().st_size < (1 << 31) - (1 << 26)


def _make_dir(path: Path) -> bool:
    try:
        path.mkdir(parents=True, exist_ok=True)
        return True
    except OSError:
        return False
