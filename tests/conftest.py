"""Shared fixtures: tiny bundles built with onnx.helper, so foundation tests need no torch."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest


def write_tiny_onnx(path: Path, external: str | None = None) -> None:
    """A 3-class 'image classifier' over 3x4x4 inputs: Flatten -> MatMul. With `external`,
    the weight lives in that external-data file (relative to the model)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    weight = numpy_helper.from_array(np.random.default_rng(0).standard_normal((48, 3)).astype(np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("Flatten", ["pixels"], ["flat"], axis=1), helper.make_node("MatMul", ["flat", "w"], ["logits"])],
        "tiny",
        [helper.make_tensor_value_info("pixels", TensorProto.FLOAT, ["batch", 3, 4, 4])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 3])],
        [weight])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    if external:
        (path.parent / external).parent.mkdir(parents=True, exist_ok=True)
        onnx.save_model(model, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
                        location=external, size_threshold=0)
    else:
        onnx.save_model(model, str(path))


def make_tiny_bundle(out: Path, external: str | None = None) -> Path:
    from reelrt.runtime.bundle import BundleWriter
    from reelrt.runtime.manifest import Manifest, TensorSpec

    with BundleWriter(out) as w:
        write_tiny_onnx(w.dir / "model.onnx", external)
        return w.commit(Manifest(
            family="cnn", task="image-classification", precision="fp32", model="model.onnx",
            inputs=[TensorSpec("pixels", "float32", ("batch", 3, 4, 4))],
            outputs=[TensorSpec("logits", "float32", ("batch", 3))],
            artifacts={}, labels=["a", "b", "c"],
            preprocessing={"size": [4, 4], "mean": [0, 0, 0], "std": [1, 1, 1], "channel_order": "RGB", "layout": "NCHW"},
            provenance={"source": "tests"}))


@pytest.fixture(autouse=True)
def _private_cache(tmp_path_factory, monkeypatch):
    """Each test gets its own trust-record and optimised-graph cache."""
    monkeypatch.setenv("REELRT_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))


@pytest.fixture
def tiny_bundle(tmp_path) -> Path:
    return make_tiny_bundle(tmp_path / "tiny")


@pytest.fixture(scope="session")
def gpt2_tiny_bundle(tmp_path_factory) -> Path:
    """A validated fp32 bundle of the tiny random GPT-2 config, built once per test session."""
    from reelrt.export.gpt2 import export
    return export(tmp_path_factory.mktemp("gpt2") / "tiny", config="tiny", threads=1)
