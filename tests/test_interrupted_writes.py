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
from reelrt.runtime.bundle.manifest import Manifest, TensorSpec
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


# -- the real commands ------------------------------------------------------------------------

def writer_dir(out: Path) -> Path | None:
    """The temporary directory a BundleWriter for `out` is filling, if one exists now."""
    return next(out.parent.glob(f".{out.name}.tmp-*"), None)


# when to kill: a delay after start, or the moment the writer's temp dir exists / holds a file
MOMENTS = {
    "at start": lambda out: True,
    "after 1 s": lambda out: time.sleep(1.0) or True,
    "writer dir created": lambda out: writer_dir(out) is not None,
    "model written": lambda out: (d := writer_dir(out)) is not None and (d / "model.onnx").exists(),
    "manifest written": lambda out: (d := writer_dir(out)) is not None and (d / "manifest.json").exists(),
}

# what each moment must hit, so that no case passes by killing a process that had already finished
# (the last window, manifest written to swap, is a few fsyncs long: the writer may win it)
EXPECTED = {"at start": {"before writing"}, "after 1 s": {"before writing"}, "writer dir created": {"mid-write"},
            "model written": {"mid-write"}, "manifest written": {"mid-write", "finished"}}


def kill_command(args: list[str], out: Path, moment: str, limit: float = 120) -> str:
    """Run `reelrt ARGS` as a child; SIGKILL it at `moment` (polled every millisecond) or when it ends.
    Returns what was killed: "mid-write" (a writer dir existed), "before writing" or "finished"."""
    child = subprocess.Popen([sys.executable, "-m", "reelrt", *args], stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + limit
    while child.poll() is None and not MOMENTS[moment](out) and time.monotonic() < deadline:
        time.sleep(0.001)
    child.send_signal(signal.SIGKILL)
    finished = child.wait() == 0
    return "finished" if finished else "mid-write" if writer_dir(out) else "before writing"


def assert_old_or_new(out: Path, before: bytes, new_precision: str) -> None:
    """`out` verifies, and is either the old bundle byte for byte (manifest) or the complete new one;
    nothing but `out` is visible beside it, and the next writer sweeps what the child left."""
    bundle = open_bundle(out, verify="always")
    if (out / "manifest.json").read_bytes() != before:
        assert bundle.manifest.precision == new_precision and bundle.manifest.labels != ["a", "b", "c"]
    assert [p.name for p in out.parent.iterdir() if not p.name.startswith(".")] == [out.name]
    make_tiny_bundle(out)
    assert [p.name for p in out.parent.iterdir()] == [out.name]


@pytest.fixture(scope="module")
def digits_checkpoint(tmp_path_factory) -> Path:
    """A random-weight digits state_dict: the export route is the same as for a trained one."""
    import torch

    from reelrt.models.cnn import build
    path = tmp_path_factory.mktemp("ckpt") / "digits.pt"
    torch.save(build("digits").state_dict(), path)
    return path


@pytest.mark.parametrize("moment", ["after 1 s", "writer dir created", "model written", "manifest written"])
def test_killing_export_never_leaves_a_half_bundle(tmp_path, digits_checkpoint, moment):
    out = make_tiny_bundle(tmp_path / "target" / "bundle")
    before = (out / "manifest.json").read_bytes()
    killed = kill_command(["export", "cnn", "--arch", "digits", "--checkpoint", str(digits_checkpoint), "--out", str(out)],
                          out, moment)
    assert killed in EXPECTED[moment]
    assert_old_or_new(out, before, "fp32")


@pytest.mark.parametrize("moment", ["at start", "writer dir created", "model written", "manifest written"])
def test_killing_quantize_never_leaves_a_half_bundle(tmp_path, tiny_cnn_bundle, moment):
    out = make_tiny_bundle(tmp_path / "target" / "bundle")
    before = (out / "manifest.json").read_bytes()
    killed = kill_command(["quantize", str(tiny_cnn_bundle), "--precision", "int8", "--out", str(out)], out, moment)
    assert killed in EXPECTED[moment]
    assert_old_or_new(out, before, "int8")
