"""The wheel: one `reelrt` namespace, runtime-only dependencies, and it works without torch.

Builds the wheel, checks what it holds, installs it with its base dependencies alone in a
fresh virtual environment and runs a bundle there: the install a game client gets, without
torch, OpenCV or tokenizers, classifying raw frames as the OpenCV path does, and naming the
extra that a text bundle needs.
"""
from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
STAGES = ("cli", "export", "quantize", "runtime", "models", "bench")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(out), str(ROOT)],
                   check=True, capture_output=True)
    (found,) = out.glob("reelrt-*.whl")
    return found


def test_wheel_maps_stage_folders_into_one_namespace(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names}
    assert tops == {"reelrt", next(t for t in tops if t.endswith(".dist-info"))}
    for module in ("reelrt/__init__.py", "reelrt/cli.py", "reelrt/runtime/bundle/reader.py", "reelrt/runtime/tasks/generation/decoder.py", "reelrt/runtime/validation.py",
                   "reelrt/quantize/derive.py", "reelrt/bench/harness.py", "reelrt/models/__init__.py"):
        assert module in names
    assert not any(n.startswith(("reelrt/tests", "tests/")) for n in names)
    assert not any("experiments" in n for n in names)   # bench/experiments/ stays in the repository


@pytest.fixture(scope="module")
def base_venv(wheel, tmp_path_factory) -> Path:
    """A fresh venv holding the wheel with its base dependencies only; returns its python."""
    from reelrt.bench.install_size import fresh_venv
    py = fresh_venv(tmp_path_factory.mktemp("venv") / "venv")
    subprocess.run([str(py), "-m", "pip", "install", "-q", "-c", str(ROOT / "constraints.txt"), str(wheel)],
                   check=True, capture_output=True)
    return py


@pytest.mark.slow
def test_wheel_runs_a_bundle_in_a_fresh_venv_without_torch(base_venv, tiny_bundle, tmp_path):
    py, venv = base_venv, base_venv.parent.parent
    probe = (
        "import sys, numpy as np\n"
        "from reelrt.runtime import open_bundle, Model\n"
        "out = Model(open_bundle(sys.argv[1]), device='cpu').run({'pixels': np.ones((1, 3, 4, 4), np.float32)})\n"
        "assert out['logits'].shape == (1, 3)\n"
        "import importlib.util as u\n"
        "assert not any(u.find_spec(m) for m in ('torch', 'onnx', 'transformers', 'optimum')), 'training package installed'\n"
        "print('ok')\n")
    result = subprocess.run([str(py), "-c", probe, str(tiny_bundle)], cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
    cli = subprocess.run([str(venv / "bin" / "reelrt"), "inspect", str(tiny_bundle)], cwd=tmp_path,
                         capture_output=True, text=True)
    assert cli.returncode == 0, cli.stderr
    assert "image-classification" in cli.stdout


# Run in the base venv: classify raw frames of every layout without OpenCV, as logits.
_RAW_FRAMES = """
import sys, numpy as np, importlib.util
assert importlib.util.find_spec('cv2') is None, 'OpenCV is installed in the base venv'
from reelrt.runtime import load, InputError
data = np.load(sys.argv[2])
clf = load(sys.argv[1], device='cpu', threads=1)
np.savez(sys.argv[3], **{k: clf.logits(data[k], rgb=k.startswith('rgb')) for k in data.files})
try:
    clf.classify(b'\\x89PNG not decodable here')
except InputError as e:
    assert 'reelrt[images]' in str(e), e
    print('ok')
"""


@pytest.mark.slow
def test_raw_frames_classify_without_opencv_as_with_it(base_venv, tiny_cnn_bundle, tmp_path):
    """The base venv (no cv2) gives the logits this venv's OpenCV path gives, within the fp32 tolerance."""
    import cv2  # noqa: F401  (this side is the OpenCV path)
    import numpy as np

    from reelrt.runtime.validation import check, compare
    from reelrt.runtime import load
    rng = np.random.default_rng(5)
    frames = {"bgr": rng.integers(0, 256, (48, 64, 3), np.uint8), "rgb": rng.integers(0, 256, (31, 45, 3), np.uint8),
              "rgba": rng.integers(0, 256, (30, 22, 4), np.uint8), "bgra": rng.integers(0, 256, (40, 40, 4), np.uint8),
              "gray": rng.integers(0, 256, (20, 26), np.uint8), "small": rng.integers(0, 256, (9, 7, 3), np.uint8),
              "hd": rng.integers(0, 256, (1080, 1920, 3), np.uint8),
              "batch": rng.integers(0, 256, (4, 36, 36, 3), np.uint8)}
    np.savez(tmp_path / "frames.npz", **frames)
    result = subprocess.run([str(base_venv), "-c", _RAW_FRAMES, str(tiny_cnn_bundle), str(tmp_path / "frames.npz"),
                             str(tmp_path / "logits.npz")], cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
    without = np.load(tmp_path / "logits.npz")
    clf = load(tiny_cnn_bundle, device="cpu", threads=1)
    for name, frame in frames.items():
        check(compare(clf.logits(frame, rgb=name.startswith("rgb")), without[name]), "fp32",
              f"{name} frames without OpenCV", top1=True)


# Run in the base venv: a text bundle names the extra it needs; nothing of it was installed.
_TEXT_WITHOUT_EXTRA = """
import sys, importlib.util
for m in ('tokenizers', 'huggingface_hub', 'requests'):
    assert importlib.util.find_spec(m) is None, m + ' is installed in the base venv'
from reelrt.runtime import load, BackendUnavailableError
for path in sys.argv[1:]:
    try:
        load(path, device='cpu', threads=1)
    except BackendUnavailableError as e:
        assert "reelrt[text]" in str(e), e
        print('refused', path)
"""


@pytest.mark.slow
def test_text_bundles_name_the_text_extra_in_the_base_install(base_venv, tiny_text_bundle, gpt2_tiny_bundle, tmp_path):
    result = subprocess.run([str(base_venv), "-c", _TEXT_WITHOUT_EXTRA, str(tiny_text_bundle), str(gpt2_tiny_bundle)],
                            cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["refused", str(tiny_text_bundle), "refused", str(gpt2_tiny_bundle)]
