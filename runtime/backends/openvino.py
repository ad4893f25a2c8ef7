"""OpenVINO on the CPU, where the optional `openvino` extra is installed.

`reelrt compile` records OpenVINO when it measured fastest: fp32 graphs with an
inference-precision hint (bf16 runs on AVX-512 BF16 / AMX units), QDQ graphs as int8.
Compiled networks are cached (OpenVINO's CACHE_DIR under the reelrt cache), so a
second start skips OpenVINO's graph compilation.
"""
from __future__ import annotations

from typing import Mapping

import numpy as np

from reelrt.runtime.bundle import Bundle
from reelrt.runtime.bundle.cache import cache_dir
from reelrt.runtime.errors import BackendUnavailableError, BundleError
from reelrt.runtime.backends.session import physical_cores

PRECISION_HINTS = {"f32": "f32", "bf16": "bf16", "fp32": "f32"}


class OpenVinoBackend:
    """One compiled model and one reused infer request."""

    def __init__(self, compiled, hint: str):
        self.compiled = compiled
        self.request = compiled.create_infer_request()
        self.name = f"openvino:cpu:{hint}"
        self.input_names = [i.get_any_name() for i in compiled.inputs]
        self.output_names = [o.get_any_name() for o in compiled.outputs]
        self._outputs = list(compiled.outputs)

    def run(self, feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        results = self.request.infer(dict(feeds), share_inputs=True)
        return [results[o] for o in self._outputs]


def open_openvino(bundle: Bundle, artifact: str, device: str, threads: int | None, options: dict) -> OpenVinoBackend:
    """Compile `artifact` for the CPU; BackendUnavailableError when OpenVINO is not installed or cannot run it."""
    if device not in ("auto", "cpu"):
        raise BackendUnavailableError(f"reelrt runs OpenVINO on the CPU only, not device={device!r}")
    try:
        import openvino as ov
    except ImportError as e:
        raise BackendUnavailableError(f"openvino is not installed ({e}); pip install 'reelrt[openvino]'") from None
    hint = options.get("inference_precision", "f32")
    if hint not in PRECISION_HINTS:
        raise BundleError(f"unknown OpenVINO inference_precision {hint!r} in the bundle's target")
    config = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": threads or physical_cores(),
              "INFERENCE_PRECISION_HINT": PRECISION_HINTS[hint], "NUM_STREAMS": 1}
    core = ov.Core()
    cache = cache_dir("openvino")
    try:
        cache.mkdir(parents=True, exist_ok=True)
        config["CACHE_DIR"] = str(cache)
    except OSError:
        pass  # an unwritable cache only costs start-up time
    if hint == "bf16" and "BF16" not in core.get_property("CPU", "OPTIMIZATION_CAPABILITIES"):
        raise BackendUnavailableError("this CPU has no bf16 support for OpenVINO's bf16 build")
    try:
        compiled = core.compile_model(str(bundle.path(artifact)), "CPU", config)
    except Exception as e:  # OpenVINO raises its own types for graphs its ONNX frontend cannot convert
        lines = str(e).strip().splitlines()
        raise BackendUnavailableError(f"OpenVINO cannot compile {artifact}: {lines[-1] if lines else type(e).__name__}") from None
    return OpenVinoBackend(compiled, hint)
