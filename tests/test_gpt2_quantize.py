"""GPT-2 int8/int4 weight-only quantization: graph, validation against fp32, quality report."""
from __future__ import annotations

import json

import onnx
import pytest
from conftest import quantize_bundle as quantize

from reelrt.export.gpt2_graph import expected_fused_counts, fused_counts
from reelrt.runtime import InputError, load


@pytest.fixture(scope="module")
def quantized(gpt2_tiny_bundle, tmp_path_factory):
    root = tmp_path_factory.mktemp("gpt2q")
    return {"int8": quantize(gpt2_tiny_bundle, root / "int8", "int8"),
            "int4": quantize(gpt2_tiny_bundle, root / "int4", "int4", block_size=16, accuracy_level=4)}


@pytest.mark.parametrize("precision", ["int8", "int4"])
def test_every_matmul_and_the_lm_head_are_weight_only_quantized(quantized, gpt2_tiny_bundle, precision):
    manifest = json.loads((quantized[precision] / "manifest.json").read_text())
    n_layer = manifest["extra"]["n_layer"]
    graph = onnx.load(str(quantized[precision] / "model.onnx"))
    assert not [n for n in graph.graph.node if n.op_type == "MatMul"]  # the LM head too
    counts = fused_counts(graph)
    assert counts == manifest["validation"]["fused_ops"]
    assert counts["MatMulNBits"] == 4 * n_layer + 1
    assert {k: counts[k] for k in expected_fused_counts(n_layer)} == expected_fused_counts(n_layer)
    assert counts["GatherBlockQuantized"] == 1  # the token embedding
    bits = {a.i for n in graph.graph.node if n.op_type == "MatMulNBits" for a in n.attribute if a.name == "bits"}
    assert bits == {int(precision[3:])}
    assert (quantized[precision] / "model.onnx.data").stat().st_size < (gpt2_tiny_bundle / "model.onnx.data").stat().st_size


def test_settings_and_quality_are_recorded(quantized):
    manifest = json.loads((quantized["int4"] / "manifest.json").read_text())
    settings = manifest["provenance"]["quantized_from"]["settings"]
    assert (settings["block_size"], settings["accuracy_level"], settings["bits"]) == (16, 4, 4)
    quality = manifest["validation"]["quality"]
    assert quality["perplexity_fp32"] > 1 and quality["perplexity_int4"] > 1
    assert quality["meaningful"] is False  # random weights: reported, not judged
    assert manifest["validation"]["against_fp32"]["relative_diff"] <= 0.25


@pytest.mark.parametrize("precision", ["int8", "int4"])
def test_quantized_bundles_generate(quantized, precision):
    gen = load(quantized[precision], threads=1)
    text = gen.generate("The object is", max_new_tokens=12)
    assert isinstance(text, str) and "".join(gen.stream("The object is", max_new_tokens=12)) == text


def test_bad_block_size_and_requantizing_are_refused(gpt2_tiny_bundle, quantized, tmp_path):
    with pytest.raises(InputError, match="block-size"):
        quantize(gpt2_tiny_bundle, tmp_path / "bad", "int4", block_size=24)
    with pytest.raises(InputError, match="already int4"):
        quantize(quantized["int4"], tmp_path / "again", "int8")
    assert not (tmp_path / "bad").exists()
