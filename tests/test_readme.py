"""Every runnable example of README.md runs as written.

The convention, for everyone who writes in the README:
- A fenced block whose info string is exactly `bash` or `python` is an example that runs here.
  This test runs all of them in README order, in one scratch directory that holds a `models`
  link to this checkout's models/ (so `models/data/fortunes.csv` resolves as it does from the
  repository root): bash blocks with `bash -euo pipefail` and this interpreter's `reelrt` first
  on PATH, each python block as its own script in a fresh interpreter. Later blocks may use what
  earlier ones wrote (bundles/, checkpoints).
- So a runnable example uses small models only (the digits CNN, the fortunes LSTM, the tiny or
  briefly trained GPT-2), nothing from the network and no GPU, and prints what it shows.
- A block that cannot run here (installs, GPUs, runs of minutes, other hosts) is fenced as
  `console`; output and diagrams are fenced as `text` or left bare. Neither is run.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
RUNNABLE = ("bash", "python")
FENCE = re.compile(r"^```(\S*)[^\n]*\n(.*?)^```\s*$", re.M | re.S)


def runnable_blocks(text: str) -> list[tuple[str, int, str]]:
    """(language, line number, code) of each runnable block, in order."""
    return [(m.group(1), text.count("\n", 0, m.start()) + 1, m.group(2))
            for m in FENCE.finditer(text) if m.group(1) in RUNNABLE]


def test_the_convention_finds_the_examples():
    blocks = runnable_blocks("```bash\nreelrt --help\n```\n\n```console\npip install x\n```\n\n```python\nprint(1)\n```\n")
    assert [(lang, line) for lang, line, _ in blocks] == [("bash", 1), ("python", 9)]


def test_readme_examples_run_as_written(tmp_path):
    blocks = runnable_blocks((ROOT / "README.md").read_text())
    assert {lang for lang, _, _ in blocks} == set(RUNNABLE)
    (tmp_path / "models").symlink_to(ROOT / "models")
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    for lang, line, code in blocks:
        command = ["bash", "-euo", "pipefail", "-c", code] if lang == "bash" else [sys.executable, "-c", code]
        run = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
        if run.returncode != 0:
            pytest.fail(f"README.md line {line} ({lang}) exited {run.returncode}:\n{run.stderr[-3000:]}")
