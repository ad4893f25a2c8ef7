"""`reelrt quantize LSTM_BUNDLE --precision int8`: dynamic int8 for the LSTM and the head.

ONNX Runtime's dynamic quantization turns the LSTM op into DynamicQuantizeLSTM (int8
weights, activations quantized per step) and the head's matrix product into
MatMulInteger; the embedding table stays fp32 (a Gather reads one row per token, so int8
would only add a dequantize). Shape pre-processing runs first: quantize_dynamic's own
shape inference fails on graphs whose shapes are not all recorded. The result is checked
against the fp32 source bundle on real texts: the reference texts the bundle carries and its
held-out texts (accuracy of both, agreement); the write is refused outside the int8 tolerance.
Random ids are reported beside them but not gated: they drive the recurrent state into corners
that real text never reaches.
"""
from __future__ import annotations

import csv
import os
import tempfile
from pathlib import Path

import numpy as np

from reelrt.export.lstm import heldout_accuracy, onnx_logits
from reelrt.runtime.validation import QualityGate, compare, weights_are_random
from reelrt.quantize.derive import derive_bundle
from reelrt.runtime.bundle import Bundle
from reelrt.runtime.reference import reference_feeds
from reelrt.runtime.tasks.text import encode, load_tokenizer

OP_TYPES = ["LSTM", "MatMul", "Gemm"]
WEIGHT_TYPE = "QInt8"
# 7-bit weights, as for CNNs (quantize/cnn.py): uint8 activations x full-range int8 weights saturate
# in ONNX Runtime's kernels on x86 CPUs without VNNI; 7-bit ones are exact on every CPU class
REDUCE_RANGE = True


def quantize_onnx(src: Path, dst: Path) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.quantization.shape_inference import quant_pre_process

    with tempfile.TemporaryDirectory() as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        quant_pre_process(str(src), str(prepared))
        quantize_dynamic(str(prepared), str(dst), op_types_to_quantize=OP_TYPES,
                         weight_type=getattr(QuantType, WEIGHT_TYPE), reduce_range=REDUCE_RANGE)


def kept_float(model: Path) -> list[str]:
    """The recurrent layers the dynamic quantizer left in float (GRU: it has no integer kernel)."""
    import onnx

    return [n.name for n in onnx.load(str(model)).graph.node if n.op_type in ("GRU", "LSTM")]


def read_heldout(bundle: Bundle) -> list[tuple[str, str]]:
    name = bundle.manifest.extra.get("heldout")
    if not name:
        return []
    with open(bundle.path(name), newline="", encoding="utf-8") as f:
        return [(row["text"], row["label"]) for row in csv.DictReader(f)]


def reference_texts(bundle: Bundle) -> tuple[np.ndarray, np.ndarray]:
    """The real texts the bundle carries (reference/inputs.npz), as the graph's ids and lengths."""
    feeds = reference_feeds(bundle)
    return feeds["input_ids"], feeds["lengths"]


def random_inputs(vocab_size: int, max_length: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    lengths = rng.integers(1, max_length + 1, 16).astype(np.int32)
    ids = rng.integers(2, vocab_size, (16, max_length)).astype(np.int64)
    ids[np.arange(max_length)[None, :] >= lengths[:, None]] = 0
    return ids, lengths


def quantize_int8(src: Bundle, out: str | os.PathLike, *, accept_quality_loss: bool = False) -> Path:
    """Dynamic int8 of a text-classifier bundle into `out`, checked against the fp32 source."""
    gate = QualityGate(accept_quality_loss)
    tokenizer, max_length, pad_id = load_tokenizer(src)
    heldout = read_heldout(src)
    labels = src.manifest.labels
    trained = not weights_are_random(src.manifest)

    def model_pass(src_model: Path, dst_model: Path) -> dict:
        quantize_onnx(src_model, dst_model)
        kept = kept_float(dst_model)
        if kept:
            print(f"note: {', '.join(kept)} stay fp32 (ONNX Runtime quantizes LSTM layers dynamically, not GRU);"
                  " the head is int8")
        # gated on real texts only: random ids drive the recurrent state where real text never goes
        ids, lengths = reference_texts(src)
        facts = {"float_ops_kept": kept, "fp32_source_reference": gate.check(compare(
            onnx_logits(src_model, ids, lengths), onnx_logits(dst_model, ids, lengths)), "int8",
            "int8 vs fp32 on the reference texts", top1=trained).to_json()}
        if heldout:
            ids, lengths = encode(tokenizer, [text for text, _ in heldout], max_length, pad_id)
            facts["fp32_source_heldout"] = gate.check(compare(
                onnx_logits(src_model, ids, lengths), onnx_logits(dst_model, ids, lengths)), "int8",
                "int8 vs fp32 on the held-out texts", top1=trained).to_json()
            facts["heldout_accuracy_fp32"] = round(heldout_accuracy(src_model, tokenizer, heldout, labels, max_length), 4)
            facts["heldout_accuracy"] = round(heldout_accuracy(dst_model, tokenizer, heldout, labels, max_length), 4)
        ids, lengths = random_inputs(tokenizer.get_vocab_size(), max_length)
        facts["fp32_source_random_ids"] = compare(onnx_logits(src_model, ids, lengths),
                                                  onnx_logits(dst_model, ids, lengths)).to_json()  # reported, not gated
        return facts

    out = derive_bundle(src, out, "int8", model_pass,
                        settings={"method": "dynamic", "op_types": OP_TYPES, "weight_type": WEIGHT_TYPE,
                                  "pre_process": "onnxruntime quant_pre_process"}, gate=gate)
    report(out)
    return out


def report(out: Path) -> None:
    from reelrt.runtime.bundle import open_bundle
    bundle = open_bundle(out)
    v = bundle.manifest.validation
    size = lambda b: b.model_path.stat().st_size / 1e6
    ref = v["fp32_source_reference"]
    line = (f"int8 model {size(bundle):.2f} MB; vs fp32 {ref['relative_diff']:.2%} of the logit range on"
            f" {ref['samples']} reference texts ({v['fp32_source_random_ids']['relative_diff']:.2%} on random ids)")
    if "heldout_accuracy" in v:
        h = v["fp32_source_heldout"]
        line += (f"; held-out accuracy fp32 {v['heldout_accuracy_fp32']:.2%} -> int8 {v['heldout_accuracy']:.2%},"
                 f" top-1 agreement {h['top1_agreement']:.2%} over {h['samples']} texts")
    print(line)
