"""Signed bundles: keygen, sign, and loading or verifying with trusted keys. The tampering
cases (unsigned, wrong key, any change after signing) are in the hostile corpus."""
from __future__ import annotations

import json
import shutil
import stat

import pytest

from reelrt.cli import main
from reelrt.runtime import BundleError, ReelrtError, load, open_bundle
from reelrt.runtime.bundle import BundleWriter
from reelrt.runtime.bundle.signing import SIGNATURE_NAME, generate_key_pair, load_public_key, sign_bundle


@pytest.fixture
def keys(tmp_path):
    """(private key path, public key path, key id) of a fresh pair."""
    (tmp_path / "keys").mkdir()
    return generate_key_pair(tmp_path / "keys" / "studio.key")


def test_keygen_writes_a_private_key_only_its_owner_reads(keys):
    private, public, kid = keys
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    assert public.name == "studio.key.pub" and b"PUBLIC KEY" in public.read_bytes()
    assert b"PRIVATE KEY" in private.read_bytes() and len(kid) == 16
    with pytest.raises(ReelrtError, match="refusing to overwrite"):
        generate_key_pair(private)


def test_a_signed_bundle_loads_with_its_key(tiny_bundle, keys):
    private, public, kid = keys
    assert sign_bundle(tiny_bundle, private) == kid
    doc = json.loads((tiny_bundle / SIGNATURE_NAME).read_text())
    assert doc["algorithm"] == "ed25519" and doc["key_id"] == kid
    for trusted in ([public], [str(public)], [public.read_bytes()], [_raw(public)]):
        assert load(tiny_bundle, device="cpu", trusted_keys=trusted).manifest.family == "cnn"


def test_any_trusted_key_of_several_will_do(tiny_bundle, keys, tmp_path):
    private, public, _ = keys
    _, other, _ = generate_key_pair(tmp_path / "keys" / "other.key")
    sign_bundle(tiny_bundle, private)
    open_bundle(tiny_bundle, trusted_keys=[other, public])


def test_without_trusted_keys_nothing_changes(tiny_bundle, keys):
    load(tiny_bundle, device="cpu")                       # unsigned
    sign_bundle(tiny_bundle, keys[0])
    load(tiny_bundle, device="cpu")                       # signed, not asked about
    (tiny_bundle / SIGNATURE_NAME).write_text("garbage")
    load(tiny_bundle, device="cpu")                       # a broken signature nobody checks


def test_bad_trusted_keys_are_refused_with_the_reason(tiny_bundle, keys, tmp_path):
    sign_bundle(tiny_bundle, keys[0])
    with pytest.raises(ReelrtError, match="empty"):
        open_bundle(tiny_bundle, trusted_keys=[])
    with pytest.raises(ReelrtError, match="cannot read public key"):
        open_bundle(tiny_bundle, trusted_keys=[tmp_path / "missing.pub"])
    with pytest.raises(ReelrtError, match="not a PEM public key"):
        load_public_key(b"not a key")
    with pytest.raises(ReelrtError, match="not an unencrypted PEM private key"):
        sign_bundle(tiny_bundle, tmp_path / "keys" / "studio.key.pub")  # a public key is no private key


def test_sign_refuses_a_broken_bundle(tiny_bundle, keys):
    with open(tiny_bundle / "model.onnx", "ab") as f:
        f.write(b"\0")
    with pytest.raises(BundleError, match="oversized"):
        sign_bundle(tiny_bundle, keys[0])
    assert not (tiny_bundle / SIGNATURE_NAME).exists()


def test_rewriting_a_bundle_drops_its_signature(tiny_bundle, keys, tmp_path):
    """quantize and compile rewrite the manifest, so they must not carry a stale signature over."""
    sign_bundle(tiny_bundle, keys[0])
    bundle = open_bundle(tiny_bundle)
    with BundleWriter(tmp_path / "rewritten") as w:
        w.copy_artifacts(bundle)
        out = w.commit(bundle.manifest)
    assert not (out / SIGNATURE_NAME).exists()
    with pytest.raises(BundleError, match="unsigned"):
        open_bundle(out, trusted_keys=[keys[1]])


def test_cli_keygen_sign_verify(tiny_bundle, tmp_path, capsys):
    key = tmp_path / "cli.key"
    assert main(["keygen", "--out", str(key)]) == 0
    assert main(["sign", str(tiny_bundle), "--key", str(key)]) == 0
    assert main(["verify", str(tiny_bundle), "--key", f"{key}.pub"]) == 0
    assert "signature by a trusted key" in capsys.readouterr().out
    doc = json.loads((tiny_bundle / "manifest.json").read_text())
    doc["labels"] = ["x", "y", "z"]
    (tiny_bundle / "manifest.json").write_text(json.dumps(doc))
    assert main(["verify", str(tiny_bundle), "--key", f"{key}.pub"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "changed after it was signed" in err
    shutil.rmtree(tiny_bundle)
    assert main(["keygen", "--out", str(key)]) == 2
    assert "refusing to overwrite" in capsys.readouterr().err


def _raw(public_pem_path) -> bytes:
    from cryptography.hazmat.primitives import serialization
    return load_public_key(public_pem_path).public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
