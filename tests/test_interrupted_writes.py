"""Killing a writer at any moment never leaves a half bundle and never damages the old one."""
from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import make_tiny_bundle
from reelrt.runtime import open_bundle

# A writer that replaces the bundle at argv[1] with a bigger one, slowly, saying where it is.
SLOW_WRITER = """
import sys, time
sys.path.insert(0, sys.argv[2])
from conftest import write_tiny_onnx
from reelrt.runtime.bundle import BundleWriter
from reelrt.runtime.manifest import Manifest, TensorSpec
with BundleWriter(sys.argv[1]) as w:
    write_tiny_onnx(w.dir / "model.onnx")
    for i in range(6):
        (w.dir / f"chunk{i}.bin").write_bytes(bytes(4 << 20))
        print(f"chunk {i}", flush=True)
        time.sleep(0.05)
    print("commit", flush=True)
    w.commit(Manifest(family="cnn", task="image-classification", precision="fp32", model="model.onnx",
                      inputs=[TensorSpec("pixels", "float32", ("batch", 3, 4, 4))],
                      outputs=[TensorSpec("logits", "float32", ("batch", 3))], artifacts={}))
print("done", flush=True)
"""


def run_and_kill(out: Path, marker: str | None, delay: float) -> None:
    child = subprocess.Popen([sys.executable, "-c", SLOW_WRITER, str(out), str(Path(__file__).parent)],
                             stdout=subprocess.PIPE, text=True)
    if marker:
        for line in child.stdout:
            if line.strip() == marker:
                break
    time.sleep(delay)
    child.send_signal(signal.SIGKILL)
    child.wait()
    child.stdout.close()


@pytest.mark.parametrize("marker, delay", [(None, 0.0), (None, 0.3), ("chunk 0", 0.0), ("chunk 3", 0.01),
                                           ("commit", 0.0), ("commit", 0.02), ("commit", 0.08)])
def test_kill_at_any_point(tmp_path, marker, delay):
    out = make_tiny_bundle(tmp_path / "bundle")
    before = (out / "manifest.json").read_bytes()
    run_and_kill(out, marker, delay)
    # `out` is either the old bundle, intact, or the complete new one: never a mixture
    bundle = open_bundle(out, verify="always")
    if (out / "manifest.json").read_bytes() != before:
        assert len(bundle.manifest.artifacts) == 7
    visible = [p.name for p in tmp_path.iterdir() if not p.name.startswith(".")]
    assert visible == ["bundle"]
    make_tiny_bundle(out)  # the next writer sweeps what the killed one left
    assert [p.name for p in tmp_path.iterdir()] == ["bundle"]
