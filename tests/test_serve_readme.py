"""The README's Serving examples, run as written against a server on tiny bundles."""
from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from tests.serving import running_server

README = Path(__file__).resolve().parents[1] / "README.md"


def serving_blocks() -> tuple[list[str], str]:
    section = README.read_text().split("## Serving", 1)[1].split("\n## ", 1)[0]
    bash, python = re.findall(r"```console\n(.*?)```", section, re.S)  # console: the server runs until stopped
    return bash.strip().splitlines(), python


def test_readme_serving_examples_run(tmp_path, gpt2_tiny_bundle, tiny_cnn_bundle):
    lines, python = serving_blocks()
    serve = shlex.split(lines[0].split("#")[0])
    assert serve[:2] == ["reelrt", "serve"]
    paths = {"npc": gpt2_tiny_bundle, "posters": tiny_cnn_bundle}
    args = [f"{a.split('=')[0]}={paths[a.split('=')[0]]}" if "=" in a else a for a in serve[2:]]
    cv2.imwrite(str(tmp_path / "poster.jpg"), np.random.default_rng(0).integers(0, 256, (64, 48, 3), np.uint8))
    with running_server(*args, "--threads", "1") as port:
        if shutil.which("curl"):
            for line in lines[1:]:
                run = subprocess.run(line.replace("localhost:8000", f"127.0.0.1:{port}"), shell=True, cwd=tmp_path,
                                     capture_output=True, text=True, timeout=60)
                assert run.returncode == 0 and run.stdout and '"error":' not in run.stdout, (line, run.stdout)
        script = python.replace("8000", str(port))
        run = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=120)
        assert run.returncode == 0, run.stderr
        assert "cat" in run.stdout or "dog" in run.stdout or "car" in run.stdout or "tree" in run.stdout
