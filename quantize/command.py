"""`reelrt quantize`: pick the pass for the bundle's family and the asked precision."""
from __future__ import annotations

import argparse
import importlib

from reelrt.runtime.bundle import open_bundle
from reelrt.runtime.errors import InputError

# (family, precision) -> "module:function(src: Bundle, args) -> Path of the written bundle"
PASSES = {
    ("cnn", "int8"): "reelrt.quantize.cnn:quantize_int8",
    ("cnn", "fp16"): "reelrt.quantize.fp16:quantize_fp16",
    ("lstm", "int8"): "reelrt.quantize.lstm:quantize_int8",
    ("lstm", "fp16"): "reelrt.quantize.fp16:quantize_fp16",
    ("gpt2", "int8"): "reelrt.quantize.gpt2:quantize_int8",
    ("gpt2", "int4"): "reelrt.quantize.gpt2:quantize_int4",
    ("gpt2", "fp16"): "reelrt.quantize.fp16:quantize_fp16",
}


def main(args: argparse.Namespace) -> int:
    src = open_bundle(args.bundle)
    if src.manifest.precision != "fp32":
        raise InputError(f"{args.bundle} is already {src.manifest.precision}; quantize an fp32 bundle")
    key = (src.manifest.family, args.precision)
    if key not in PASSES:
        supported = sorted(p for f, p in PASSES if f == src.manifest.family)
        raise InputError(f"{src.manifest.family} bundles quantize to {supported}, not {args.precision}")
    module, func = PASSES[key].split(":")
    out = getattr(importlib.import_module(module), func)(src, args)
    print(f"wrote {out}")
    return 0
