"""The IO-binding backend's logic, run on "cpu" OrtValues under the CPU provider.

The same class serves ONNX Runtime's CUDA provider on "cuda" OrtValues; only that device
differs, and the GPU tests in test_gpu_device.py cover it where a GPU exists.
"""
from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest

from reelrt.runtime import open_bundle
from reelrt.runtime.bundle import BundleWriter
from reelrt.runtime.bundle.manifest import Manifest, TensorSpec
from reelrt.runtime.backends.gpu.ort_cuda import IoBoundOrtBackend
from reelrt.runtime.backends.session import create_session

# the cache graph's bundle is a stand-in for GPT-2 (no tokenizer, no model facts), not a usable one
pytestmark = pytest.mark.bad_manifest


def write_cache_graph(path) -> None:
    """A GPT-2-shaped toy: present = concat(past, x) along the sequence, state += sum(x)."""
    import onnx
    from onnx import TensorProto, helper

    axes = helper.make_tensor("axes", TensorProto.INT64, [1], [1])
    graph = helper.make_graph(
        [helper.make_node("Concat", ["past", "x"], ["present"], axis=1),
         helper.make_node("ReduceSum", ["x", "axes"], ["step_sum"], keepdims=0),
         helper.make_node("Add", ["state", "step_sum"], ["new_state"])],
        "cache",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", "sequence", 4]),
         helper.make_tensor_value_info("past", TensorProto.FLOAT, ["batch", "past_sequence", 4]),
         helper.make_tensor_value_info("state", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("present", TensorProto.FLOAT, ["batch", "total_sequence", 4]),
         helper.make_tensor_value_info("new_state", TensorProto.FLOAT, ["batch", 4])],
        [axes])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    onnx.save_model(model, str(path))


def make_cache_bundle(out):
    with BundleWriter(out) as w:
        write_cache_graph(w.dir / "model.onnx")
        return w.commit(Manifest(
            family="gpt2", task="text-generation", precision="fp32", model="model.onnx",
            inputs=[TensorSpec("x", "float32", ("batch", "sequence", 4)),
                    TensorSpec("past", "float32", ("batch", "past_sequence", 4)),
                    TensorSpec("state", "float32", ("batch", 4))],
            outputs=[TensorSpec("present", "float32", ("batch", "total_sequence", 4)),
                     TensorSpec("new_state", "float32", ("batch", 4))],
            artifacts={}, extra={"max_context": 16}))


@pytest.fixture
def backend(tmp_path) -> IoBoundOrtBackend:
    bundle = open_bundle(make_cache_bundle(tmp_path / "cache"))
    session = create_session(bundle.model_path, bundle.manifest.artifacts["model.onnx"].sha256, device="cpu", threads=1)
    return IoBoundOrtBackend(session, bundle.manifest, device_type="cpu")


def test_numpy_run_matches_a_plain_session(backend):
    rng = np.random.default_rng(0)
    feeds = {"x": rng.standard_normal((2, 3, 4), np.float32), "past": rng.standard_normal((2, 5, 4), np.float32),
             "state": rng.standard_normal((2, 4), np.float32)}
    want = backend.session.run(None, feeds)
    for _ in range(2):  # the second run reuses the buffers allocated by the first
        got = backend.run(feeds)
        for g, w in zip(got, want):
            np.testing.assert_array_equal(g, w)
    assert backend.name == "onnxruntime:cpu"


def test_input_buffers_are_allocated_once_per_shape(backend):
    feeds = {"x": np.ones((1, 1, 4), np.float32), "past": np.zeros((1, 2, 4), np.float32), "state": np.zeros((1, 4), np.float32)}
    backend.run(feeds)
    first = {k: v[2].data_ptr() for k, v in backend._buffers.items()}
    backend.run({k: v + 1 for k, v in feeds.items()})
    assert {k: v[2].data_ptr() for k, v in backend._buffers.items()} == first
    assert "out:new_state" in first and "out:present" not in first  # total_sequence is known only after the run
    backend.run(dict(feeds, past=np.zeros((1, 3, 4), np.float32)))
    assert backend._buffers["in:past"][0] == (1, 3, 4)
    assert backend._buffers["in:x"][2].data_ptr() == first["in:x"]


def test_cache_stays_on_the_device_between_steps(backend):
    """Feed each step's outputs back as OrtValues, as GPT-2 decoding does with its cache."""
    rng = np.random.default_rng(1)
    prompt = rng.standard_normal((1, 3, 4), np.float32)
    outputs = backend.run_on_device({"x": prompt, "past": np.zeros((1, 0, 4), np.float32),
                                     "state": np.zeros((1, 4), np.float32)})
    seen = [prompt]
    for _ in range(5):
        token = rng.standard_normal((1, 1, 4), np.float32)
        seen.append(token)
        fed_state = outputs["new_state"]
        outputs = backend.run_on_device({"x": token, "past": outputs["present"], "state": fed_state})
        assert all(isinstance(v, ort.OrtValue) for v in outputs.values())
        assert outputs["new_state"].data_ptr() != fed_state.data_ptr()  # never written over its own input
    history = np.concatenate(seen, axis=1)
    np.testing.assert_allclose(outputs["present"].numpy(), history, rtol=0, atol=0)
    np.testing.assert_allclose(outputs["new_state"].numpy(), history.sum(axis=1), rtol=1e-5)


def test_outputs_can_be_bound_to_caller_owned_tensors(backend):
    owned = backend.allocate((1, 4), np.float32)
    backend.run_on_device({"x": np.full((1, 2, 4), 2, np.float32), "past": np.zeros((1, 0, 4), np.float32),
                           "state": np.ones((1, 4), np.float32)}, outputs={"new_state": owned})
    np.testing.assert_array_equal(owned.numpy(), np.full((1, 4), 5, np.float32))
