"""The base of every task object: a verified bundle, a backend and checked inputs."""
from __future__ import annotations

import threading
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import nullcontext
from typing import Any, Mapping

import numpy as np

from reelrt.runtime.backends import Backend, open_backend
from reelrt.runtime.backends.session import ThreadPolicy
from reelrt.runtime.bundle import Bundle
from reelrt.runtime.errors import InputError
from reelrt.runtime.bundle.manifest import TensorSpec


class Model:
    """A loaded bundle. Task classes (ImageClassifier, TextClassifier, TextGenerator) add a
    friendly face; `run` stays available for callers who bring their own tensors.

    `run` may be called from many threads: a backend that declares `thread_safe` (ONNX
    Runtime's CPU session) runs them concurrently, any other (one reused OpenVINO infer
    request, IO-bound CUDA buffers, a TensorRT context) one at a time behind a lock.

    `submit` runs the task's main call (`submits` names it) on the model's own worker thread
    and returns a Future at once, so a frame loop never waits for an answer: it polls
    `future.done()` next frame, or adds a callback. Calls submitted run one after another in
    order; an exception reaches the caller through the future. The worker starts on the first
    submit, is pinned to the policy's affinity, and stops on close() (or `with` exit)."""

    submits = "run"

    def __init__(self, bundle: Bundle, device: str = "auto", threads: ThreadPolicy | int | None = None):
        self.bundle = bundle
        self.manifest = bundle.manifest
        self._init_worker(threads)
        self._attach(open_backend(bundle, device=device, threads=self.threads))

    def _init_worker(self, threads: ThreadPolicy | int | None) -> None:
        """Record the thread policy; the submit() worker is made on first use."""
        self.threads = ThreadPolicy.of(threads)
        self._worker: ThreadPoolExecutor | None = None
        self._worker_lock = threading.Lock()

    @classmethod
    def check_manifest(cls, manifest) -> object:
        """Raise BundleError when this task cannot serve the manifest; checked before any session,
        and by writers before they commit (a bundle the reader refuses is never written)."""
        return None

    def _attach(self, backend: Backend) -> None:
        """Use `backend` for run(), behind a lock unless it declares itself thread-safe."""
        self.backend = backend
        self._run_lock = nullcontext() if getattr(backend, "thread_safe", False) else threading.Lock()

    def run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run the graph on named arrays after checking them against the manifest."""
        check_feeds(self.manifest.inputs, feeds)
        with self._run_lock:
            outputs = self.backend.run(feeds)
        return dict(zip(self.backend.output_names, outputs))

    def submit(self, *args: Any, **kwargs: Any) -> Future:
        """Start `self.<submits>(*args, **kwargs)` on the model's worker thread; return its Future."""
        with self._worker_lock:
            if self._worker is None:
                self._worker = ThreadPoolExecutor(1, thread_name_prefix="reelrt-" + type(self).__name__,
                                                  initializer=self.threads.pin_current_thread)
            return self._worker.submit(getattr(self, self.submits), *args, **kwargs)

    def close(self) -> None:
        """Finish the submitted calls and stop the worker thread; submit() after close() starts a new one."""
        with self._worker_lock:
            worker, self._worker = self._worker, None
        if worker is not None:
            worker.shutdown(wait=True)

    def __enter__(self) -> "Model":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        m = self.manifest
        return f"{type(self).__name__}({str(self.bundle.root)!r}, {m.family}/{m.precision}, backend={self.backend.name})"


def check_feeds(specs: list[TensorSpec], feeds: Mapping[str, np.ndarray]) -> None:
    """Raise InputError unless feeds match the declared names, dtypes, ranks and fixed dims,
    and every symbolic dim has one size across all inputs."""
    if not isinstance(feeds, Mapping):
        raise InputError(f"inputs must be a mapping of names to numpy arrays, got {type(feeds).__name__}")
    expected = {s.name for s in specs}
    if set(feeds) != expected:
        raise InputError(f"inputs must be exactly {sorted(expected)}, got {sorted(feeds)}")
    symbols: dict[str, int] = {}
    for spec in specs:
        array = feeds[spec.name]
        if not isinstance(array, np.ndarray):
            raise InputError(f"input {spec.name!r} must be a numpy array, got {type(array).__name__}")
        if array.dtype != np.dtype(spec.dtype):
            raise InputError(f"input {spec.name!r} must have dtype {spec.dtype}, got {array.dtype}")
        if array.ndim != len(spec.shape):
            raise InputError(f"input {spec.name!r} must have rank {len(spec.shape)} {list(spec.shape)}, got shape {array.shape}")
        for axis, (want, got) in enumerate(zip(spec.shape, array.shape)):
            if isinstance(want, int) and want != got:
                raise InputError(f"input {spec.name!r} axis {axis} must be {want}, got {got} (shape {array.shape})")
            if isinstance(want, str) and symbols.setdefault(want, got) != got:
                raise InputError(f"dimension {want!r} is {symbols[want]} in one input and {got} in {spec.name!r}")
