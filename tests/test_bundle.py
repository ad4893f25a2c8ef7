"""Bundle format v1: the writer's atomicity and every refusal of the reader."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from conftest import make_tiny_bundle
from reelrt.runtime import BundleError, InputError, Model, open_bundle, verify_bundle
from reelrt.runtime.bundle import BundleWriter, sha256_file
from reelrt.runtime.bundle.manifest import FORMAT_VERSION, Manifest, TensorSpec


def edit_manifest(bundle: Path, **changes) -> None:
    doc = json.loads((bundle / "manifest.json").read_text())
    doc.update(changes)
    (bundle / "manifest.json").write_text(json.dumps(doc))


def refuses(bundle: Path, match: str) -> None:
    with pytest.raises(BundleError, match=match):
        open_bundle(bundle)


def test_roundtrip_and_run(tiny_bundle):
    bundle = open_bundle(tiny_bundle)
    m = bundle.manifest
    assert (m.family, m.task, m.precision, m.format_version) == ("cnn", "image-classification", "fp32", FORMAT_VERSION)
    assert m.inputs[0].shape == ("batch", 3, 4, 4)
    art = m.artifacts["model.onnx"]
    assert art.size == (tiny_bundle / "model.onnx").stat().st_size
    assert art.sha256 == sha256_file(tiny_bundle / "model.onnx")
    assert "written_at" in m.provenance
    out = Model(bundle, device="cpu").run({"pixels": np.ones((2, 3, 4, 4), np.float32)})
    assert out["logits"].shape == (2, 3)


def test_model_checks_inputs(tiny_bundle):
    model = Model(open_bundle(tiny_bundle), device="cpu")
    with pytest.raises(InputError, match="dtype float32"):
        model.run({"pixels": np.ones((1, 3, 4, 4), np.float64)})
    with pytest.raises(InputError, match="rank 4"):
        model.run({"pixels": np.ones((3, 4, 4), np.float32)})
    with pytest.raises(InputError, match="axis 2 must be 4"):
        model.run({"pixels": np.ones((1, 3, 5, 4), np.float32)})
    with pytest.raises(InputError, match="exactly"):
        model.run({"image": np.ones((1, 3, 4, 4), np.float32)})


@pytest.mark.parametrize("doc, match", [
    (b"{not json", "not valid JSON"),
    (b"[1, 2]", "JSON object"),
    (b"\xff\xfe", "not UTF-8"),
    (b"[" * 10000 + b"]" * 10000, "nests deeper"),
    (json.dumps({"family": "cnn"}).encode(), "no format_version"),
])
def test_refuses_malformed_manifest(tiny_bundle, doc, match):
    (tiny_bundle / "manifest.json").write_bytes(doc)
    refuses(tiny_bundle, match)


@pytest.mark.parametrize("version", [2, 0, "1", None, 1.0])
def test_refuses_unknown_format_version(tiny_bundle, version):
    edit_manifest(tiny_bundle, format_version=version)
    refuses(tiny_bundle, "format_version")


@pytest.mark.parametrize("changes, match", [
    ({"family": "resnet"}, "unknown model family"),
    ({"task": "text-generation"}, "cannot serve task"),
    ({"precision": "int3"}, "unknown precision"),
    ({"inputs": [{"name": "pixels", "dtype": "float32", "shape": [1 << 20, 1 << 20, 3, 4]}]}, "absurd"),
    ({"inputs": [{"name": "pixels", "dtype": "float32", "shape": [-1, 3]}]}, "outside"),
    ({"inputs": [{"name": "pixels", "dtype": "complex", "shape": [1]}]}, "unknown dtype"),
    ({"inputs": []}, "at least one input"),
    ({"model": "other.onnx"}, "not among"),
    ({"labels": [1, 2]}, "list of strings"),
])
def test_refuses_bad_fields(tiny_bundle, changes, match):
    edit_manifest(tiny_bundle, **changes)
    refuses(tiny_bundle, match)


@pytest.mark.parametrize("path", ["../model.onnx", "/etc/passwd", "a/../../x", "./model.onnx", "C:/x", "a\\b"])
def test_refuses_paths_outside(tiny_bundle, path):
    doc = json.loads((tiny_bundle / "manifest.json").read_text())
    doc["artifacts"].append({"path": path, "size": 1, "sha256": "0" * 64})
    (tiny_bundle / "manifest.json").write_text(json.dumps(doc))
    refuses(tiny_bundle, "path")


def test_refuses_checksum_mismatch_even_after_trust(tiny_bundle):
    open_bundle(tiny_bundle)  # full check, writes the trust record
    model = tiny_bundle / "model.onnx"
    data = bytearray(model.read_bytes())
    data[-1] ^= 0xFF
    model.write_bytes(bytes(data))  # same size; mtime and ctime change
    refuses(tiny_bundle, "sha256")
    with pytest.raises(BundleError, match="sha256"):
        verify_bundle(tiny_bundle)


def test_trusted_bundle_skips_hashing(tiny_bundle, monkeypatch):
    open_bundle(tiny_bundle)
    calls = []
    import reelrt.runtime.bundle.reader as b
    monkeypatch.setattr(b, "sha256_file", lambda p: calls.append(p) or "x")
    open_bundle(tiny_bundle)
    assert calls == []
    with pytest.raises(BundleError, match="sha256"):
        open_bundle(tiny_bundle, verify="always")  # hashes again, and the fake digest fails
    assert calls


def test_refuses_symlinked_directory(tmp_path):
    bundle = make_tiny_bundle(tmp_path / "b", external="weights/w.bin")
    real = tmp_path / "elsewhere"
    shutil.move(bundle / "weights", real)
    os.symlink(real, bundle / "weights")
    refuses(bundle, "symlink")


def test_external_data_inside_is_accepted(tmp_path):
    bundle = make_tiny_bundle(tmp_path / "ext", external="model.onnx.data")
    assert set(open_bundle(bundle).manifest.artifacts) >= {"model.onnx", "model.onnx.data"}
    out = Model(open_bundle(bundle), device="cpu").run({"pixels": np.ones((1, 3, 4, 4), np.float32)})
    assert out["logits"].shape == (1, 3)


@pytest.mark.parametrize("location", ["../secret.bin", "/etc/passwd", "sub/../../x.bin", "undeclared.bin"])
def test_refuses_external_data_outside(tmp_path, location):
    from conftest import write_tiny_onnx
    bundle = make_tiny_bundle(tmp_path / "ext", external="model.onnx.data")
    # rewrite the model so its weight points elsewhere, keep the manifest's checksums honest
    import onnx
    model = onnx.load(str(bundle / "model.onnx"), load_external_data=False)
    for entry in model.graph.initializer[0].external_data:
        if entry.key == "location":
            entry.value = location
    onnx.save_model(model, str(bundle / "model.onnx"))
    doc = json.loads((bundle / "manifest.json").read_text())
    for a in doc["artifacts"]:
        if a["path"] == "model.onnx":
            a["size"] = (bundle / "model.onnx").stat().st_size
            a["sha256"] = sha256_file(bundle / "model.onnx")
    (bundle / "manifest.json").write_text(json.dumps(doc))
    refuses(bundle, "external")


def test_not_a_bundle(tmp_path):
    refuses(tmp_path / "nothing", "no such directory")
    refuses(tmp_path, "no manifest.json")


def test_writer_failure_leaves_nothing_and_keeps_previous(tmp_path):
    out = make_tiny_bundle(tmp_path / "b")
    before = (out / "manifest.json").read_bytes()
    with pytest.raises(RuntimeError):
        with BundleWriter(out) as w:
            (w.dir / "model.onnx").write_bytes(b"half")
            raise RuntimeError("interrupted")
    assert (out / "manifest.json").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b"]
    open_bundle(out)


def test_writer_replaces_existing_bundle(tmp_path):
    out = make_tiny_bundle(tmp_path / "b")
    (out / "stale.txt").write_text("from the old bundle")
    make_tiny_bundle(out)
    assert not (out / "stale.txt").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b"]


def test_writer_sweeps_leftovers_of_killed_writers(tmp_path):
    dead = tmp_path / ".b.tmp-999999999-abc"
    dead.mkdir()
    make_tiny_bundle(tmp_path / "b")
    assert not dead.exists()


def test_writer_refuses_missing_model(tmp_path):
    with pytest.raises(BundleError, match="not written"):
        with BundleWriter(tmp_path / "b") as w:
            w.commit(Manifest(family="cnn", task="image-classification", precision="fp32", model="model.onnx",
                              inputs=[TensorSpec("x", "float32", (1,))], outputs=[TensorSpec("y", "float32", (1,))],
                              artifacts={}))
    assert not (tmp_path / "b").exists()


def modes(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): oct(p.stat().st_mode & 0o777) for p in [root, *root.rglob("*")]}


@pytest.mark.parametrize("umask, dirs, files", [(0o022, 0o755, 0o644), (0o077, 0o700, 0o600)])
def test_bundles_take_the_modes_the_umask_asks_for(tmp_path, umask, dirs, files):
    """A written bundle is readable by whoever the caller's umask lets read it (mkdtemp alone
    would make it owner-only), for a fresh bundle and for one rewritten from another's files."""
    old = os.umask(umask)
    try:
        first = make_tiny_bundle(tmp_path / "fresh", external="weights/model.onnx.data")
        fresh = modes(first)
        os.chmod(first / "model.onnx", 0o400)  # a stricter source file is copied with the umask's mode
        source = open_bundle(first, verify="never")
        with BundleWriter(tmp_path / "copy") as w:
            w.copy_artifacts(source)
            copied = modes(w.commit(source.manifest))
    finally:
        os.umask(old)
    for found in (fresh, copied):
        want = {rel: oct(dirs if rel in (".", "weights", "reference") else files) for rel in found}
        assert found == want and {"weights", "reference", "model.onnx", "manifest.json"} <= set(found)
