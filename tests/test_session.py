"""The ONNX Runtime session factory: threads, devices and the optimised-graph cache."""
from __future__ import annotations

import numpy as np
import pytest

from reelrt.runtime import BackendUnavailableError, Model, open_bundle
from reelrt.runtime.bundle.cache import cache_dir
from reelrt.runtime.backends.session import create_session, physical_cores, providers_for


def test_physical_cores_is_positive():
    assert 1 <= physical_cores() <= 4096


def test_unknown_device_and_missing_cuda():
    with pytest.raises(BackendUnavailableError, match="unknown device"):
        providers_for("tpu")
    import onnxruntime as ort
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        with pytest.raises(BackendUnavailableError, match="onnxruntime-gpu"):
            providers_for("cuda")


def test_optimised_graph_is_cached_and_reused(tiny_bundle):
    bundle = open_bundle(tiny_bundle)
    art = bundle.manifest.artifacts["model.onnx"]
    first = Model(bundle, device="cpu").run({"pixels": np.ones((1, 3, 4, 4), np.float32)})["logits"]
    cached = list(cache_dir("ort").glob("*.onnx"))
    assert len(cached) == 1
    second = Model(bundle, device="cpu").run({"pixels": np.ones((1, 3, 4, 4), np.float32)})["logits"]
    np.testing.assert_allclose(first, second, rtol=1e-6)
    cached[0].write_bytes(b"garbage")  # a damaged cache entry is dropped, not fatal
    session = create_session(bundle.model_path, art.sha256, device="cpu", threads=1)
    assert session.get_inputs()[0].name == "pixels"


def test_threads_must_be_positive(tiny_bundle):
    bundle = open_bundle(tiny_bundle)
    with pytest.raises(ValueError):
        create_session(bundle.model_path, "x", threads=0)



def test_cpu_features_are_read_on_x86_and_arm(tmp_path):
    """/proc/cpuinfo lists them as "flags" on x86 and "Features" on ARM; they key the optimised-graph cache."""
    from aarch64.cpuinfo import cpuinfo
    from reelrt.runtime.system import cpu_flags
    files = {"a53": cpuinfo("cortex-a53", 2), "a76": cpuinfo("cortex-a76", 2),
             "x86": "processor\t: 0\nflags\t\t: fpu sse avx2\n"}
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    flags = {name: cpu_flags(str(tmp_path / name)) for name in files}
    assert flags["x86"] == {"fpu", "sse", "avx2"} and "asimd" in flags["a53"]
    assert flags["a76"] - flags["a53"] == {"atomics", "fphp", "asimdhp", "asimdrdm", "lrcpc", "dcpop", "asimddp"}
