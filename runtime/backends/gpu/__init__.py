"""UNVERIFIED: this package has never run on a GPU (no GPU was available to the project yet).

Choosing a GPU backend at load: a matching TensorRT plan, else ONNX Runtime CUDA, else the CPU.

`open_backend` sends a bundle here when the caller asks for device="cuda", or for "auto"
when the bundle was compiled for TensorRT or a CUDA-capable onnxruntime is installed.
Each step that cannot be used says why; the choice is reported by the backend's `name`
("tensorrt:<gpu>", "onnxruntime:cuda", "onnxruntime:cpu") and a BackendFallbackWarning
whenever the bundle's compiled TensorRT choice is not the one that runs. device="cuda"
never falls back to the CPU silently: it raises BackendUnavailableError with every reason.
"""
from __future__ import annotations

import warnings

from reelrt.runtime.backends import Backend, BackendFallbackWarning
from reelrt.runtime.backends.onnxruntime import open_onnxruntime
from reelrt.runtime.backends.session import ThreadPolicy
from reelrt.runtime.bundle import Bundle
from reelrt.runtime.errors import BackendUnavailableError
from reelrt.runtime.backends.gpu.ort_cuda import open_ort_cuda
from reelrt.runtime.backends.gpu.tensorrt import open_tensorrt


def open_gpu(bundle: Bundle, artifact: str, device: str, threads: ThreadPolicy, options: dict) -> Backend:
    """The best GPU backend this machine offers for the bundle, falling back as described above."""
    compiled_for_tensorrt = options.get("backend") == "tensorrt"
    reasons = []
    try:
        return open_tensorrt(bundle)
    except BackendUnavailableError as e:
        reasons.append(f"TensorRT: {e}")
    try:
        backend = open_ort_cuda(bundle, artifact, threads)
    except BackendUnavailableError as e:
        reasons.append(f"ONNX Runtime CUDA: {e}")
    else:
        if compiled_for_tensorrt:
            warnings.warn(f"bundle compiled for TensorRT runs on ONNX Runtime CUDA instead ({reasons[0]})",
                          BackendFallbackWarning, stacklevel=4)
        return backend
    if device == "cuda":
        raise BackendUnavailableError("device='cuda' but no GPU backend can run here: " + "; ".join(reasons))
    warnings.warn("no GPU backend can run here, running on the CPU (" + "; ".join(reasons) + ")",
                  BackendFallbackWarning, stacklevel=4)
    return open_onnxruntime(bundle, artifact, "cpu", threads, options)

