"""Reading, verifying and atomically writing bundles.

Verification policy (see SECURITY.md): a full check hashes every artifact and scans ONNX
external-data paths. It runs on `reelrt verify` and on the first load of a bundle on a
machine; it then leaves a trust record in the user's cache holding each artifact's size,
mtime, ctime and inode. A later load that finds the same stat values skips the hashing, so
a 500 MB model loads without reading it twice. Any change of the files (a re-download,
a truncation, an edit, a copy elsewhere) changes those values and brings back the full
check. The record guards against corruption and partial updates; it does not stop an
attacker who can both write the bundle and forge ctime (only root can): use
verify="always" where bundles arrive from untrusted places at every load.
"""
from __future__ import annotations

import ctypes
import hashlib
import json
import os
import shutil
import stat
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Literal

from .cache import cache_dir, write_atomic
from .errors import BundleError
from .manifest import MANIFEST_NAME, MAX_MANIFEST_BYTES, Artifact, Manifest, check_relative_path, parse_manifest
from .onnx_scan import external_data_locations

Verify = Literal["auto", "always", "never"]
_CHUNK = 1 << 20


@dataclass(frozen=True)
class Bundle:
    """A verified bundle on disk: its root directory and its manifest."""
    root: Path
    manifest: Manifest

    def path(self, relative: str) -> Path:
        """Absolute path of one of the bundle's artifacts."""
        if relative not in self.manifest.artifacts:
            raise BundleError(f"{relative!r} is not an artifact of the bundle at {self.root}")
        return self.root / relative

    @property
    def model_path(self) -> Path:
        return self.path(self.manifest.model)


def open_bundle(path: str | os.PathLike, verify: Verify = "auto") -> Bundle:
    """Validate a bundle directory and return it; raise BundleError naming what is wrong.

    verify="auto" hashes artifacts unless a trust record shows them unchanged since the
    last full check, "always" hashes every time, "never" checks only presence and sizes.
    """
    if verify not in ("auto", "always", "never"):
        raise ValueError(f"verify must be 'auto', 'always' or 'never', not {verify!r}")
    root = Path(path)
    if not root.is_dir():
        raise BundleError(f"{root} is not a bundle directory (no such directory)")
    root = root.resolve()
    manifest_raw = _read_manifest(root)
    manifest = parse_manifest(manifest_raw)
    stats = {rel: _artifact_stat(root, art) for rel, art in manifest.artifacts.items()}
    if verify == "never":
        return Bundle(root, manifest)
    record_path = _trust_record_path(root)
    record = _trust_record(manifest_raw, stats)
    if verify == "auto" and _read_record(record_path) == record:
        return Bundle(root, manifest)
    _verify_contents(root, manifest)
    write_atomic(record_path, json.dumps(record, sort_keys=True).encode())
    return Bundle(root, manifest)


def verify_bundle(path: str | os.PathLike) -> Bundle:
    """Full check, whatever the trust record says (`reelrt verify`)."""
    return open_bundle(path, verify="always")


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _read_manifest(root: Path) -> bytes:
    mpath = root / MANIFEST_NAME
    try:
        st = os.lstat(mpath)
    except FileNotFoundError:
        raise BundleError(f"{root} has no {MANIFEST_NAME}: not a reelrt bundle") from None
    if not stat.S_ISREG(st.st_mode):
        raise BundleError(f"{MANIFEST_NAME} in {root} is not a regular file (symlinks are refused)")
    if st.st_size > MAX_MANIFEST_BYTES:
        raise BundleError(f"{MANIFEST_NAME} is {st.st_size} bytes, over the {MAX_MANIFEST_BYTES}-byte limit")
    with open(mpath, "rb") as f:
        return f.read(MAX_MANIFEST_BYTES + 1)


def _artifact_stat(root: Path, art: Artifact) -> os.stat_result:
    """Check that an artifact is a regular file inside the bundle, of the recorded size."""
    current = root
    for part in art.path.split("/"):
        current = current / part
        try:
            st = os.lstat(current)
        except FileNotFoundError:
            raise BundleError(f"artifact {art.path!r} is missing from the bundle") from None
        if stat.S_ISLNK(st.st_mode):
            raise BundleError(f"artifact {art.path!r} goes through a symlink ({current.name}); bundles may not hold symlinks")
    if not stat.S_ISREG(st.st_mode):
        raise BundleError(f"artifact {art.path!r} is not a regular file")
    if os.path.commonpath([os.path.realpath(current), root]) != str(root):
        raise BundleError(f"artifact {art.path!r} resolves outside the bundle")
    if st.st_size < art.size:
        raise BundleError(f"artifact {art.path!r} is truncated: {st.st_size} bytes, manifest says {art.size}")
    if st.st_size > art.size:
        raise BundleError(f"artifact {art.path!r} is oversized: {st.st_size} bytes, manifest says {art.size}")
    return st


def _verify_contents(root: Path, manifest: Manifest) -> None:
    for rel, art in manifest.artifacts.items():
        if sha256_file(root / rel) != art.sha256:
            raise BundleError(f"artifact {rel!r} fails its sha256 check: the file is corrupt or was modified")
    for rel in manifest.artifacts:
        if rel.endswith(".onnx"):
            _check_external_data(root, rel, manifest)


def _check_external_data(root: Path, rel: str, manifest: Manifest) -> None:
    base = os.path.dirname(rel)
    for location in external_data_locations(root / rel):
        if location.startswith("./"):
            location = location[2:]
        check_relative_path(location, f"{rel}: external-data location")
        target = f"{base}/{location}" if base else location
        if target not in manifest.artifacts:
            raise BundleError(f"{rel} names external data {location!r}, which is not a listed artifact of the bundle")


def _trust_record(manifest_raw: bytes, stats: dict[str, os.stat_result]) -> dict:
    return {
        "manifest_sha256": hashlib.sha256(manifest_raw).hexdigest(),
        "files": {rel: [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev]
                  for rel, st in sorted(stats.items())},
    }


def _trust_record_path(root: Path) -> Path:
    return cache_dir("trust", hashlib.sha256(str(root).encode()).hexdigest()[:32] + ".json")


def _read_record(path: Path) -> dict | None:
    try:
        return json.loads(path.read_bytes())
    except (OSError, ValueError):
        return None


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
        for p in self.dir.rglob("*"):
            _fsync(p)
        _swap_into_place(self.dir, self.out)
        self.dir = None
        return self.out


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
