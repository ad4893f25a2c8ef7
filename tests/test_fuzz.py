"""Property-based runs of the fuzz targets, seeded with valid and near-valid inputs."""
from __future__ import annotations

import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fuzz_targets import fuzz_manifest, fuzz_onnx_scan
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
