"""Property-based runs of the fuzz targets, seeded with valid and near-valid inputs."""
from __future__ import annotations

import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fuzz_targets import fuzz_manifest, fuzz_onnx_scan, fuzz_tokenizer
from hostile_corpus import _field, _tensor_at, _varint

FAST = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

VALID = {
    "format_version": 1, "family": "cnn", "task": "image-classification", "precision": "fp32",
    "model": "model.onnx", "inputs": [{"name": "pixels", "dtype": "float32", "shape": ["batch", 3, 4, 4]}],
    "outputs": [{"name": "logits", "dtype": "float32", "shape": ["batch", 3]}],
    "artifacts": [{"path": "model.onnx", "size": 10, "sha256": "a" * 64}],
}

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=20)


@FAST
@given(st.binary(max_size=2048))
def test_manifest_parser_on_random_bytes(data):
    fuzz_manifest(data)


@FAST
@given(st.sampled_from(sorted(VALID)), json_values)
def test_manifest_parser_on_mutated_valid_manifest(key, value):
    fuzz_manifest(json.dumps({**VALID, key: value}).encode())


def test_valid_seed_parses():
    fuzz_manifest(json.dumps(VALID).encode())


@FAST
@given(st.binary(max_size=2048))
def test_onnx_scan_on_random_bytes(data):
    fuzz_onnx_scan(data)


@FAST
@given(st.text(max_size=40), st.integers(0, 40), st.binary(max_size=64))
def test_onnx_scan_on_mutated_tensors(location, cut, noise):
    model = _field(7, _field(5, _tensor_at(location))) + noise
    fuzz_onnx_scan(model[: len(model) - cut] if cut < len(model) else model)
    fuzz_onnx_scan(_varint(7 << 3 | 2) + _varint(len(noise)) + noise)


# -- the tokenizer path -------------------------------------------------------------------

def _valid_tokenizer() -> dict:
    from reelrt.models.lstm import train_tokenizer
    texts = ["the cat sat on the mat", "dogs chase cats", "the ship warped away", "captain on the bridge"] * 3
    return json.loads(train_tokenizer(texts, 40).to_str())


TOKENIZER = _valid_tokenizer()
# any text, lone surrogates (not valid UTF-8) and control characters included
any_text = st.text(st.characters(codec=None, exclude_categories=()), max_size=200)


def test_valid_tokenizer_seed_encodes():
    fuzz_tokenizer(json.dumps(TOKENIZER).encode())


@FAST
@given(st.binary(max_size=512), any_text)
def test_tokenizer_on_random_bytes(data, text):
    fuzz_tokenizer(data, text)


@FAST
@given(st.sampled_from(sorted(TOKENIZER)), st.sampled_from([None, *sorted(TOKENIZER["model"])]), json_values, any_text)
def test_tokenizer_on_mutated_valid_json(key, model_key, value, text):
    doc = json.loads(json.dumps(TOKENIZER))
    if key == "model" and model_key is not None:
        doc["model"][model_key] = value
    else:
        doc[key] = value
    fuzz_tokenizer(json.dumps(doc).encode(), text)


@FAST
@given(any_text)
def test_encoding_arbitrary_text(text):
    fuzz_tokenizer(json.dumps(TOKENIZER).encode(), text)
