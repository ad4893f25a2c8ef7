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
from typing import Callable, Literal, Sequence

from reelrt.runtime.bundle.cache import cache_dir, write_atomic
from reelrt.runtime.errors import BundleError
from reelrt.runtime.bundle.manifest import (MANIFEST_NAME, MAX_MANIFEST_BYTES, Artifact, Manifest, check_relative_path,
                                            parse_manifest, read_bundle_file)
from reelrt.runtime.bundle.onnx_scan import external_data_locations
from reelrt.runtime.bundle.signing import TrustedKey, check_signature

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


def open_bundle(path: str | os.PathLike, verify: Verify = "auto",
                trusted_keys: Sequence[TrustedKey] | None = None) -> Bundle:
    """Validate a bundle directory and return it; raise BundleError naming what is wrong.

    verify="auto" hashes artifacts unless a trust record shows them unchanged since the
    last full check, "always" hashes every time, "never" checks only presence and sizes.
    trusted_keys: when given, manifest.sig must be a signature of manifest.json by one of
    them, checked before the manifest is parsed and at every open (it costs well under a
    millisecond); the artifacts are bound to it by their sha256 in the signed manifest, so
    verify="never" would leave their contents unchecked.
    """
    if verify not in ("auto", "always", "never"):
        raise ValueError(f"verify must be 'auto', 'always' or 'never', not {verify!r}")
    root = Path(path)
    if not root.is_dir():
        raise BundleError(f"{root} is not a bundle directory (no such directory)")
    root = root.resolve()
    manifest_raw = _read_manifest(root)
    if trusted_keys is not None:  # before parsing: the parser never sees an unauthenticated manifest
        check_signature(root, manifest_raw, trusted_keys)
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
    return read_bundle_file(root / MANIFEST_NAME, MAX_MANIFEST_BYTES, f"{root} has no {MANIFEST_NAME}: not a reelrt bundle")


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
