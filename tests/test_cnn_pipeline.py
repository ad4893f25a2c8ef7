"""The digits CNN end to end: train, export, int8 and fp16, compile, classify, fall back."""
from __future__ import annotations

import subprocess
import sys
import warnings

import cv2
import numpy as np
import pytest
import torch

from reelrt.cli import main
from reelrt.models.digits import digits_split
from reelrt.runtime import InputError, ValidationError, load, open_bundle
from reelrt.runtime.backends import BackendFallbackWarning
from reelrt.runtime.compile import MIN_GAIN, compile_cpu, write_target
from reelrt.runtime.validation import tolerance_for


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    """(checkpoint, fp32 bundle, int8 bundle, held-out frames, labels), built through the CLI."""
    work = tmp_path_factory.mktemp("digits")
    assert main(["train", "digits", "--epochs", "10", "--out", str(work / "digits.pt")]) == 0
    assert main(["export", "cnn", "--arch", "digits", "--checkpoint", str(work / "digits.pt"),
                 "--out", str(work / "fp32")]) == 0
    assert main(["quantize", str(work / "fp32"), "--precision", "int8", "--out", str(work / "int8")]) == 0
    _, _, frames, labels = digits_split()
    return work / "digits.pt", work / "fp32", work / "int8", frames, labels


def _accuracy(bundle, frames, labels) -> float:
    clf = load(bundle, device="cpu")
    return float(np.mean([int(r[0][0]) == y for r, y in zip(clf.classify(list(frames), top_k=1), labels)]))


def test_trained_model_is_accurate_and_runtime_matches_pytorch(digits):
    checkpoint, fp32, _, frames, labels = digits
    from reelrt.models.cnn import build
    from reelrt.models.digits import to_tensor

    with torch.no_grad():
        torch_pred = build("digits", str(checkpoint))(torch.from_numpy(to_tensor(frames))).argmax(1).numpy()
    runtime_pred = load(fp32, device="cpu").logits(list(frames)).argmax(1)
    assert (runtime_pred == torch_pred).all()
    assert _accuracy(fp32, frames, labels) >= 0.95


def test_int8_keeps_heldout_accuracy_within_half_a_point(digits):
    _, fp32, int8, frames, labels = digits
    m = open_bundle(int8).manifest
    acc = m.validation["heldout_accuracy"]
    assert acc["fp32"] - acc["int8"] <= 0.005
    assert acc["int8"] == pytest.approx(_accuracy(int8, frames, labels), abs=1e-6)
    assert m.validation["reference_inputs"]["top1_agreement"] >= 0.95
    assert m.validation["size_bytes"]["int8"] < m.validation["size_bytes"]["fp32"]
    assert m.provenance["quantized_from"]["settings"]["activations"] == "uint8"


def test_int8_weights_keep_7_bits_so_no_cpu_saturates(digits):
    """uint8 x int8 pair sums fit int16 only with 7-bit weights (x86 without VNNI adds pairs in int16)."""
    import onnx
    from onnx import numpy_helper

    _, _, int8, *_ = digits
    graph = onnx.load(str(open_bundle(int8).model_path)).graph
    weights = [numpy_helper.to_array(t) for t in graph.initializer if t.data_type == onnx.TensorProto.INT8]
    assert weights and all(np.abs(w.astype(int)).max() <= 64 for w in weights)   # 2 x 255 x 64 <= 32767


@pytest.mark.parametrize("method", ["percentile", "entropy"])
def test_histogram_calibration_takes_any_count_of_frames(digits, tmp_path, method):
    _, fp32, _, frames, _ = digits
    np.save(tmp_path / "frames.npy", frames[:203])     # 203 = 7 x 29: no batch of 8 divides it
    assert main(["quantize", str(fp32), "--precision", "int8", "--calibration", str(tmp_path / "frames.npy"),
                 "--method", method, "--out", str(tmp_path / method)]) == 0
    settings = open_bundle(tmp_path / method).manifest.provenance["quantized_from"]["settings"]
    assert settings["calibration_samples"] == 203 and settings["method"] == method


@pytest.mark.parametrize("method", ["percentile", "entropy"])
def test_calibration_methods_and_sources(digits, tmp_path, method):
    _, fp32, _, frames, _ = digits
    if method == "percentile":            # an .npy of uint8 frames
        np.save(tmp_path / "cal.npy", frames[:64])
        source = str(tmp_path / "cal.npy")
    else:                                  # a folder of image files
        for i, f in enumerate(frames[:24]):
            cv2.imwrite(str(tmp_path / f"{i}.png"), f)
        source = str(tmp_path)
    out = tmp_path / "q"
    assert main(["quantize", str(fp32), "--precision", "int8", "--method", method, "--calibration", source,
                 "--out", str(out)]) == 0
    settings = open_bundle(out).manifest.provenance["quantized_from"]["settings"]
    assert settings["method"] == method and settings["calibration_samples"] in (64, 24)


def test_bad_calibration_inputs_are_refused(digits, tmp_path):
    _, fp32, *_ = digits
    np.save(tmp_path / "bad.npy", np.zeros((4, 5), np.float64))
    (tmp_path / "empty").mkdir()
    for source, reason in ((tmp_path / "bad.npy", "expected uint8"), (tmp_path / "empty", "no images"),
                           (tmp_path / "none.npy", "neither")):
        assert main(["quantize", str(fp32), "--precision", "int8", "--calibration", str(source),
                     "--out", str(tmp_path / "x")]) == 2
    assert not (tmp_path / "x").exists()
    from reelrt.quantize.cnn import calibration_inputs
    with pytest.raises(InputError, match="expected uint8"):
        calibration_inputs(open_bundle(fp32), str(tmp_path / "bad.npy"))


def test_fp16_parity(digits, tmp_path):
    _, fp32, _, frames, labels = digits
    assert main(["quantize", str(fp32), "--precision", "fp16", "--out", str(tmp_path / "h")]) == 0
    m = open_bundle(tmp_path / "h").manifest
    assert m.precision == "fp16" and m.inputs[0].dtype == "float32"
    assert m.validation["logits"]["relative_diff"] <= 0.01
    a = load(fp32, device="cpu").logits(list(frames[:50]))
    b = load(tmp_path / "h", device="cpu").logits(list(frames[:50]))
    assert (a.argmax(1) == b.argmax(1)).all()
    assert np.abs(a - b).max() <= 0.01 * np.ptp(a)


def test_compile_records_a_measured_choice_that_load_uses(digits, tmp_path):
    _, _, int8, frames, _ = digits
    out = compile_cpu(int8, out=tmp_path / "c", seconds=0.2, verbose=False)
    target = open_bundle(out).manifest.target
    measured = [c for c in target["candidates"] if c["latency_ms"] is not None]
    assert measured[0]["backend"] == "onnxruntime" and target["latency_ms"] > 0
    # the fastest within budget, where a backend other than ONNX Runtime must win by MIN_GAIN
    best = min((c for c in measured if c["within_budget"]),
               key=lambda c: c["latency_ms"] * (1 if c["backend"] == "onnxruntime" else 1 + MIN_GAIN))
    key = lambda c: (c["backend"], c["inference_precision"], c["graph_optimization"])
    assert key(target) == key(best)
    clf = load(out, device="cpu")
    assert clf.backend.name.startswith(target["backend"])
    expected = load(int8, device="cpu").logits(list(frames[:8]))
    chosen = next(c for c in target["candidates"] if key(c) == key(target))
    tolerance = tolerance_for(chosen["tolerance_precision"]).max_relative_diff
    np.testing.assert_allclose(clf.logits(list(frames[:8])), expected, atol=tolerance * np.ptp(expected))


def test_compile_never_picks_a_fast_build_outside_the_budget(digits, tmp_path, monkeypatch):
    """A build that answers instantly but wrongly must lose to a slower correct one."""
    _, fp32, *_ = digits
    import reelrt.runtime.compile as compile_module

    class Wrong:
        name, input_names, output_names = "wrong", ["pixels"], ["logits"]

        def run(self, feeds):
            return [np.zeros((len(feeds["pixels"]), 10), np.float32)]

    real_opener = compile_module.opener
    monkeypatch.setattr(compile_module, "opener", lambda name: (lambda *a: Wrong()) if name == "wrong" else real_opener(name))
    monkeypatch.setattr(compile_module, "cpu_candidates", lambda b: [compile_module.Candidate("onnxruntime", "f32"),
                                                                     compile_module.Candidate("wrong", "f32")])
    out = compile_cpu(fp32, out=tmp_path / "c", seconds=0.1, verbose=False)
    target = open_bundle(out).manifest.target
    assert target["backend"] == "onnxruntime"
    assert [c["within_budget"] for c in target["candidates"]] == [True, False]


def test_compile_skips_a_build_that_is_wrong_on_this_cpu(digits, tmp_path, monkeypatch):
    """Where ONNX Runtime's integer kernels answer wrongly (as they saturate on x86 without VNNI),
    compile says so and records a build that is right here; with no right build it fails."""
    _, _, int8, *_ = digits
    import reelrt.runtime.compile as compile_module

    class Saturating:
        def __init__(self, inner):
            self.inner, self.name = inner, inner.name
            self.input_names, self.output_names = inner.input_names, inner.output_names

        def run(self, feeds):
            return [out * 1.5 for out in self.inner.run(feeds)]

    real_opener = compile_module.opener

    def opener(name):
        def open_(bundle, artifact, device, threads, options):
            backend = real_opener(name)(bundle, artifact, device, threads, options)
            wrong = name == "onnxruntime" and options["graph_optimization"] == "all"
            return Saturating(backend) if wrong or name in broken else backend
        return open_
    broken = set()
    monkeypatch.setattr(compile_module, "opener", opener)
    out = compile_cpu(int8, out=tmp_path / "c", seconds=0.1, verbose=False)
    target = open_bundle(out).manifest.target
    first = target["candidates"][0]
    assert (first["backend"], first["graph_optimization"], first["within_budget"]) == ("onnxruntime", "all", False)
    assert "out of tolerance" in first["note"]
    assert (target["backend"], target["graph_optimization"]) != ("onnxruntime", "all")
    assert load(out, device="cpu").backend.name.startswith(target["backend"])
    broken.update({"onnxruntime", "openvino"})
    with pytest.raises(ValidationError, match="no build of this bundle answers within tolerance"):
        compile_cpu(int8, out=tmp_path / "d", seconds=0.1, verbose=False)
    assert not (tmp_path / "d").exists()


def test_graphs_with_qdq_pairs_are_found_by_their_nodes(digits, tmp_path):
    """Compile offers Q/DQ in float to any graph holding DequantizeLinear, whoever quantized it."""
    import onnx
    from onnx import TensorProto, helper

    from reelrt.runtime.compile import has_qdq
    _, fp32, int8, *_ = digits
    assert has_qdq(int8 / open_bundle(int8).manifest.model)
    assert not has_qdq(fp32 / open_bundle(fp32).manifest.model)
    scale, zero = helper.make_tensor("s", TensorProto.FLOAT, [], [0.1]), helper.make_tensor("z", TensorProto.UINT8, [], [0])
    graph = helper.make_graph([helper.make_node("QuantizeLinear", ["x", "s", "z"], ["q"]),
                               helper.make_node("DequantizeLinear", ["q", "s", "z"], ["y"])], "elsewhere",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])], [scale, zero])
    onnx.save(helper.make_model(graph), tmp_path / "qdq.onnx")
    assert has_qdq(tmp_path / "qdq.onnx")


def test_openvino_choice_is_used_and_falls_back_when_missing(digits, tmp_path, monkeypatch):
    pytest.importorskip("openvino")
    _, _, int8, frames, _ = digits
    bundle = open_bundle(int8)
    out = write_target(bundle, {"backend": "openvino", "path": "model.onnx", "inference_precision": "f32"}, tmp_path / "ov")
    expected = load(int8, device="cpu").logits(list(frames[:8]))
    clf = load(out, device="cpu")
    assert clf.backend.name == "openvino:cpu:f32"
    np.testing.assert_allclose(clf.logits(list(frames[:8])), expected, atol=0.1 * np.ptp(expected))
    monkeypatch.setitem(sys.modules, "openvino", None)     # as if the extra were not installed
    with pytest.warns(BackendFallbackWarning, match="openvino"):
        fallback = load(out, device="cpu")
    assert fallback.backend.name.startswith("onnxruntime")
    np.testing.assert_allclose(fallback.logits(list(frames[:8])), expected, rtol=1e-6)


def test_prefer_startup_keeps_onnxruntime(digits, tmp_path):
    _, _, int8, *_ = digits
    assert main(["compile", str(int8), "--target", "cpu", "--prefer", "startup", "--out", str(tmp_path / "c")]) == 0
    target = open_bundle(tmp_path / "c").manifest.target
    assert target["backend"] == "onnxruntime" and target["prefer"] == "startup"


def test_compile_without_openvino_measures_onnxruntime_only(digits, tmp_path, monkeypatch):
    _, _, int8, *_ = digits
    monkeypatch.setitem(sys.modules, "openvino", None)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = compile_cpu(int8, out=tmp_path / "c", seconds=0.1, verbose=False)
    target = open_bundle(out).manifest.target
    assert target["backend"] == "onnxruntime"
    assert all("not installed" in c["note"] for c in target["candidates"] if c["backend"] == "openvino")


def test_run_command_prints_top_k(digits, tmp_path, capsys):
    _, _, int8, frames, labels = digits
    path = tmp_path / "seven.png"
    index = int(np.flatnonzero(labels == 7)[0])
    cv2.imwrite(str(path), cv2.resize(frames[index], (64, 64), interpolation=cv2.INTER_NEAREST))
    assert main(["run", str(int8), "--image", str(path), "--top-k", "3"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == str(path) and len(lines) == 4 and lines[1].split()[-1] == "7"


def test_fp16_checks_the_reference_set_and_the_source_answers(tiny_bundle, tmp_path):
    """The fp16 pass validates on the bundle's reference inputs, against the fp32 graph and against
    the source model's answers (reference/outputs.npz)."""
    assert main(["quantize", str(tiny_bundle), "--precision", "fp16", "--out", str(tmp_path / "h")]) == 0
    m = open_bundle(tmp_path / "h").manifest
    assert m.validation["inputs"] == "reference inputs" and m.validation["logits"]["relative_diff"] <= 0.01
    assert 0 < m.validation["against_source_model"]["logits"]["relative_diff"] <= 0.01
    x = np.random.default_rng(0).standard_normal((3, 3, 4, 4)).astype(np.float32)
    a = load(tiny_bundle, device="cpu").run({"pixels": x})["logits"]
    b = load(tmp_path / "h", device="cpu").run({"pixels": x})["logits"]
    np.testing.assert_allclose(b, a, atol=0.01 * np.ptp(a))


def test_without_a_reference_set_fp16_and_compile_refuse_in_one_line(tmp_path):
    from conftest import make_tiny_bundle
    bare = make_tiny_bundle(tmp_path / "bare", reference=False)
    for argv in (["quantize", str(bare), "--precision", "fp16", "--out", str(tmp_path / "h")], ["compile", str(bare)]):
        run = subprocess.run([sys.executable, "-m", "reelrt", *argv], capture_output=True, text=True)
        assert run.returncode == 2 and "no reference set" in run.stderr and len(run.stderr.splitlines()) == 1, run.stderr
    assert not (tmp_path / "h").exists()
