"""A generated corpus of hostile and broken bundles.

Each case takes a freshly written valid bundle of one kind ("image": a tiny CNN bundle,
"text": a tiny text-classification bundle, "generator": a tiny GPT-2 bundle, "signed": a tiny
CNN bundle signed by the corpus's publisher key, loaded with that key trusted) and damages it
the way a hostile or broken download would; CASES names the case, the refusal fragment it
must get and the kind of bundle it damages (a case for several kinds is registered once per
kind, as NAME for the first and NAME_KIND for the others). Nothing here is a hand-edited binary: run
`python tests/hostile_corpus.py DIR` to write the corpus to DIR.
"""
from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path
from typing import Callable

CASES: dict[str, tuple[Callable[[Path], None], str, str]] = {}


def case(expected: str, kinds: tuple[str, ...] = ("image",)):
    def register(fn: Callable[[Path], None]):
        for i, kind in enumerate(kinds):
            CASES[fn.__name__ if i == 0 else f"{fn.__name__}_{kind}"] = (fn, expected, kind)
        return fn
    return register


TEXT_KINDS = ("text", "generator")


def _manifest(bundle: Path) -> dict:
    return json.loads((bundle / "manifest.json").read_text())


def _save(bundle: Path, doc: dict) -> None:
    (bundle / "manifest.json").write_text(json.dumps(doc))


def _rehash(bundle: Path, rel: str) -> None:
    """Keep the manifest honest about a file we replaced, so only the intended flaw remains."""
    from reelrt.runtime.bundle import sha256_file
    doc = _manifest(bundle)
    for a in doc["artifacts"]:
        if a["path"] == rel:
            a.update(size=(bundle / rel).stat().st_size, sha256=sha256_file(bundle / rel))
    _save(bundle, doc)


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        out.append((n & 0x7F) | (0x80 if n > 0x7F else 0))
        n >>= 7
        if not n:
            return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _tensor_at(location: str) -> bytes:
    entry = _field(1, b"location") + _field(2, location.encode())
    return _field(8, b"w") + _field(13, entry) + _varint(14 << 3) + _varint(1)


def _model_with_tensor(tensor: bytes) -> bytes:
    return _field(7, _field(5, tensor))  # ModelProto.graph.initializer


# -- the manifest -----------------------------------------------------------------------

@case("escapes")
def manifest_path_traversal(b: Path) -> None:
    doc = _manifest(b)
    doc["artifacts"].append({"path": "../../etc/passwd", "size": 1, "sha256": "0" * 64})
    _save(b, doc)


@case("absolute")
def manifest_absolute_path(b: Path) -> None:
    doc = _manifest(b)
    doc["artifacts"].append({"path": "/etc/passwd", "size": 1, "sha256": "0" * 64})
    _save(b, doc)


@case("over the")
def manifest_absurd_size(b: Path) -> None:
    doc = _manifest(b)
    doc["provenance"]["padding"] = "x" * (8 * 1024 * 1024)
    _save(b, doc)


@case("nests deeper")
def manifest_absurd_depth(b: Path) -> None:
    (b / "manifest.json").write_text('{"format_version": 1, "extra": ' + "[" * 100000 + "]" * 100000 + "}")


@case("not valid JSON")
def manifest_not_json(b: Path) -> None:
    (b / "manifest.json").write_bytes(b"\x00PK\x03\x04 not json")


@case("which is not JSON")
def manifest_nan(b: Path) -> None:
    (b / "manifest.json").write_text((b / "manifest.json").read_text().replace('"labels": [', '"nan": NaN, "labels": [', 1))


@case("format_version")
def unknown_format_version(b: Path) -> None:
    doc = _manifest(b)
    doc["format_version"] = 7
    _save(b, doc)


@case("no format_version")
def missing_format_version(b: Path) -> None:
    doc = _manifest(b)
    del doc["format_version"]
    _save(b, doc)


@case("cannot serve task")
def wrong_family_task(b: Path) -> None:
    doc = _manifest(b)
    doc["task"] = "text-generation"
    _save(b, doc)


@case("absurd")
def absurd_dimensions(b: Path) -> None:
    doc = _manifest(b)
    doc["inputs"][0]["shape"] = [1 << 20, 1 << 20, 3, 4]
    _save(b, doc)


@case("listed twice")
def duplicate_artifact(b: Path) -> None:
    doc = _manifest(b)
    doc["artifacts"].append(dict(doc["artifacts"][0]))
    _save(b, doc)


@case("size must be")
def absurd_artifact_size(b: Path) -> None:
    doc = _manifest(b)
    doc["artifacts"][0]["size"] = 1 << 62
    _save(b, doc)


def _move_out_and_link(bundle: Path, rel: str) -> None:
    """Replace a file of the bundle by a symlink to the same bytes outside it."""
    outside = bundle.parent / f"{bundle.name}-outside-{rel.replace('/', '_')}"
    shutil.move(bundle / rel, outside)
    os.symlink(outside, bundle / rel)


@case("not a regular file")
def manifest_is_symlink(b: Path) -> None:
    _move_out_and_link(b, "manifest.json")


# -- the artifacts ----------------------------------------------------------------------

@case("sha256")
def checksum_mismatch(b: Path) -> None:
    data = bytearray((b / "model.onnx").read_bytes())
    data[len(data) // 2] ^= 0x55
    (b / "model.onnx").write_bytes(bytes(data))


@case("truncated")
def truncated_model(b: Path) -> None:
    data = (b / "model.onnx").read_bytes()
    (b / "model.onnx").write_bytes(data[: len(data) // 2])


@case("truncated")
def zero_byte_model(b: Path) -> None:
    (b / "model.onnx").write_bytes(b"")


@case("empty")
def zero_byte_model_recorded_as_such(b: Path) -> None:
    (b / "model.onnx").write_bytes(b"")
    _rehash(b, "model.onnx")


@case("oversized")
def oversized_model(b: Path) -> None:
    with open(b / "model.onnx", "ab") as f:
        f.write(b"\0" * 4096)


@case("missing")
def missing_model(b: Path) -> None:
    (b / "model.onnx").unlink()


@case("symlink")
def symlink_out_of_bundle(b: Path) -> None:
    _move_out_and_link(b, "model.onnx")


@case("corrupt")
def corrupt_protobuf(b: Path) -> None:
    (b / "model.onnx").write_bytes(_varint(7 << 3 | 2) + _varint(1 << 40) + b"\0" * 32)
    _rehash(b, "model.onnx")


@case("external-data location")
def external_data_traversal(b: Path) -> None:
    (b / "model.onnx").write_bytes(_model_with_tensor(_tensor_at("../../../etc/passwd")))
    _rehash(b, "model.onnx")


@case("external-data location")
def external_data_absolute(b: Path) -> None:
    (b / "model.onnx").write_bytes(_model_with_tensor(_tensor_at("/etc/shadow")))
    _rehash(b, "model.onnx")


@case("not a listed artifact")
def external_data_undeclared(b: Path) -> None:
    (b / "model.onnx").write_bytes(_model_with_tensor(_tensor_at("weights.bin")))
    _rehash(b, "model.onnx")


@case("names no location")
def external_data_without_location(b: Path) -> None:
    (b / "model.onnx").write_bytes(_model_with_tensor(_field(8, b"w") + _varint(14 << 3) + _varint(1)))
    _rehash(b, "model.onnx")


@case("nests deeper")
def onnx_nesting_bomb(b: Path) -> None:
    graph = _field(5, _tensor_at("x.bin"))
    for _ in range(200):  # graph -> node -> attribute -> graph -> ...
        graph = _field(1, _field(5, _field(6, graph)))
    (b / "model.onnx").write_bytes(_field(7, graph))
    _rehash(b, "model.onnx")


# -- the tokenizer of a text bundle ------------------------------------------------------

def _replace_tokenizer(b: Path, data: bytes) -> None:
    (b / "tokenizer.json").write_bytes(data)
    _rehash(b, "tokenizer.json")


@case("tokenizer", kinds=TEXT_KINDS)
def tokenizer_not_json(b: Path) -> None:
    _replace_tokenizer(b, b"\x89PNG\r\n\x1a\n not a tokenizer")


@case("tokenizer", kinds=TEXT_KINDS)
def tokenizer_empty_object(b: Path) -> None:
    _replace_tokenizer(b, b"{}")


@case("tokenizer", kinds=TEXT_KINDS)
def tokenizer_unknown_model_type(b: Path) -> None:
    doc = json.loads((b / "tokenizer.json").read_text())
    doc["model"]["type"] = "Pickle"
    _replace_tokenizer(b, json.dumps(doc).encode())


@case("tokenizer", kinds=TEXT_KINDS)
def tokenizer_vocab_of_wrong_type(b: Path) -> None:
    doc = json.loads((b / "tokenizer.json").read_text())
    doc["model"]["vocab"] = [["a", "b"]] * 3
    _replace_tokenizer(b, json.dumps(doc).encode())


@case("tokenizer", kinds=TEXT_KINDS)
def tokenizer_is_a_list(b: Path) -> None:
    _replace_tokenizer(b, b"[1, 2, 3]")


@case("not among the bundle.s artifacts", kinds=TEXT_KINDS)
def tokenizer_not_an_artifact(b: Path) -> None:
    doc = _manifest(b)
    doc["tokenizer"]["path"] = "other.json"
    _save(b, doc)


@case("escapes", kinds=TEXT_KINDS)
def tokenizer_path_traversal(b: Path) -> None:
    doc = _manifest(b)
    doc["tokenizer"]["path"] = "../tokenizer.json"
    _save(b, doc)


# -- signatures (bundles of kind "signed", loaded with the publisher's key trusted) ----------

PUBLISHER = "publisher.key"


def publisher_key(root: Path) -> Path:
    """The public key the "signed" cases under `root` are loaded with."""
    return root / "keys" / f"{PUBLISHER}.pub"


def signed_maker(make: Callable[[Path], Path], root: Path) -> Callable[[Path], Path]:
    """A maker of bundles signed by the corpus's publisher key (made under root/keys once)."""
    from reelrt.runtime.bundle.signing import generate_key_pair, sign_bundle
    (root / "keys").mkdir(parents=True, exist_ok=True)
    if not (root / "keys" / PUBLISHER).exists():
        generate_key_pair(root / "keys" / PUBLISHER)

    def maker(out: Path) -> Path:
        bundle = make(out)
        sign_bundle(bundle, root / "keys" / PUBLISHER)
        return bundle
    return maker


def _resign_with_another_key(bundle: Path) -> dict:
    """Sign the bundle with a key nobody trusts; return the publisher's signature document it replaced."""
    from reelrt.runtime.bundle.signing import generate_key_pair, sign_bundle
    original = json.loads((bundle / "manifest.sig").read_text())
    other = bundle.parent / f"{bundle.name}-stranger.key"
    generate_key_pair(other)
    sign_bundle(bundle, other)
    return original


@case("unsigned", kinds=("signed",))
def signature_removed(b: Path) -> None:
    (b / "manifest.sig").unlink()


@case("not among the trusted keys", kinds=("signed",))
def signed_by_another_key(b: Path) -> None:
    _resign_with_another_key(b)


@case("changed after it was signed", kinds=("signed",))
def signed_key_id_forged(b: Path) -> None:
    """Another key's signature, labelled with the publisher's key id."""
    original = _resign_with_another_key(b)
    doc = json.loads((b / "manifest.sig").read_text())
    doc["key_id"] = original["key_id"]
    (b / "manifest.sig").write_text(json.dumps(doc))


@case("changed after it was signed", kinds=("signed",))
def signed_manifest_edited(b: Path) -> None:
    doc = _manifest(b)
    doc["labels"] = ["cat", "dog", "car"]
    _save(b, doc)


@case("changed after it was signed", kinds=("signed",))
def signed_model_replaced_and_rehashed(b: Path) -> None:
    data = bytearray((b / "model.onnx").read_bytes())
    data[len(data) // 2] ^= 0x55
    (b / "model.onnx").write_bytes(bytes(data))
    _rehash(b, "model.onnx")


@case("sha256", kinds=("signed",))
def signed_model_modified(b: Path) -> None:
    checksum_mismatch(b)


@case("malformed", kinds=("signed",))
def signature_not_json(b: Path) -> None:
    (b / "manifest.sig").write_bytes(b"\x00\x01 not a signature")


@case("64 bytes", kinds=("signed",))
def signature_truncated(b: Path) -> None:
    doc = json.loads((b / "manifest.sig").read_text())
    doc["signature"] = doc["signature"][:40]
    (b / "manifest.sig").write_text(json.dumps(doc))


@case("over the", kinds=("signed",))
def signature_oversized(b: Path) -> None:
    doc = json.loads((b / "manifest.sig").read_text())
    doc["padding"] = "x" * 8192
    (b / "manifest.sig").write_text(json.dumps(doc))


@case("not a regular file", kinds=("signed",))
def signature_is_symlink(b: Path) -> None:
    _move_out_and_link(b, "manifest.sig")


@case("cannot be an artifact")
def signature_listed_as_artifact(b: Path) -> None:
    doc = _manifest(b)
    doc["artifacts"].append({"path": "manifest.sig", "size": 1, "sha256": "0" * 64})
    _save(b, doc)


def generate(root: Path, makers: dict[str, Callable[[Path], Path]]) -> dict[str, tuple[Path, str]]:
    """Write every case under root, each from a fresh valid bundle of its kind (makers: kind ->
    writer of a valid bundle); return name -> (bundle path, expected refusal fragment)."""
    corpus = {}
    for name, (damage, expected, kind) in CASES.items():
        bundle = makers[kind](root / name)
        damage(bundle)
        corpus[name] = (bundle, expected)
    return corpus


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).parent))
    from conftest import make_tiny_bundle, make_tiny_text_bundle

    from reelrt.export.gpt2 import export
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "hostile-bundles")
    makers = {"image": make_tiny_bundle, "text": make_tiny_text_bundle,
              "generator": lambda path: export(path, config="tiny", threads=1),
              "signed": signed_maker(make_tiny_bundle, out)}
    for name, (path, expected) in generate(out, makers).items():
        trusted = f" with trusted key {publisher_key(out)}" if CASES[name][2] == "signed" else ""
        print(f"{name:<36} {path}  (must be refused{trusted}: ...{expected}...)")
