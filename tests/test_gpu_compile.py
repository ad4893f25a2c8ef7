"""`reelrt compile --target tensorrt` around the build: refusal without TensorRT, storage, reuse,
and the parity check that keeps a wrong plan out of the bundle.

The TensorRT build and engine are replaced by fakes (no GPU here); the fake engine runs the
bundle's ONNX on ONNX Runtime's CPU provider, optionally off by some noise.
"""
from __future__ import annotations

import sys
import types

import numpy as np
import pytest

from reelrt.runtime import BackendUnavailableError, ReelrtError, open_bundle
from reelrt.runtime.backends import open_onnxruntime
from reelrt.runtime.backends.gpu.engines import INDEX, DeviceFacts, find_plan
from reelrt.runtime.backends.gpu.profiles import derive_profiles
from reelrt.runtime.backends.gpu.tensorrt import check_parity, compile_bundle

H100 = DeviceFacts("10.13.0.35", "NVIDIA H100 80GB HBM3", "9.0")


class NoisyBackend:
    """The CPU backend with `noise` added to every output."""

    def __init__(self, reference, noise: float):
        self.reference, self.noise = reference, noise
        self.input_names, self.output_names = reference.input_names, reference.output_names

    def run(self, feeds):
        return [out + self.noise for out in self.reference.run(feeds)]


@pytest.fixture
def fake_tensorrt(monkeypatch, tiny_bundle):
    """TensorRT 'installed' on an H100; returns the list of builds made and a noise setter."""
    monkeypatch.setitem(sys.modules, "tensorrt", types.SimpleNamespace(__version__=H100.tensorrt))
    monkeypatch.setattr("reelrt.runtime.backends.gpu.cuda.device_properties", lambda device=0: (H100.gpu, H100.compute_capability))
    builds, noise = [], [0.0]

    def build_plan(trt, onnx_path, profiles, cache_path):
        builds.append([p.name for p in profiles])
        return b"plan for " + onnx_path.read_bytes()[:8]

    def engine(plan, gpu):
        reference = open_onnxruntime(open_bundle(tiny_bundle), "model.onnx", "cpu", 1, {})
        return NoisyBackend(reference, noise[0])
    monkeypatch.setattr("reelrt.runtime.backends.gpu.tensorrt.build_plan", build_plan)
    monkeypatch.setattr("reelrt.runtime.backends.gpu.tensorrt.TensorRTBackend", engine)
    return builds, noise


def test_without_tensorrt_compile_refuses_and_leaves_the_bundle_alone(tiny_bundle, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorrt", None)
    before = (tiny_bundle / "manifest.json").read_bytes()
    with pytest.raises(BackendUnavailableError, match="TensorRT is not installed"):
        compile_bundle(tiny_bundle)
    assert (tiny_bundle / "manifest.json").read_bytes() == before


def test_compile_stores_a_plan_once_and_reuses_it(tiny_bundle, fake_tensorrt, capsys):
    builds, _ = fake_tensorrt
    assert compile_bundle(tiny_bundle) == 0
    bundle = open_bundle(tiny_bundle, verify="always")
    plan, why = find_plan(bundle, H100)
    assert plan is not None and plan.read_bytes().startswith(b"plan for "), why
    assert bundle.manifest.target["backend"] == "tensorrt" and INDEX in bundle.manifest.artifacts
    assert builds == [["batch1", "batch32"]]
    assert compile_bundle(tiny_bundle) == 0
    assert len(builds) == 1 and "already matches" in capsys.readouterr().out


def test_compile_to_another_directory_keeps_the_source(tiny_bundle, fake_tensorrt, tmp_path):
    assert compile_bundle(tiny_bundle, out=tmp_path / "compiled") == 0
    assert INDEX not in open_bundle(tiny_bundle).manifest.artifacts
    assert find_plan(open_bundle(tmp_path / "compiled"), H100)[0] is not None


def test_a_plan_that_disagrees_with_onnxruntime_is_not_stored(tiny_bundle, fake_tensorrt):
    _, noise = fake_tensorrt
    noise[0] = 0.5
    with pytest.raises(ReelrtError, match="TensorRT plan against ONNX Runtime on output 'logits'"):
        compile_bundle(tiny_bundle)
    assert INDEX not in open_bundle(tiny_bundle).manifest.artifacts


def test_parity_is_checked_at_every_profile(tiny_bundle):
    bundle = open_bundle(tiny_bundle)
    reference = open_onnxruntime(bundle, "model.onnx", "cpu", 1, {})
    profiles = derive_profiles(bundle.manifest)
    assert check_parity(reference, reference, bundle, profiles) == 0.0
    calls = []

    class Counting(NoisyBackend):
        def run(self, feeds):
            calls.append(feeds["pixels"].shape)
            return super().run(feeds)
    assert 0 < check_parity(Counting(reference, 1e-4), reference, bundle, profiles) < 1e-2
    assert calls == [(1, 3, 4, 4), (32, 3, 4, 4)]


def test_parity_runs_the_reference_inputs_at_each_profile_batch(tiny_bundle):
    """The plan is checked on the bundle's own reference inputs, their rows repeated to each
    profile's opt batch (no synthetic inputs that disagree on what a valid value is)."""
    from reelrt.runtime.reference import reference_feeds
    bundle = open_bundle(tiny_bundle)
    feeds = reference_feeds(bundle)
    reference = open_onnxruntime(bundle, "model.onnx", "cpu", 1, {})
    seen = []

    class Recording(NoisyBackend):
        def run(self, feeds):
            seen.append(feeds["pixels"])
            return super().run(feeds)
    check_parity(Recording(reference, 0.0), reference, bundle, derive_profiles(bundle.manifest))
    assert [len(p) for p in seen] == [1, 32]
    assert all(any(np.array_equal(row, ref) for ref in feeds["pixels"]) for p in seen for row in p)


def test_a_bundle_without_a_reference_set_is_refused_before_any_build(tmp_path, fake_tensorrt):
    from conftest import make_tiny_bundle
    from reelrt.runtime import BundleError
    bare = make_tiny_bundle(tmp_path / "bare", reference=False)
    with pytest.raises(BundleError, match="no reference set"):
        compile_bundle(bare)
    assert fake_tensorrt[0] == []
