"""ONNX Runtime's CUDA execution provider with IO binding on device memory.

A plain `session.run` copies every input to the GPU and every output back and lets ONNX
Runtime allocate fresh device memory each call. Here each input and each output whose
shape the manifest's symbols determine gets a device buffer (an OrtValue) allocated once
per shape and reused, and callers that chain runs (GPT-2's key/value cache) can keep
outputs on the device with `run_on_device` and feed them straight back as inputs, so the
cache never crosses the bus between steps.

The class is device-agnostic: on "cpu" OrtValues the same code runs under the CPU
provider, which is how its binding logic is tested on machines without a GPU. The CUDA
path itself (opening the session with CUDAExecutionProvider, device OrtValues) is
UNVERIFIED: never run on a real GPU; written against ONNX Runtime's IOBinding API.
"""
from __future__ import annotations

from typing import Mapping

import numpy as np
import onnxruntime as ort

from reelrt.runtime.bundle import Bundle
from reelrt.runtime.errors import BackendUnavailableError
from reelrt.runtime.bundle.manifest import Manifest, TensorSpec
from reelrt.runtime.backends.session import ThreadPolicy, create_session


class IoBoundOrtBackend:
    """An ONNX Runtime session whose inputs and outputs live in reused buffers on one device."""

    def __init__(self, session: ort.InferenceSession, manifest: Manifest, device_type: str = "cuda", device_id: int = 0):
        self.session = session
        self.device_type, self.device_id = device_type, device_id
        self.name = f"onnxruntime:{device_type}"
        self.input_names = [i.name for i in session.get_inputs()]
        self.output_names = [o.name for o in session.get_outputs()]
        self._input_specs = {s.name: s for s in manifest.inputs}
        self._output_specs = {s.name: s for s in manifest.outputs}
        self._buffers: dict[str, tuple[tuple[int, ...], np.dtype, ort.OrtValue]] = {}
        self._binding = session.io_binding()

    def allocate(self, shape: tuple[int, ...], dtype: np.dtype | type) -> ort.OrtValue:
        """A new tensor on this backend's device (e.g. a key/value cache the caller manages)."""
        return ort.OrtValue.ortvalue_from_shape_and_type(list(shape), np.dtype(dtype).type, self.device_type, self.device_id)

    def run(self, feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        outputs = self.run_on_device(feeds)
        return [outputs[name].numpy() for name in self.output_names]

    def run_on_device(self, feeds: Mapping[str, "np.ndarray | ort.OrtValue"],
                      outputs: Mapping[str, ort.OrtValue] | None = None) -> dict[str, ort.OrtValue]:
        """Run with numpy or device-resident inputs; return the outputs as device OrtValues.

        `outputs` binds chosen outputs to caller-owned tensors (a cache buffer shared by the
        past input and the present output, say). Outputs in the backend's own buffers are
        overwritten by the next run: copy what must outlive it.
        """
        symbols: dict[str, int] = {}
        fed_pointers = set()
        for name in self.input_names:
            value = feeds[name]
            if isinstance(value, ort.OrtValue):
                shape = tuple(value.shape())
                fed_pointers.add(value.data_ptr())
            else:
                array = np.ascontiguousarray(value)
                shape = array.shape
                value = self._buffer("in:" + name, shape, array.dtype)
                value.update_inplace(array)
            self._binding.bind_ortvalue_input(name, value)
            _collect_symbols(self._input_specs.get(name), shape, symbols)
        for name in self.output_names:
            if outputs and name in outputs:
                self._binding.bind_ortvalue_output(name, outputs[name])
                continue
            spec = self._output_specs.get(name)
            shape = _resolve(spec, symbols)
            buffer = None if shape is None else self._buffer("out:" + name, shape, np.dtype(spec.dtype))
            if buffer is None or buffer.data_ptr() in fed_pointers:
                # shape known only after the run, or the caller fed last run's output back in
                self._binding.bind_output(name, self.device_type, self.device_id)
            else:
                self._binding.bind_ortvalue_output(name, buffer)
        self.session.run_with_iobinding(self._binding)
        return dict(zip(self.output_names, self._binding.get_outputs()))

    def _buffer(self, key: str, shape: tuple[int, ...], dtype: np.dtype) -> ort.OrtValue:
        """The reused buffer for one input or output, reallocated only when its shape or dtype changes."""
        wanted = (tuple(shape), np.dtype(dtype))
        current = self._buffers.get(key)
        if current is None or current[:2] != wanted:
            current = self._buffers[key] = (*wanted, self.allocate(shape, dtype))
        return current[2]


def open_ort_cuda(bundle: Bundle, artifact: str, threads: ThreadPolicy) -> IoBoundOrtBackend:
    """The bundle's ONNX on ONNX Runtime's CUDA provider; BackendUnavailableError without one.

    UNVERIFIED: never run on a real GPU (this workplace's onnxruntime is the CPU build)."""
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        raise BackendUnavailableError("this onnxruntime has no CUDAExecutionProvider (install onnxruntime-gpu)")
    session = create_session(bundle.path(artifact), bundle.manifest.artifacts[artifact].sha256,
                             device="cuda", threads=threads)
    if session.get_providers()[0] != "CUDAExecutionProvider":
        raise BackendUnavailableError("ONNX Runtime could not start its CUDA provider (no GPU, driver or CUDA libraries)")
    return IoBoundOrtBackend(session, bundle.manifest, "cuda")


def _collect_symbols(spec: TensorSpec | None, shape: tuple[int, ...], symbols: dict[str, int]) -> None:
    if spec is not None:
        for want, got in zip(spec.shape, shape):
            if isinstance(want, str):
                symbols.setdefault(want, got)


def _resolve(spec: TensorSpec | None, symbols: dict[str, int]) -> tuple[int, ...] | None:
    """An output's shape from the inputs' symbols, or None when some axis is known only after the run."""
    if spec is None or any(isinstance(d, str) and d not in symbols for d in spec.shape):
        return None
    return tuple(symbols[d] if isinstance(d, str) else d for d in spec.shape)

