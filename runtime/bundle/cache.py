"""Where the runtime keeps what it may recompute: trust records and optimised graphs.

Bundles often sit in read-only install folders, so nothing is written into them at load
time; the cache lives in REELRT_CACHE_DIR, else $XDG_CACHE_HOME/reelrt, else ~/.cache/reelrt.
Every write is best-effort: an unwritable cache only costs speed.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path


def cache_dir(*parts: str) -> Path:
    root = os.environ.get("REELRT_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "reelrt")
    return Path(root, *parts)


def write_atomic(path: Path, data: bytes) -> bool:
    """Write a file by temp-and-rename; return False instead of raising when the cache is unwritable."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.replace(tmp, path)
        except BaseException:
            os.unlink(tmp)
            raise
        return True
    except OSError:
        return False
