"""The few CUDA runtime calls the TensorRT backend needs, through NVIDIA's cuda-bindings.

Device memory, one stream, and host<->device copies: TensorRT only takes raw device
pointers, and the runtime must not import torch to get them. cuda-bindings (the
`cuda-python` distribution) is imported lazily; without it, or without a GPU, callers get
BackendUnavailableError and the runtime falls back.

UNVERIFIED: never run on real CUDA; written against the cuda-bindings runtime API
(`cuda.bindings.runtime`, formerly `cuda.cudart`), whose calls return (error, *values).
"""
from __future__ import annotations

import numpy as np

from reelrt.runtime.errors import BackendUnavailableError, ReelrtError


def cudart():
    """The cuda-bindings runtime module; BackendUnavailableError when it is not installed."""
    try:
        from cuda.bindings import runtime
    except ImportError:
        try:
            from cuda import cudart as runtime   # cuda-python < 12.6
        except ImportError as e:
            raise BackendUnavailableError(f"the TensorRT backend needs cuda-bindings (pip install cuda-python): {e}") from None
    return runtime


def call(result):
    """Unpack a cuda-bindings (error, *values) tuple, raising on an error code."""
    rt = cudart()
    err, *values = result if isinstance(result, tuple) else (result,)
    if err != rt.cudaError_t.cudaSuccess:
        _, text = rt.cudaGetErrorString(err)
        raise ReelrtError(f"CUDA error {err}: {text.decode() if isinstance(text, bytes) else text}")
    return values[0] if len(values) == 1 else tuple(values)


def device_properties(device: int = 0) -> tuple[str, str]:
    """(name, "major.minor" compute capability) of a CUDA device; BackendUnavailableError without one.

    UNVERIFIED: never run on real CUDA."""
    rt = cudart()
    err, count = rt.cudaGetDeviceCount()
    if err != rt.cudaError_t.cudaSuccess or count <= device:
        raise BackendUnavailableError(f"no CUDA device {device} on this machine ({err})")
    props = call(rt.cudaGetDeviceProperties(device))
    name = props.name.split(b"\0", 1)[0].decode() if isinstance(props.name, bytes) else str(props.name)
    return name, f"{props.major}.{props.minor}"


class Stream:
    """One CUDA stream; every copy and every engine run of a backend is queued on it.

    UNVERIFIED: never run on real CUDA."""

    def __init__(self):
        self.handle = call(cudart().cudaStreamCreate())

    @property
    def ptr(self) -> int:
        return int(self.handle)

    def synchronize(self) -> None:
        call(cudart().cudaStreamSynchronize(self.handle))

    def __del__(self):
        try:
            cudart().cudaStreamDestroy(self.handle)
        except Exception:  # interpreter shutdown: the driver frees it anyway
            pass


class DeviceBuffer:
    """Device memory allocated once and reused for every run.

    UNVERIFIED: never run on real CUDA."""

    def __init__(self, nbytes: int):
        self.nbytes = max(int(nbytes), 1)
        self.ptr = int(call(cudart().cudaMalloc(self.nbytes)))

    def upload(self, array: np.ndarray, stream: Stream) -> None:
        """Queue a host-to-device copy; `array` must stay alive until the stream is synchronized."""
        self._check(array)
        rt = cudart()
        call(rt.cudaMemcpyAsync(self.ptr, array.ctypes.data, array.nbytes,
                                rt.cudaMemcpyKind.cudaMemcpyHostToDevice, stream.handle))

    def download(self, array: np.ndarray, stream: Stream) -> None:
        """Queue a device-to-host copy into `array`; valid after stream.synchronize()."""
        self._check(array)
        rt = cudart()
        call(rt.cudaMemcpyAsync(array.ctypes.data, self.ptr, array.nbytes,
                                rt.cudaMemcpyKind.cudaMemcpyDeviceToHost, stream.handle))

    def _check(self, array: np.ndarray) -> None:
        if not array.flags.c_contiguous or array.nbytes > self.nbytes:
            raise ValueError(f"array of {array.nbytes} bytes (contiguous={array.flags.c_contiguous})"
                             f" does not fit a {self.nbytes}-byte device buffer")

    def __del__(self):
        try:
            cudart().cudaFree(self.ptr)
        except Exception:  # interpreter shutdown: the driver frees it anyway
            pass
