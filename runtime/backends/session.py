"""ONNX Runtime sessions tuned for latency on small devices, sharing the CPU as the host says.

Defaults: one intra-op thread per physical core (hyper-threads slow small kernels down),
sequential execution, full graph optimisation, and worker threads that sleep when a run
ends: a game's render thread keeps its core (ThreadPolicy). The optimised graph is cached
(keyed by the model's sha256, ONNX Runtime's version, the providers and the CPU) so the
second load of a bundle skips the optimiser; thread count, spinning and affinity do not
change the optimised graph, so they are not part of the key.
"""
from __future__ import annotations

import glob
import hashlib
import os
import platform
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import onnxruntime as ort

from reelrt.runtime.bundle.cache import cache_dir
from reelrt.runtime.errors import BackendUnavailableError, BundleError
from reelrt.runtime.system import cpu_flags, cpu_signature

DEVICES = ("auto", "cpu", "cuda")
# ONNX Runtime's graph optimisation levels a bundle's target may name. "basic" keeps a QDQ graph's
# quantize/dequantize pairs in float instead of fusing them into integer kernels: slower, but
# right on CPUs whose integer kernels are not (reelrt compile records it only after checking).
OPTIMIZATION_LEVELS = {"all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
                       "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC}


@dataclass(frozen=True)
class ThreadPolicy:
    """How a backend may use the CPU: the host's choice, not the runtime's.

    count: intra-op threads (the calling thread plus count-1 pool threads); None: one per
    physical core, or one per CPU of `affinity`.
    spin: let idle pool threads busy-wait for the next run. On, a run skips waking them (the
    lowest latency when they have cores of their own); off (the default), they sleep and
    leave their cores to the host's threads (a render loop). Benchmarks turn it on.
    affinity: CPU ids (as os.sched_setaffinity numbers them) the pool threads may run on;
    None leaves placement to the operating system.
    """
    count: int | None = None
    spin: bool = False
    affinity: tuple[int, ...] | None = None

    def __post_init__(self):
        if self.count is not None and (type(self.count) is not int or self.count < 1):
            raise ValueError(f"threads must be a positive int or None, not {self.count!r}")
        if type(self.spin) is not bool:
            raise ValueError(f"spin must be True or False, not {self.spin!r}")
        if self.affinity is not None:
            cpus = tuple(self.affinity)
            if not cpus or any(type(c) is not int or c < 0 for c in cpus) or len(set(cpus)) != len(cpus):
                raise ValueError(f"affinity must be a non-empty sequence of distinct CPU ids >= 0, not {self.affinity!r}")
            object.__setattr__(self, "affinity", cpus)

    @classmethod
    def of(cls, threads: "ThreadPolicy | int | None") -> "ThreadPolicy":
        """A policy from what callers pass as `threads`: a policy, a count or None."""
        return threads if isinstance(threads, ThreadPolicy) else cls(count=threads)

    @property
    def threads(self) -> int:
        """The intra-op thread count this policy resolves to on this machine."""
        return self.count or (len(self.affinity) if self.affinity else physical_cores())

    def pin_current_thread(self) -> None:
        """Restrict the calling thread to `affinity` (Linux; elsewhere a no-op)."""
        if self.affinity and hasattr(os, "sched_setaffinity"):
            os.sched_setaffinity(0, self.affinity)  # pid 0: this thread only, on Linux


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


def create_session(model: Path, model_sha256: str, *, device: str = "auto", threads: ThreadPolicy | int | None = None,
                   optimize_cache: bool = True, optimization: str = "all") -> ort.InferenceSession:
    """An InferenceSession for a verified model file, reusing a cached optimised graph when present.
    optimization: a key of OPTIMIZATION_LEVELS."""
    if optimization not in OPTIMIZATION_LEVELS:
        raise BundleError(f"unknown graph optimization {optimization!r}; known: {sorted(OPTIMIZATION_LEVELS)}")
    policy = ThreadPolicy.of(threads)
    providers = providers_for(device)
    options = session_options(policy)
    source = model
    cached = (_optimized_path(model_sha256, providers, optimization)
              if optimize_cache and _has_no_external_data(model) else None)
    if cached is not None and cached.is_file():
        source = cached
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    else:
        options.graph_optimization_level = OPTIMIZATION_LEVELS[optimization]
        if cached is not None and _make_dir(cached.parent):
            tmp = cached.with_name(f".{os.getpid()}.{cached.name}")
            options.optimized_model_filepath = str(tmp)
    try:
        session = ort.InferenceSession(str(source), sess_options=options, providers=providers)
    except Exception as e:  # onnxruntime raises its own untyped errors for bad graphs
        if source != model:  # a damaged cache entry: drop it and build from the bundle
            cached.unlink(missing_ok=True)
            return create_session(model, model_sha256, device=device, threads=policy, optimize_cache=False,
                                  optimization=optimization)
        raise BundleError(f"ONNX Runtime cannot load {model.name}: {e}") from None
    if options.optimized_model_filepath:
        tmp = Path(options.optimized_model_filepath)
        if tmp.is_file():
            os.replace(tmp, cached)
    return session


def session_options(policy: ThreadPolicy) -> ort.SessionOptions:
    """Sequential execution on `policy`'s threads: spinning on or off for both pools, and the
    intra-op pool's threads pinned to `policy.affinity` (ONNX Runtime pins its own pool threads,
    count-1 of them; the calling thread is the caller's to place)."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = policy.threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.log_severity_level = 3
    spin = "1" if policy.spin else "0"
    options.add_session_config_entry("session.intra_op.allow_spinning", spin)
    options.add_session_config_entry("session.inter_op.allow_spinning", spin)
    if policy.affinity and policy.threads > 1:
        cpus = ",".join(str(c + 1) for c in policy.affinity)  # ONNX Runtime counts processors from 1
        options.add_session_config_entry("session.intra_op_thread_affinities", ";".join([cpus] * (policy.threads - 1)))
    return options


def _optimized_path(model_sha256: str, providers: Sequence[str], optimization: str) -> Path:
    key = "|".join([model_sha256, ort.__version__, ",".join(providers), platform.machine(), _cpu_flags_digest(),
                    cpu_signature(), optimization])
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
