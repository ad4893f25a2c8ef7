"""The README's "In a game process" examples run as written, in order, on a real bundle."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent


def _blocks() -> list[tuple[str, str]]:
    text = (ROOT / "README.md").read_text()
    section = text.split("## In a game process", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```(python|bash)\n(.*?)```", section, re.S)


def test_the_examples_run_in_order(tiny_cnn_bundle, tmp_path):
    import cv2
    shutil.copytree(tiny_cnn_bundle, tmp_path / "bundles" / "mobilenetv2-int8")
    cv2.imwrite(str(tmp_path / "poster.png"), np.random.default_rng(0).integers(0, 256, (40, 60, 3), np.uint8))
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    blocks = _blocks()
    assert [kind for kind, _ in blocks] == ["python", "bash", "bash", "python"]
    for kind, code in blocks:
        argv = [sys.executable, "-c", code] if kind == "python" else ["bash", "-euo", "pipefail", "-c", code]
        result = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, f"{kind} block failed:\n{code}\n{result.stderr}"
    assert (tmp_path / "bundles" / "mobilenetv2-int8" / "manifest.sig").is_file()
