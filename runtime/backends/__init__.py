"""Backends run a bundle's graph: ONNX Runtime always (onnxruntime.py), OpenVINO where installed
(openvino.py), and on NVIDIA GPUs a TensorRT plan or ONNX Runtime CUDA (gpu/, UNVERIFIED:
never run on a GPU yet).

`reelrt compile` records the fastest backend measured on the device in manifest.target;
`open_backend` honours it, and falls back to ONNX Runtime with a BackendFallbackWarning
when the recorded backend is missing here, so a bundle compiled on one box still runs
on another. Optional backends are imported only when a bundle asks for them.
"""
from __future__ import annotations

import warnings
from typing import Callable, Mapping, Protocol

import numpy as np
import onnxruntime as ort

from reelrt.runtime.backends.onnxruntime import OrtBackend, open_onnxruntime
from reelrt.runtime.backends.session import ThreadPolicy
from reelrt.runtime.bundle import Bundle
from reelrt.runtime.errors import BackendUnavailableError

BACKENDS = ("onnxruntime", "openvino", "tensorrt")


class BackendFallbackWarning(UserWarning):
    """The compiled choice could not be used on this machine; another backend runs instead."""


class Backend(Protocol):
    name: str
    input_names: list[str]
    output_names: list[str]

    def run(self, feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]: ...


Opener = Callable[[Bundle, str, str, ThreadPolicy, dict], Backend]


def open_backend(bundle: Bundle, device: str = "auto", threads: ThreadPolicy | int | None = None) -> Backend:
    """The backend `reelrt compile` chose for this bundle, else ONNX Runtime on the default model."""
    threads = ThreadPolicy.of(threads)
    target = bundle.manifest.target
    name = target.get("backend", "onnxruntime")
    if _wants_gpu(name, device):
        return opener("tensorrt")(bundle, bundle.manifest.model, device, threads, target)
    if name not in ("onnxruntime", "tensorrt") and device in ("auto", "cpu"):
        try:
            return opener(name)(bundle, target.get("path", bundle.manifest.model), device, threads, target)
        except BackendUnavailableError as e:
            warnings.warn(f"bundle was compiled for {name}, which is unavailable here ({e}); "
                          "falling back to ONNX Runtime", BackendFallbackWarning, stacklevel=3)
    artifact = target.get("path", bundle.manifest.model) if name == "onnxruntime" else bundle.manifest.model
    return open_onnxruntime(bundle, artifact, device, threads, target)


def _wants_gpu(name: str, device: str) -> bool:
    """device="cuda", or "auto" on a bundle compiled for TensorRT or not compiled for another backend
    on a machine whose onnxruntime has CUDA."""
    if device != "auto":
        return device == "cuda"
    return name == "tensorrt" or (name == "onnxruntime" and "CUDAExecutionProvider" in ort.get_available_providers())


def opener(name: str) -> Opener:
    """The function that opens backend `name`; BackendUnavailableError when it is unknown or not installed."""
    if name not in BACKENDS:
        raise BackendUnavailableError(f"unknown backend {name!r} in the bundle's target; known: {list(BACKENDS)}")
    try:
        if name == "onnxruntime":
            return open_onnxruntime
        if name == "openvino":
            from reelrt.runtime.backends.openvino import open_openvino
            return open_openvino
        from reelrt.runtime.backends.gpu import open_gpu  # a matching plan, else ORT CUDA, else the CPU
        return open_gpu
    except ImportError as e:
        raise BackendUnavailableError(f"backend {name!r} is not installed ({e})") from None
