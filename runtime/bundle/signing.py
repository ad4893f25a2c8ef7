"""Signed bundles: who made a bundle, not only that it is intact.

The manifest already holds every artifact's size and sha256, so one ed25519 signature over
the exact bytes of manifest.json covers the whole bundle. The signature lives beside it in
`manifest.sig`, which is not an artifact (it cannot be listed in what it signs): a small
JSON object naming the algorithm, the signing key's id (sha256 of its raw public key, to tell
"signed by someone else" from "changed after signing") and the signature in base64.

    reelrt keygen --out studio.key          # studio.key (private, mode 0600) + studio.key.pub
    reelrt sign bundles/digits --key studio.key
    load("bundles/digits", trusted_keys=["studio.key.pub"])   # BundleError unless signed by it

Needs the `cryptography` package (`pip install 'reelrt[signing]'`), imported only here.
Any change to the bundle after signing is refused: to manifest.json by the signature, to an
artifact by its sha256 in the signed manifest. Writers (quantize, compile) produce a new,
unsigned manifest, so a rewritten bundle must be signed again.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Sequence, Union

from reelrt.runtime.bundle.manifest import MANIFEST_NAME, SIGNATURE_NAME, read_bundle_file
from reelrt.runtime.errors import BundleError, ReelrtError

ALGORITHM = "ed25519"
MAX_SIGNATURE_BYTES = 4096
MAX_KEY_BYTES = 16384

TrustedKey = Union[str, os.PathLike, bytes]  # a PEM file, PEM bytes or 32 raw bytes


def _crypto():
    """cryptography's ed25519 and serialization modules, or a ReelrtError naming the extra."""
    try:
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import ed25519
    except ImportError:
        raise ReelrtError("signed bundles need the 'cryptography' package: pip install 'reelrt[signing]'") from None
    return ed25519, serialization, InvalidSignature


def key_id(public_raw: bytes) -> str:
    """A short, stable name for a public key: the first 16 hex digits of sha256 of its 32 raw bytes."""
    return hashlib.sha256(public_raw).hexdigest()[:16]


def generate_key_pair(out: str | os.PathLike) -> tuple[Path, Path, str]:
    """Write a new private key to `out` (PEM PKCS#8, mode 0600) and its public key to `out`.pub;
    return both paths and the key id. Refuses to overwrite either file."""
    ed25519, serialization, _ = _crypto()
    private_path, public_path = Path(out), Path(f"{os.fspath(out)}.pub")
    for p in (private_path, public_path):
        if p.exists() or p.is_symlink():
            raise ReelrtError(f"{p} already exists; refusing to overwrite a key")
    key = ed25519.Ed25519PrivateKey.generate()
    private_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption())
    public = key.public_key()
    public_pem = public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    _write_atomic(private_path, private_pem, 0o600, overwrite=False)
    _write_atomic(public_path, public_pem, 0o644, overwrite=False)
    return private_path, public_path, key_id(_raw(public, serialization))


def sign_bundle(path: str | os.PathLike, private_key: str | os.PathLike) -> str:
    """Sign the manifest of the (fully verified) bundle at `path`; write manifest.sig atomically
    beside it and return the signing key's id."""
    from reelrt.runtime.bundle.reader import verify_bundle  # the reader imports this module
    ed25519, serialization, _ = _crypto()
    bundle = verify_bundle(path)  # never vouch for a bundle that is already broken
    data = _read_key_file(private_key, "private key")
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as e:
        raise ReelrtError(f"{os.fspath(private_key)} is not an unencrypted PEM private key ({e})") from None
    if not isinstance(key, ed25519.Ed25519PrivateKey):
        raise ReelrtError(f"{os.fspath(private_key)} is not an ed25519 key (reelrt keygen makes one)")
    manifest_raw = (bundle.root / MANIFEST_NAME).read_bytes()
    kid = key_id(_raw(key.public_key(), serialization))
    doc = {"algorithm": ALGORITHM, "key_id": kid,
           "signature": base64.b64encode(key.sign(manifest_raw)).decode("ascii")}
    _write_atomic(bundle.root / SIGNATURE_NAME, (json.dumps(doc, indent=1) + "\n").encode(), 0o644)
    return kid


def check_signature(root: Path, manifest_raw: bytes, trusted_keys: Sequence[TrustedKey]) -> str:
    """Raise BundleError unless manifest.sig in `root` is a valid signature of `manifest_raw` by
    one of `trusted_keys`; return the id of the key that signed it."""
    ed25519, serialization, InvalidSignature = _crypto()
    keys = {}
    for k in trusted_keys:
        public = load_public_key(k)
        keys[key_id(_raw(public, serialization))] = public
    if not keys:
        raise ReelrtError("trusted_keys is empty: pass at least one public key, or None to skip signature checks")
    doc = _read_signature(root)
    public = keys.get(doc["key_id"])
    if public is None:
        raise BundleError(f"{SIGNATURE_NAME} is by key {doc['key_id']}, which is not among the trusted keys"
                          f" ({', '.join(sorted(keys))}): wrong key or an untrusted publisher")
    try:
        public.verify(doc["signature"], manifest_raw)
    except InvalidSignature:
        raise BundleError(f"{SIGNATURE_NAME} does not match {MANIFEST_NAME}: the bundle was changed after it was"
                          " signed, or the signature is damaged") from None
    return doc["key_id"]


def load_public_key(key: TrustedKey):
    """An Ed25519PublicKey from a PEM file path, PEM bytes or 32 raw bytes; ReelrtError otherwise."""
    ed25519, serialization, _ = _crypto()
    if isinstance(key, (str, os.PathLike)):
        data, what = _read_key_file(key, "public key"), os.fspath(key)
    elif isinstance(key, (bytes, bytearray)):
        data, what = bytes(key), "a trusted key given as bytes"
    else:
        raise ReelrtError(f"a trusted key is a path or bytes, not {type(key).__name__}")
    try:
        public = (ed25519.Ed25519PublicKey.from_public_bytes(data) if len(data) == 32
                  else serialization.load_pem_public_key(data))
    except (ValueError, TypeError) as e:
        raise ReelrtError(f"{what} is not a PEM public key ({e})") from None
    if not isinstance(public, ed25519.Ed25519PublicKey):
        raise ReelrtError(f"{what} is not an ed25519 public key")
    return public


def _read_signature(root: Path) -> dict:
    """manifest.sig parsed and checked for shape; BundleError naming what is wrong."""
    raw = read_bundle_file(root / SIGNATURE_NAME, MAX_SIGNATURE_BYTES,
                           f"the bundle is unsigned (no {SIGNATURE_NAME}) and trusted keys were given")
    try:
        doc = json.loads(raw)
        if not isinstance(doc, dict) or doc.get("algorithm") != ALGORITHM or not isinstance(doc.get("key_id"), str):
            raise ValueError(f"needs algorithm {ALGORITHM!r}, key_id and signature")
        signature = base64.b64decode(doc["signature"], validate=True)
        if len(signature) != 64:
            raise ValueError(f"an ed25519 signature is 64 bytes, this one {len(signature)}")
    except (ValueError, KeyError, TypeError, binascii.Error) as e:
        raise BundleError(f"{SIGNATURE_NAME} is malformed: {e}") from None
    return {"key_id": doc["key_id"], "signature": signature}


def _read_key_file(path: str | os.PathLike, what: str) -> bytes:
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_KEY_BYTES + 1)
    except OSError as e:
        raise ReelrtError(f"cannot read {what} {os.fspath(path)!r}: {e.strerror or e}") from None
    if len(data) > MAX_KEY_BYTES:
        raise ReelrtError(f"{what} {os.fspath(path)!r} is over {MAX_KEY_BYTES} bytes: not a key")
    return data


def _raw(public, serialization) -> bytes:
    return public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def _write_atomic(path: Path, data: bytes, mode: int, overwrite: bool = True) -> None:
    """Temp file beside `path` with `mode` from the start (a private key is never readable by
    others, even for a moment), then renamed over `path`, or linked where overwrite is False
    (so a key that appeared meanwhile is never replaced)."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        if overwrite:
            os.replace(tmp, path)
        else:
            try:
                os.link(tmp, path)
            except FileExistsError:
                raise ReelrtError(f"{path} already exists; refusing to overwrite a key") from None
            os.unlink(tmp)
    except BaseException:
        if os.path.lexists(tmp):
            os.unlink(tmp)
        raise
