"""Shared fixtures: tiny bundles built with onnx.helper, so foundation tests need no torch, and tiny
exported bundles of each family.

The exported ones need torch. With REELRT_TEST_BUNDLES=DIR the makers copy DIR/<name> instead
(`python tests/aarch64/build.py DIR` writes every name of EXPORTED with these same makers), so
the runtime's tests also run where torch is not installed: the emulated aarch64 run.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest


def tiny_weight() -> np.ndarray:
    return np.random.default_rng(0).standard_normal((48, 3)).astype(np.float32)


def write_tiny_onnx(path: Path, external: str | None = None) -> None:
    """A 3-class 'image classifier' over 3x4x4 inputs: Flatten -> MatMul. With `external`,
    the weight lives in that external-data file (relative to the model)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    weight = numpy_helper.from_array(tiny_weight(), "w")
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


def make_tiny_bundle(out: Path, external: str | None = None, reference: bool = True) -> Path:
    """The tiny classifier as a bundle; its reference set is six random frames and numpy's
    answers for them (the 'source model' is the matrix product itself)."""
    from reelrt.runtime.bundle import BundleWriter
    from reelrt.runtime.bundle.layout import REFERENCE_INPUTS, REFERENCE_OUTPUTS
    from reelrt.runtime.bundle.manifest import Manifest, TensorSpec

    with BundleWriter(out) as w:
        write_tiny_onnx(w.dir / "model.onnx", external)
        if reference:
            pixels = np.random.default_rng(1).standard_normal((6, 3, 4, 4)).astype(np.float32)
            (w.dir / "reference").mkdir()
            np.savez(w.dir / REFERENCE_INPUTS, pixels=pixels)
            np.savez(w.dir / REFERENCE_OUTPUTS, logits=pixels.reshape(6, -1) @ tiny_weight())
        return w.commit(Manifest(
            family="cnn", task="image-classification", precision="fp32", model="model.onnx",
            inputs=[TensorSpec("pixels", "float32", ("batch", 3, 4, 4))],
            outputs=[TensorSpec("logits", "float32", ("batch", 3))],
            artifacts={}, labels=["a", "b", "c"],
            preprocessing={"size": [4, 4], "mean": [0, 0, 0], "std": [1, 1, 1], "channel_order": "RGB", "layout": "NCHW"},
            provenance={"source": "tests"}))


_schema_check = {"on": True}


@pytest.fixture(scope="session", autouse=True)
def _manifests_follow_the_schema():
    """Every bundle a test writes in this process is held to docs/manifest.schema.json as it is
    committed, except in tests marked bad_manifest, which write broken manifests on purpose."""
    from manifest_schema import check_manifest

    from reelrt.runtime.bundle import BundleWriter
    commit = BundleWriter.commit

    def checked_commit(self, manifest):
        out = commit(self, manifest)
        if _schema_check["on"]:
            check_manifest(out)
        return out

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(BundleWriter, "commit", checked_commit)
        yield


@pytest.fixture(autouse=True)
def _schema_check_unless_bad_manifest(request):
    _schema_check["on"] = request.node.get_closest_marker("bad_manifest") is None
    yield
    _schema_check["on"] = True


@pytest.fixture(autouse=True)
def _private_cache(tmp_path_factory, monkeypatch):
    """Each test gets its own trust-record and optimised-graph cache."""
    monkeypatch.setenv("REELRT_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))


@pytest.fixture
def tiny_bundle(tmp_path) -> Path:
    return make_tiny_bundle(tmp_path / "tiny")


PREBUILT = os.environ.get("REELRT_TEST_BUNDLES")


def copy_prebuilt(name: str, out: Path) -> Path:
    """A copy of the bundle exported beforehand as `name`, at `out`."""
    shutil.copytree(Path(PREBUILT) / name, out)
    return out


def make_tiny_cnn_bundle(out: Path, channel_order: str = "RGB") -> Path:
    """A real exported CNN (Conv, BatchNorm, ReLU, pooling, Linear) on 16x16 frames, 4 classes."""
    if PREBUILT:
        return copy_prebuilt(f"tiny-cnn-{channel_order.lower()}", out)
    import torch
    from torch import nn

    from reelrt.export.cnn import export_image_classifier

    channels = 1 if channel_order == "GRAY" else 3
    torch.manual_seed(0)
    module = nn.Sequential(nn.Conv2d(channels, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU(),
                           nn.MaxPool2d(2), nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(),
                           nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 4)).eval()
    with torch.no_grad():  # non-trivial BatchNorm statistics, so folding is really exercised
        module[1].running_mean.uniform_(-0.5, 0.5)
        module[1].running_var.uniform_(0.5, 2.0)
    policy = {"size": [16, 16], "resize": 18, "crop": "center", "interpolation": "area", "mean": [0.5] * channels,
              "std": [0.25] * channels, "scale": 255.0, "channel_order": channel_order, "layout": "NCHW"}
    frames = np.random.default_rng(1).integers(0, 256, (6, 24, 32, 3), dtype=np.uint8)
    from reelrt.runtime.tasks.image import Preprocessor
    pixels = Preprocessor(policy).batch(list(frames))
    return export_image_classifier(module, pixels, out, policy, ["cat", "dog", "car", "tree"],
                                   {"arch": "tiny", "trained": False}, source="tests", random_weights=True)


@pytest.fixture(scope="session")
def tiny_cnn_bundle(tmp_path_factory) -> Path:
    return make_tiny_cnn_bundle(tmp_path_factory.mktemp("cnn") / "tiny-cnn")


def make_tiny_text_bundle(out: Path, bidirectional: bool = False) -> Path:
    """A real exported LSTM text classifier (random weights, 8-token max length), 3 labels."""
    if PREBUILT:
        return copy_prebuilt("tiny-text-bidirectional" if bidirectional else "tiny-text", out)
    import torch

    from reelrt.export.lstm import export_bundle
    from reelrt.models.lstm import Checkpoint, LSTMClassifier, LSTMConfig, train_tokenizer

    texts = ["the cat sat on the mat", "dogs chase cats in the garden", "the ship warped away", "captain on the bridge"] * 4
    tokenizer = train_tokenizer(texts, 60)
    torch.manual_seed(0)
    model = LSTMClassifier(LSTMConfig(tokenizer.get_vocab_size(), 3, embed_dim=8, hidden=12, bidirectional=bidirectional))
    return export_bundle(Checkpoint(model.eval(), tokenizer, ["books", "pets", "ships"], 8), out, "tests",
                         random_weights=True)


@pytest.fixture(scope="session")
def tiny_text_bundle(tmp_path_factory) -> Path:
    return make_tiny_text_bundle(tmp_path_factory.mktemp("text") / "tiny-text")


def make_gpt2_tiny_bundle(out: Path) -> Path:
    """A validated fp32 bundle of the tiny random GPT-2 config."""
    if PREBUILT:
        return copy_prebuilt("gpt2-tiny", out)
    from reelrt.export.gpt2 import export
    return export(out, config="tiny", threads=1)


def quantize_bundle(src: Path, out: Path, precision: str, block_size: int = 32, accuracy_level: int | None = None) -> Path:
    """`reelrt quantize SRC --precision P --out OUT` in-process, through the typed entry it wraps."""
    from reelrt.quantize.passes import quantize
    from reelrt.runtime.bundle import open_bundle
    weight_only = precision in ("int8", "int4")   # block size and accuracy level are theirs only
    options = dict(block_size=block_size, accuracy_level=accuracy_level) if weight_only else {}
    return quantize(open_bundle(src), out, precision, **options)


@pytest.fixture(scope="session")
def gpt2_tiny_bundle(tmp_path_factory) -> Path:
    return make_gpt2_tiny_bundle(tmp_path_factory.mktemp("gpt2") / "tiny")


# every exported bundle a maker above can copy instead of exporting
EXPORTED = {
    "tiny-cnn-rgb": make_tiny_cnn_bundle,
    "tiny-cnn-gray": lambda out: make_tiny_cnn_bundle(out, channel_order="GRAY"),
    "tiny-text": make_tiny_text_bundle,
    "tiny-text-bidirectional": lambda out: make_tiny_text_bundle(out, bidirectional=True),
    "gpt2-tiny": make_gpt2_tiny_bundle,
}
