"""The wheel: one `reelrt` namespace, runtime-only dependencies, and it works without torch.

Builds the wheel, checks what it holds, installs it with its base dependencies alone in a
fresh virtual environment and runs a bundle there: the install a game client gets.
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


@pytest.mark.slow
def test_wheel_runs_a_bundle_in_a_fresh_venv_without_torch(wheel, tiny_bundle, tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    py = venv / "bin" / "python"
    subprocess.run([str(py), "-m", "pip", "install", "-q", "-c", str(ROOT / "constraints.txt"), str(wheel)],
                   check=True, capture_output=True)
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
