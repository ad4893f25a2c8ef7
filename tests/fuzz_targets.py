"""Fuzz targets: functions of raw bytes that must either succeed or raise the runtime's
typed error, never anything else.

The tests drive them with hypothesis; for a longer coverage-guided run install atheris
and run `python tests/fuzz_targets.py manifest|onnx|tokenizer`.
"""
from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from reelrt.runtime.bundle import Bundle
from reelrt.runtime.errors import BundleError, InputError
from reelrt.runtime.bundle.manifest import Artifact, Manifest, TensorSpec, parse_manifest
from reelrt.runtime.bundle.onnx_scan import external_data_locations
from reelrt.runtime.tasks.text import encode, load_tokenizer


def fuzz_manifest(data: bytes) -> None:
    try:
        manifest = parse_manifest(data)
    except BundleError:
        return
    # whatever parses must serialise and parse back to the same thing
    assert parse_manifest(manifest.dumps().encode()).to_json() == manifest.to_json()


def fuzz_onnx_scan(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as d:
        path = Path(d, "model.onnx")
        path.write_bytes(data)
        try:
            locations = external_data_locations(path)
        except BundleError:
            return
        assert all(isinstance(x, str) for x in locations)


def _text_bundle(root: Path) -> Bundle:
    """A text-classification Bundle whose only file is root/tokenizer.json (nothing else is read)."""
    return Bundle(root, Manifest(
        family="lstm", task="text-classification", precision="fp32", model="model.onnx",
        inputs=[TensorSpec("input_ids", "int64", ("batch", "sequence")), TensorSpec("lengths", "int32", ("batch",))],
        outputs=[TensorSpec("logits", "float32", ("batch", 2))],
        artifacts={"tokenizer.json": Artifact("tokenizer.json", 1, "0" * 64)},
        tokenizer={"path": "tokenizer.json", "max_length": 16, "pad_id": 0}))


def fuzz_tokenizer(data: bytes, text: str = "the cat sat on the mat") -> None:
    """The runtime's tokenizer path: tokenizer.json bytes are refused with BundleError or give a
    tokenizer that encodes any text to ids it knows, or refuses the text with InputError."""
    with tempfile.TemporaryDirectory() as d:
        Path(d, "tokenizer.json").write_bytes(data)
        try:
            tokenizer, max_length, pad_id = load_tokenizer(_text_bundle(Path(d)))
        except BundleError:
            return
    try:
        ids, lengths = encode(tokenizer, [text, "a " + text], max_length, pad_id)
    except InputError:
        return
    assert ids.shape[0] == 2 and 1 <= lengths.min() and lengths.max() <= min(ids.shape[1], max_length)
    assert 0 <= ids.min() and ids.max() < max(tokenizer.get_vocab_size(with_added_tokens=True), pad_id + 1)


TARGETS = {"manifest": fuzz_manifest, "onnx": fuzz_onnx_scan, "tokenizer": fuzz_tokenizer}

if __name__ == "__main__":
    import atheris  # optional: pip install atheris
    target = TARGETS[sys.argv.pop(1)]
    atheris.Setup(sys.argv, target)
    atheris.Fuzz()
