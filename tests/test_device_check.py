"""The device checks itself (runtime/device_check.py): load() runs the bundle's reference set once per
CPU class, refuses a bundle this CPU answers wrongly with a DeviceCheckError that names the fix, and
lets the host skip the check. The real case, int8 kernels that saturate on an AVX2-only CPU, is
proven under emulation (tests/x86/run.sh); here the wrong answers come from a bundle whose reference
answers disagree with its graph, which is what a wrong CPU looks like to the check."""
from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from reelrt.runtime import DeviceCheckError, ValidationError, load, open_bundle
from reelrt.runtime.bundle import BundleWriter
from reelrt.runtime.bundle.layout import REFERENCE_OUTPUTS


@pytest.fixture
def cache(tmp_path, monkeypatch):
    folder = tmp_path / "cache"
    monkeypatch.setenv("REELRT_CACHE_DIR", str(folder))
    return folder / "device-check"


def with_reference_answers(src, out, scale: float):
    """A copy of `src` whose recorded source answers are scaled: this graph, here, disagrees with them."""
    bundle = open_bundle(src)
    with np.load(bundle.path(REFERENCE_OUTPUTS)) as z:
        answers = {k: z[k] * scale for k in z.files}
    with BundleWriter(out) as w:
        w.copy_artifacts(bundle, lambda rel: rel != REFERENCE_OUTPUTS)
        np.savez(w.dir / REFERENCE_OUTPUTS, **answers)
        return w.commit(bundle.manifest)


def test_first_load_on_a_cpu_class_checks_and_remembers(tiny_bundle, cache, monkeypatch):
    load(tiny_bundle)
    (entry,) = cache.iterdir()
    report = json.loads(entry.read_text())
    assert report["logits"]["relative_diff"] <= 1e-4 and report["cpu_signature"]
    import reelrt.runtime.device_check as device_check
    calls = []
    monkeypatch.setattr(device_check, "check_against_source", lambda *a, **k: calls.append(a) or {})
    load(tiny_bundle)
    assert calls == []                       # the same CPU class: the remembered pass
    monkeypatch.setattr(device_check, "cpu_signature", lambda: "another-cpu")
    load(tiny_bundle)
    assert len(calls) == 1                   # another CPU class checks again


def test_a_bundle_this_cpu_answers_wrongly_is_refused(tiny_bundle, tmp_path, cache):
    wrong = with_reference_answers(tiny_bundle, tmp_path / "wrong", 1.5)
    with pytest.raises(DeviceCheckError, match="reelrt compile") as raised:
        load(wrong)
    assert isinstance(raised.value, ValidationError) and "\n" not in str(raised.value)
    assert not cache.exists() or not any(cache.iterdir())   # a failure is not remembered
    assert load(wrong, device_check=False).run({"pixels": np.zeros((1, 3, 4, 4), np.float32)})


def test_the_check_holds_the_bundle_precision_tolerance(tiny_bundle, tmp_path, cache):
    """Within the precision's tolerance the bundle loads; the check is not an exact comparison."""
    close = with_reference_answers(tiny_bundle, tmp_path / "close", 1 + 1e-6)
    load(close)


def test_the_command_line_says_it_in_one_line(tiny_bundle, tmp_path, cache, capsys):
    from reelrt.cli import main
    wrong = with_reference_answers(tiny_bundle, tmp_path / "wrong", 1.5)
    frame = tmp_path / "frame.png"
    cv2.imwrite(str(frame), np.zeros((8, 8, 3), np.uint8))
    assert main(["inspect", str(wrong)]) == 0
    capsys.readouterr()
    code = main(["run", str(wrong), "--image", str(frame)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "reelrt compile" in err
