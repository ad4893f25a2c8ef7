"""Provenance recorded in every bundle: where the weights came from and which tools wrote it."""
from __future__ import annotations

import hashlib
import platform
from pathlib import Path

from reelrt.runtime.system import library_versions

TOOLS = ("reelrt", "torch", "onnx", "onnxruntime", "onnxscript", "transformers", "optimum", "openvino")


def tool_versions() -> dict[str, str]:
    return library_versions(TOOLS)


def checkpoint_sha256(path: str | Path | None) -> str | None:
    """sha256 of a checkpoint file, or of a checkpoint directory's files in name order."""
    if path is None:
        return None
    path = Path(path)
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    h = hashlib.sha256()
    for f in files:
        h.update(f.relative_to(path).as_posix().encode() if path.is_dir() else b"")
        with open(f, "rb") as fh:
            while chunk := fh.read(1 << 20):
                h.update(chunk)
    return h.hexdigest()


def provenance(source: str, checkpoint: str | Path | None = None, **extra) -> dict:
    """The manifest's provenance section; `source` says what the weights are (a checkpoint, random init...)."""
    return {
        "source": source,
        "checkpoint": str(checkpoint) if checkpoint else None,
        "checkpoint_sha256": checkpoint_sha256(checkpoint),
        "tools": tool_versions(),
        "python": platform.python_version(),
        **extra,
    }
