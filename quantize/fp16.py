"""fp16 for any family: weights and arithmetic in half precision, inputs and outputs kept fp32.

Keeping the graph's inputs and outputs fp32 (casts at the edges) means a client feeds the
same arrays to an fp16 bundle as to an fp32 one, whatever the family. fp16 pays off on
GPUs (TensorRT, CUDA); on most CPUs ONNX Runtime computes it slower than fp32.
Validation runs the source and the fp16 graph on the bundle's reference inputs (real images,
texts or a prompt's prefill, runtime/reference.py); a bundle without a reference set is refused.
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np

from reelrt.runtime.bundle import Bundle
from reelrt.runtime.reference import reference_feeds
from reelrt.runtime.validation import weights_are_random


def quantize_fp16(src: Bundle, args: argparse.Namespace) -> Path:
    """`reelrt quantize BUNDLE --precision fp16 --out DIR`."""
    from reelrt.quantize.derive import derive_bundle

    def model_pass(src_model: Path, dst_model: Path) -> dict:
        convert_fp16(src_model, dst_model)
        return validate_fp16(src, src_model, dst_model)

    out = derive_bundle(src, args.out, "fp16", model_pass, {"io": "float32", "tool": "onnxconverter-common"})
    return out


def convert_fp16(src_model: Path, dst_model: Path) -> None:
    import onnx
    from onnxconverter_common import float16

    model = float16.convert_float_to_float16(onnx.load(str(src_model)), keep_io_types=True)
    large = model.ByteSize() > (1 << 31) - (1 << 26)
    onnx.save_model(model, str(dst_model), save_as_external_data=large, location=dst_model.name + ".data")


def validate_fp16(src: Bundle, fp32_model: Path, fp16_model: Path) -> dict:
    """Compare every output of the fp16 graph with the fp32 source; raise ValidationError out of tolerance."""
    import onnxruntime as ort

    from reelrt.runtime.validation import check, compare

    feeds, what, top1 = reference_feeds(src), "reference inputs", not weights_are_random(src.manifest)
    sessions = [ort.InferenceSession(str(m), providers=["CPUExecutionProvider"]) for m in (fp32_model, fp16_model)]
    reference, candidate = (s.run(None, feeds) for s in sessions)
    names = [o.name for o in sessions[0].get_outputs()]
    report = {"reference": "fp32 source bundle (onnxruntime)", "precision": "fp16", "inputs": what,
              "size_bytes": {"fp32": model_bytes(fp32_model), "fp16": model_bytes(fp16_model)}}
    for name, r, c in zip(names, reference, candidate):
        report[name] = check(compare(r, c), "fp16", f"fp16 output {name!r} on {what}", top1=top1).to_json()
    print(f"fp16: {report['size_bytes']['fp32'] / 1e6:.2f} MB -> {report['size_bytes']['fp16'] / 1e6:.2f} MB;"
          f" {names[0]} max |diff| {report[names[0]]['max_abs_diff']:.3g}, top-1 agreement"
          f" {report[names[0]]['top1_agreement']:.2%} on {what}")
    return report


def model_bytes(model: Path) -> int:
    """The graph's size on disk, its external weights included."""
    data = model.with_name(model.name + ".data")
    return os.path.getsize(model) + (os.path.getsize(data) if data.is_file() else 0)
