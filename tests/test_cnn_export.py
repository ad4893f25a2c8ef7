"""torch -> ONNX export: any module, dynamic batch, BatchNorm folded, validation that fails loudly."""
from __future__ import annotations


import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from torch import nn

from reelrt.export import export_module
from reelrt.runtime.validation import ValidationError
from reelrt.models.cnn import MobileNetV2, ResNet18, build
from reelrt.runtime import InputError, open_bundle


def _tiny() -> nn.Module:
    torch.manual_seed(3)
    m = nn.Sequential(nn.Conv2d(3, 6, 3, bias=False), nn.BatchNorm2d(6), nn.ReLU(), nn.Conv2d(6, 6, 1), nn.BatchNorm2d(6),
                      nn.ReLU6(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(6, 5))
    with torch.no_grad():
        for bn in (m[1], m[4]):
            bn.running_mean.uniform_(-1, 1)
            bn.running_var.uniform_(0.5, 2)
            bn.weight.uniform_(0.5, 1.5)
    return m.eval()


def test_any_module_exports_with_dynamic_batch_and_folded_batchnorm(tmp_path):
    module = _tiny()
    out = export_module(module, torch.randn(1, 3, 12, 12), tmp_path / "b", input_names=("pixels",),
                        output_names=("logits",))
    bundle = open_bundle(out)
    graph = onnx.load(str(bundle.model_path))
    ops = {n.op_type for n in graph.graph.node}
    assert "BatchNormalization" not in ops and "Conv" in ops
    assert min(i.version for i in graph.opset_import if i.domain in ("", "ai.onnx")) >= 17
    assert bundle.manifest.inputs[0].shape == ("batch", 3, 12, 12)
    session = ort.InferenceSession(str(bundle.model_path), providers=["CPUExecutionProvider"])
    for batch in (1, 3, 8):
        x = np.random.default_rng(batch).standard_normal((batch, 3, 12, 12)).astype(np.float32)
        with torch.no_grad():
            expected = module(torch.from_numpy(x)).numpy()
        np.testing.assert_allclose(session.run(None, {"pixels": x})[0], expected, rtol=1e-4, atol=1e-5)
        assert bundle.manifest.validation[f"random_batch{batch}"]["samples"] == batch


class _Noisy(nn.Module):
    """Differs between two runs, so the ONNX graph can never match PyTorch."""

    def forward(self, x):
        return x.mean((2, 3)) + torch.rand(x.shape[0], 3)


def test_validation_failure_aborts_the_write(tmp_path):
    with pytest.raises(ValidationError, match="tolerance"):
        export_module(_Noisy(), torch.randn(2, 3, 4, 4), tmp_path / "never")
    assert not (tmp_path / "never").exists()
    assert list(tmp_path.iterdir()) == []   # no temp directory left behind


def test_tiny_cnn_bundle_records_preprocessing_labels_and_reference(tiny_cnn_bundle):
    m = open_bundle(tiny_cnn_bundle).manifest
    assert m.labels == ["cat", "dog", "car", "tree"]
    assert m.preprocessing["channel_order"] == "RGB" and m.preprocessing["size"] == [16, 16]
    assert {"reference/inputs.npz", "reference/outputs.npz", "model.onnx"} <= set(m.artifacts)
    assert m.validation["real_inputs"]["samples"] == 6
    with np.load(tiny_cnn_bundle / "reference/inputs.npz", allow_pickle=False) as ref:
        assert ref["pixels"].shape == (6, 3, 16, 16)


@pytest.mark.parametrize("cls, params", [(MobileNetV2, 3_504_872), (ResNet18, 11_689_512)])
def test_standard_architectures_match_published_sizes(cls, params):
    model = cls()
    assert sum(p.numel() for p in model.parameters()) == params
    with torch.no_grad():
        assert model.eval()(torch.randn(1, 3, 64, 64)).shape == (1, 1000)


def test_parameter_names_follow_torchvision():
    """So a torchvision state_dict loads with --checkpoint (names as torchvision 0.2x writes them)."""
    mobilenet = MobileNetV2().state_dict()
    for key in ("features.0.0.weight", "features.1.conv.0.0.weight", "features.1.conv.1.weight",
                "features.1.conv.2.running_var", "features.2.conv.2.weight", "features.2.conv.3.weight",
                "features.18.0.weight", "classifier.1.weight"):
        assert key in mobilenet, key
    resnet = ResNet18().state_dict()
    for key in ("conv1.weight", "bn1.running_mean", "layer2.0.downsample.0.weight", "layer2.0.downsample.1.weight",
                "layer4.1.conv2.weight", "fc.bias"):
        assert key in resnet, key


def test_bad_checkpoint_is_an_input_error(tmp_path):
    path = tmp_path / "wrong.pt"
    torch.save({"state_dict": nn.Linear(2, 2).state_dict()}, path)
    with pytest.raises(InputError, match="not a digits state_dict"):
        build("digits", str(path))


def test_cli_export_digits_without_checkpoint_says_how(tmp_path, capsys):
    from reelrt.cli import main

    assert main(["export", "cnn", "--arch", "digits", "--out", str(tmp_path / "d")]) == 2
    assert "reelrt train digits" in capsys.readouterr().err


def test_train_dispatch_table_names_every_family():
    from reelrt.models.command import TRAINERS

    assert TRAINERS["digits"] == "reelrt.models.digits:main"
    assert TRAINERS["lstm"] == "reelrt.models.lstm_train:main" and TRAINERS["gpt2"] == "reelrt.models.gpt2_train:main"


def test_fold_batchnorm_removes_what_the_exporter_left():
    """A Conv -> BatchNormalization graph (as older exporters leave it) folds to Conv with the same output."""
    from onnx import TensorProto, helper, numpy_helper

    from reelrt.export.torch_onnx import fold_batchnorm

    rng = np.random.default_rng(0)
    tensors = {"w": rng.standard_normal((4, 3, 3, 3)), "scale": rng.uniform(0.5, 1.5, 4), "bias": rng.standard_normal(4),
               "mean": rng.standard_normal(4), "var": rng.uniform(0.5, 2, 4)}
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
         helper.make_node("BatchNormalization", ["c", "scale", "bias", "mean", "var"], ["y"])],
        "convbn", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4, 8, 8])],
        [numpy_helper.from_array(v.astype(np.float32), k) for k, v in tensors.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    folded = fold_batchnorm(model)
    assert [n.op_type for n in folded.graph.node] == ["Conv"]
    x = rng.standard_normal((2, 3, 8, 8)).astype(np.float32)
    run = lambda m: ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    np.testing.assert_allclose(run(folded), run(model), rtol=1e-4, atol=1e-4)
