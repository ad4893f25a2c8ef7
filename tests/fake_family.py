"""A stand-in for a family's benchmark module (reelrt.bench.<family>), written to the
contract, so the harness is tested without torch or the real families.

Its reelrt row really runs the tiny bundle through the runtime; its "pytorch" peer is a
numpy matmul of the same shape, and it skips two peers with reasons as a family would.
Factories live here so child processes can import them by name.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from reelrt.bench.harness import System


def systems(bundles, peers, threads):
    rows, skipped = [], {}
    for b in bundles:
        workload = f"tiny {b.root.parent.name}/{b.root.name} batch 2"
        rows.append(System(f"reelrt {b.manifest.precision}", workload, "fake_family:reelrt_step",
                           {"bundle": str(b.root), "threads": threads}, is_reelrt=True,
                           size_bytes=b.model_path.stat().st_size, batch=2))
        if peers is None or "pytorch" in peers:
            rows.append(System("pytorch eager", workload, "fake_family:numpy_step", {"threads": threads}, batch=2))
    for peer, reason in (("llama.cpp", "not applicable to image classifiers"), ("optimum", "not installed")):
        if peers is None or peer in peers:
            skipped[peer] = reason
    return rows, skipped


def reelrt_step(bundle: str, threads: int):
    from reelrt.runtime import Model, open_bundle

    model = Model(open_bundle(bundle), device="cpu", threads=threads)
    feeds = {"pixels": np.ones((2, 3, 4, 4), np.float32)}
    return lambda: model.run(feeds) and None


def numpy_step(threads: int):
    weight = np.random.default_rng(0).standard_normal((48, 3)).astype(np.float32)
    x = np.ones((2, 48), np.float32)
    return lambda: (x @ weight) is None or None


def generation_step(ms_per_token: float):
    """A 'generator' that reports its own time to first token and decode speed."""
    return lambda: {"ttft_ms": 2 * ms_per_token, "decode_ms_per_token": ms_per_token}


def allocating_step(mb: int, sleep_s: float = 0.0):
    """Touches `mb` megabytes at build time (and sleeps), to check what a child run reports."""
    import time

    held = np.ones(mb * 1024 * 1024 // 8)
    time.sleep(sleep_s)
    return lambda: held[0] and None


def env_step(path: str):
    """Writes the thread settings the step sees, to check that a child run inherits them."""
    import os

    Path(path).write_text(os.environ.get("OMP_NUM_THREADS", ""))
    return lambda: None


def failing_factory():
    raise RuntimeError("this peer cannot start\nsecond line of detail")


def demo(workdir: Path) -> list[Path]:
    from conftest import make_tiny_bundle

    path = Path(workdir) / "tiny-demo"
    if not (path / "manifest.json").is_file():
        make_tiny_bundle(path)
    return [path]


def show(bundle: Path) -> str:
    from reelrt.runtime import Model, open_bundle

    model = Model(open_bundle(bundle), device="cpu")  # the task classes belong to the families
    logits = model.run({"pixels": np.ones((1, 3, 4, 4), np.float32)})["logits"][0]
    return f"tiny answers: {model.manifest.labels[int(np.argmax(logits))]}"
