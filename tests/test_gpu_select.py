"""Backend selection at load: a matching plan, else ONNX Runtime CUDA, else the CPU, reported.

No GPU here: TensorRT, the CUDA device and ONNX Runtime's CUDA provider are replaced by
fakes at the import and function seams, so what is tested is the choice, not the GPU.
"""
from __future__ import annotations

import sys
import types
import warnings

import numpy as np
import pytest

from reelrt.runtime import BackendUnavailableError, Model, open_bundle
from reelrt.runtime.backends import BackendFallbackWarning
from reelrt.runtime.backends.gpu.engines import DeviceFacts, engine_fields, store_plan

H100 = DeviceFacts("10.13.0.35", "NVIDIA H100 80GB HBM3", "9.0")
FRAME = {"pixels": np.arange(48, dtype=np.float32).reshape(1, 3, 4, 4) / 48}


class FakeTensorRTBackend:
    """Stands in for TensorRTBackend: remembers the plan it was given."""

    def __init__(self, plan: bytes, gpu: str):
        self.plan, self.name = plan, f"tensorrt:{gpu}"
        self.input_names, self.output_names = ["pixels"], ["logits"]


class FakeOrtCuda:
    name = "onnxruntime:cuda"


@pytest.fixture
def compiled(tiny_bundle):
    bundle = open_bundle(tiny_bundle)
    return open_bundle(store_plan(bundle, tiny_bundle, engine_fields(bundle, H100), b"h100 plan", 1.0))


@pytest.fixture
def no_tensorrt(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorrt", None)  # `import tensorrt` raises ImportError


@pytest.fixture
def fake_gpu(monkeypatch):
    """TensorRT importable and a GPU present; returns a setter for the GPU's facts."""
    monkeypatch.setitem(sys.modules, "tensorrt", types.SimpleNamespace(__version__=H100.tensorrt))
    monkeypatch.setattr("reelrt.runtime.backends.gpu.tensorrt.TensorRTBackend", FakeTensorRTBackend)

    def on(facts: DeviceFacts) -> None:
        monkeypatch.setattr("reelrt.runtime.backends.gpu.cuda.device_properties", lambda device=0: (facts.gpu, facts.compute_capability))
    on(H100)
    return on


def test_cpu_machine_runs_a_tensorrt_bundle_on_the_cpu_and_says_so(compiled, no_tensorrt):
    with pytest.warns(BackendFallbackWarning, match="running on the CPU.*TensorRT is not installed"):
        model = Model(compiled, device="auto")
    assert model.backend.name == "onnxruntime:cpu"
    want = Model(open_bundle(compiled.root), device="cpu").run(FRAME)["logits"]
    np.testing.assert_allclose(model.run(FRAME)["logits"], want, rtol=1e-6)


def test_device_cuda_never_falls_back_to_the_cpu(compiled, no_tensorrt):
    with pytest.raises(BackendUnavailableError, match="TensorRT: .*ONNX Runtime CUDA: .*CUDAExecutionProvider"):
        Model(compiled, device="cuda")


def test_device_cpu_ignores_the_plan_quietly(compiled, fake_gpu):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert Model(compiled, device="cpu").backend.name == "onnxruntime:cpu"


def test_a_matching_plan_is_chosen(compiled, fake_gpu):
    model = Model(compiled, device="auto")
    assert model.backend.name == "tensorrt:" + H100.gpu
    assert model.backend.plan == b"h100 plan"


def test_a_foreign_plan_falls_back_to_onnxruntime_cuda_and_says_why(compiled, fake_gpu, monkeypatch):
    fake_gpu(DeviceFacts(H100.tensorrt, "NVIDIA L4", "8.9"))
    monkeypatch.setattr("reelrt.runtime.backends.gpu.open_ort_cuda", lambda bundle, artifact, threads: FakeOrtCuda())
    with pytest.warns(BackendFallbackWarning, match="ONNX Runtime CUDA instead.*no plan matches.*compute_capability"):
        model = Model(compiled, device="cuda")
    assert model.backend.name == "onnxruntime:cuda"


def test_missing_cuda_bindings_make_tensorrt_unavailable(compiled, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorrt", types.SimpleNamespace(__version__=H100.tensorrt))
    for name in ("cuda", "cuda.bindings", "cuda.bindings.runtime", "cuda.cudart"):
        monkeypatch.setitem(sys.modules, name, None)
    with pytest.raises(BackendUnavailableError, match="TensorRT: .*cuda-bindings"):
        Model(compiled, device="cuda")


def test_auto_sends_plain_bundles_to_the_gpu_only_where_onnxruntime_has_cuda(tiny_bundle, monkeypatch):
    bundle = open_bundle(tiny_bundle)
    assert Model(bundle, device="auto").backend.name == "onnxruntime:cpu"
    monkeypatch.setattr("reelrt.runtime.backends.ort.get_available_providers",
                        lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"])
    monkeypatch.setitem(sys.modules, "tensorrt", None)
    monkeypatch.setattr("reelrt.runtime.backends.gpu.open_ort_cuda", lambda bundle, artifact, threads: FakeOrtCuda())
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # not compiled for TensorRT: ORT CUDA is the expected choice
        assert Model(bundle, device="auto").backend.name == "onnxruntime:cuda"
