"""Writing bundles atomically: build beside the destination, then swap into place.

A stage never leaves a half-written bundle: `BundleWriter` builds in a temporary directory
next to `out`, checks the manifest as the reader would, gives every directory and file the
modes the caller's umask asks for (mkdtemp makes its directory owner-only, and copies keep their
source's mode, so an installed bundle would otherwise be unreadable by a service account or a
container), fsyncs, and exchanges the two directories (renameat2) where the kernel offers it.
"""
from __future__ import annotations

import ctypes
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Callable

from reelrt.runtime.errors import BundleError
from reelrt.runtime.bundle.manifest import MANIFEST_NAME, Artifact, Manifest, parse_manifest
from reelrt.runtime.bundle.reader import Bundle, sha256_file


class BundleWriter:
    """Build a bundle in a temporary directory beside `out`, then swap it into place.

    Usage: `with BundleWriter(out) as w: write files under w.dir; w.commit(manifest)`.
    Leaving the block without commit (an exception, Ctrl-C) deletes the temporary
    directory; a kill -9 leaves it behind under a dot-name, never a half bundle at `out`,
    and the next writer for the same `out` sweeps it. An existing bundle at `out` is
    replaced by an atomic exchange of the two directories where the kernel offers one.
    """

    def __init__(self, out: str | os.PathLike):
        self.out = Path(out).absolute()
        self.dir: Path | None = None

    def __enter__(self) -> "BundleWriter":
        self.out.parent.mkdir(parents=True, exist_ok=True)
        _sweep_stale(self.out)
        self.dir = Path(tempfile.mkdtemp(dir=self.out.parent, prefix=f".{self.out.name}.tmp-{os.getpid()}-"))
        return self

    def __exit__(self, *exc) -> None:
        if self.dir is not None and self.dir.exists():
            shutil.rmtree(self.dir, ignore_errors=True)

    def copy_artifacts(self, bundle: Bundle, keep: Callable[[str], bool] = lambda rel: True) -> None:
        """Copy the artifacts of an existing bundle that `keep` accepts into the new one (the
        stages that rewrite a bundle: quantize, compile, storing a TensorRT plan)."""
        assert self.dir is not None, "copy_artifacts() outside the with-block"
        for rel in bundle.manifest.artifacts:
            if keep(rel):
                (self.dir / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(bundle.root / rel, self.dir / rel)

    def commit(self, manifest: Manifest) -> Path:
        """Record every file under the temp dir as an artifact, write manifest.json, swap in."""
        assert self.dir is not None, "commit() outside the with-block"
        manifest.artifacts = {}
        for file in sorted(p for p in self.dir.rglob("*") if p.is_file() or p.is_symlink()):
            rel = file.relative_to(self.dir).as_posix()
            if rel == MANIFEST_NAME:
                continue
            if file.is_symlink():
                raise BundleError(f"refusing to write a bundle holding a symlink ({rel})")
            manifest.artifacts[rel] = Artifact(rel, file.stat().st_size, sha256_file(file))
        if manifest.model not in manifest.artifacts:
            raise BundleError(f"the bundle's model {manifest.model!r} was not written")
        manifest.provenance.setdefault("written_at", time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
        parse_manifest(manifest.dumps().encode())  # never write what the reader would refuse
        (self.dir / MANIFEST_NAME).write_text(manifest.dumps())
        _apply_umask(self.dir)
        for p in self.dir.rglob("*"):
            _fsync(p)
        _swap_into_place(self.dir, self.out)
        self.dir = None
        return self.out


def _apply_umask(root: Path) -> None:
    """Directories 0777 and files 0666, less the umask: what they would be had the caller made them."""
    mask = current_umask()
    os.chmod(root, 0o777 & ~mask)
    for p in root.rglob("*"):
        os.chmod(p, (0o777 if p.is_dir() else 0o666) & ~mask)


def current_umask() -> int:
    """The process's umask, read without changing it where Linux reports it (/proc/self/status),
    else by setting and restoring it."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _fsync(path: Path) -> None:
    if path.is_file():
        with open(path, "rb") as f:
            os.fsync(f.fileno())


def _swap_into_place(new: Path, out: Path) -> None:
    if not out.exists() and not out.is_symlink():
        os.rename(new, out)
        return
    if _rename_exchange(new, out):
        shutil.rmtree(new)  # now holds the old bundle
        return
    old = out.parent / f".{out.name}.old-{os.getpid()}"
    os.rename(out, old)
    os.rename(new, out)
    shutil.rmtree(old, ignore_errors=True)


def _rename_exchange(a: Path, b: Path) -> bool:
    """Linux renameat2(RENAME_EXCHANGE): swap two paths atomically. False where unsupported."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    rc = renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange)
    return rc == 0


def _sweep_stale(out: Path) -> None:
    """Remove temp dirs that writers killed mid-way left beside `out`."""
    for p in out.parent.glob(f".{out.name}.*-*"):
        parts = p.name[len(out.name) + 2:].split("-")
        if len(parts) >= 2 and parts[0] in ("tmp", "old") and parts[1].isdigit() and not _pid_alive(int(parts[1])):
            shutil.rmtree(p, ignore_errors=True)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
