"""The GPU paths on a real NVIDIA GPU; every test here skips cleanly without one.

These have never run (no GPU was available when they were written): they are the first
thing to run on a GPU machine, with `python -m pytest -m gpu -rs`.
"""
from __future__ import annotations


import numpy as np
import onnxruntime as ort
import pytest

from reelrt.runtime import BackendUnavailableError, Model, open_bundle
from reelrt.runtime.backends.gpu.engines import timing_cache_path
from test_gpu_iobinding import make_cache_bundle

pytestmark = pytest.mark.gpu


def _tensorrt_gpu() -> str | None:
    """None when TensorRT and a CUDA device are usable, else why not."""
    from reelrt.runtime.backends.gpu.tensorrt import device_facts, import_tensorrt
    try:
        device_facts(import_tensorrt())
    except BackendUnavailableError as e:
        return str(e)
    return None


def _ort_cuda() -> str | None:
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        return "onnxruntime has no CUDAExecutionProvider"
    return None


needs_tensorrt = pytest.mark.skipif(_tensorrt_gpu() is not None, reason=f"needs TensorRT and a GPU: {_tensorrt_gpu()}")
needs_ort_cuda = pytest.mark.skipif(_ort_cuda() is not None, reason=f"needs onnxruntime-gpu: {_ort_cuda()}")


def compile_tensorrt(path) -> None:
    from reelrt.runtime.backends.gpu.tensorrt import compile_bundle
    assert compile_bundle(path) == 0


def cache_steps(run, steps: int = 4):
    """Prefill 3 rows, then decode one row at a time, feeding the cache back; returns (got, want)."""
    rng = np.random.default_rng(0)
    chunks = [rng.standard_normal((1, 3, 4), np.float32)] + [rng.standard_normal((1, 1, 4), np.float32) for _ in range(steps)]
    past, state = np.zeros((1, 0, 4), np.float32), np.zeros((1, 4), np.float32)
    for chunk in chunks:
        past, state = run(chunk, past, state)
    history = np.concatenate(chunks, axis=1)
    return (past, state), (history, history.sum(axis=1))


@needs_tensorrt
def test_tensorrt_plan_matches_the_cpu(tiny_bundle):
    compile_tensorrt(tiny_bundle)
    gpu = Model(open_bundle(tiny_bundle), device="cuda")
    cpu = Model(open_bundle(tiny_bundle), device="cpu")
    assert gpu.backend.name.startswith("tensorrt:")
    for batch in (1, 5, 32):
        pixels = np.random.default_rng(batch).standard_normal((batch, 3, 4, 4)).astype(np.float32)
        np.testing.assert_allclose(gpu.run({"pixels": pixels})["logits"], cpu.run({"pixels": pixels})["logits"],
                                   rtol=1e-2, atol=1e-2)


@needs_tensorrt
def test_second_compile_reuses_the_plan_and_the_timing_cache_exists(tiny_bundle, capsys):
    from reelrt.runtime.backends.gpu.tensorrt import device_facts, import_tensorrt
    compile_tensorrt(tiny_bundle)
    assert timing_cache_path(device_facts(import_tensorrt())).is_file()
    compile_tensorrt(tiny_bundle)
    assert "already matches" in capsys.readouterr().out


@needs_tensorrt
def test_tensorrt_runs_a_cache_graph_across_decode_and_prefill_profiles(tmp_path):
    path = make_cache_bundle(tmp_path / "cache")
    compile_tensorrt(path)
    model = Model(open_bundle(path), device="cuda")
    assert model.backend.name.startswith("tensorrt:")

    def run(x, past, state):
        out = model.run({"x": x, "past": past, "state": state})
        return out["present"], out["new_state"]
    (present, state), (history, total) = cache_steps(run)
    np.testing.assert_allclose(present, history, rtol=1e-3, atol=1e-3)
    np.testing.assert_allclose(state, total, rtol=1e-2, atol=1e-2)


@needs_ort_cuda
def test_onnxruntime_cuda_keeps_the_cache_on_the_device(tmp_path):
    from reelrt.runtime.backends.gpu.ort_cuda import open_ort_cuda
    bundle = open_bundle(make_cache_bundle(tmp_path / "cache"))
    backend = open_ort_cuda(bundle, "model.onnx", None)
    assert backend.name == "onnxruntime:cuda"

    def run(x, past, state):
        out = backend.run_on_device({"x": x, "past": past, "state": state})
        assert out["present"].device_name().lower() == "cuda"
        return out["present"], out["new_state"]
    (present, state), (history, total) = cache_steps(run)
    np.testing.assert_allclose(present.numpy(), history, rtol=1e-5)
    np.testing.assert_allclose(state.numpy(), total, rtol=1e-4)
