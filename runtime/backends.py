"""Backends run a bundle's graph: ONNX Runtime always, OpenVINO where installed.

`reelrt compile` records the fastest backend measured on the device in manifest.target;
`open_backend` honours it, and falls back to ONNX Runtime with a BackendFallbackWarning
when the recorded backend is missing here, so a bundle compiled on one box still runs
on another.
"""
from __future__ import annotations

import importlib
import warnings
from typing import Mapping, Protocol

import numpy as np
import onnxruntime as ort

from .bundle import Bundle
from .errors import BackendUnavailableError
from .session import create_session

# backend name -> "module:function(bundle, artifact, device, threads, options) -> Backend"
_OPENERS = {
    "onnxruntime": "reelrt.runtime.backends:open_onnxruntime",
    "openvino": "reelrt.runtime.openvino_backend:open_openvino",
    "tensorrt": "reelrt.runtime.gpu:open_gpu",   # a matching plan, else ORT CUDA, else the CPU
}


class BackendFallbackWarning(UserWarning):
    """The compiled choice could not be used on this machine; another backend runs instead."""


class Backend(Protocol):
    name: str
    input_names: list[str]
    output_names: list[str]

    def run(self, feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]: ...


class OrtBackend:
    """ONNX Runtime on the bundle's ONNX file. InferenceSession.run may be called from many
    threads at once (ONNX Runtime documents it), so Model.run takes no lock for it."""

    thread_safe = True

    def __init__(self, session):
        self.session = session
        self.name = "onnxruntime:" + session.get_providers()[0].replace("ExecutionProvider", "").lower()
        self.input_names = [i.name for i in session.get_inputs()]
        self.output_names = [o.name for o in session.get_outputs()]

    def run(self, feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        return self.session.run(self.output_names, dict(feeds))


def open_onnxruntime(bundle: Bundle, artifact: str, device: str, threads: int | None, options: dict) -> OrtBackend:
    art = bundle.manifest.artifacts[artifact]
    return OrtBackend(create_session(bundle.path(artifact), art.sha256, device=device, threads=threads))


def open_backend(bundle: Bundle, device: str = "auto", threads: int | None = None) -> Backend:
    """The backend `reelrt compile` chose for this bundle, else ONNX Runtime on the default model."""
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


def opener(name: str):
    """The function that opens backend `name`; BackendUnavailableError when it is unknown or not installed."""
    if name not in _OPENERS:
        raise BackendUnavailableError(f"unknown backend {name!r} in the bundle's target; known: {sorted(_OPENERS)}")
    module, func = _OPENERS[name].split(":")
    try:
        return getattr(importlib.import_module(module), func)
    except ImportError as e:
        raise BackendUnavailableError(f"backend {name!r} is not installed ({e})") from None
