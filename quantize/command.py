"""`reelrt quantize`: pick the pass for the bundle's family and the asked precision."""
from __future__ import annotations

import argparse
import importlib

from reelrt.parsing import command, positive_int

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
    from reelrt.runtime.bundle import open_bundle
    from reelrt.runtime.errors import InputError

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


def add_parsers(sub) -> None:
    """`reelrt quantize`."""
    p = command(sub, "quantize", "reelrt.quantize.command:main", "write a lower-precision copy of a bundle",
                "Read a bundle, write a new bundle at a lower precision, validate it against the source and report"
                " size, agreement and (for trained models) accuracy.")
    p.add_argument("bundle", help="source bundle directory (fp32)")
    p.add_argument("--precision", required=True, choices=["int8", "int4", "fp16"])
    p.add_argument("--out", required=True, help="bundle directory to write")
    p.add_argument("--calibration", help="CNN int8: folder of images or an .npy array (N,H,W,3 uint8 or N,C,H,W float)")
    p.add_argument("--method", choices=["minmax", "percentile", "entropy"], default=None,
                   help="CNN int8 calibration method (default: the family's measured best)")
    p.add_argument("--block-size", type=positive_int, default=None,
                   help="int4/int8 weight-only: weights per quantization block (default: the family's measured best)")
    p.add_argument("--accuracy-level", type=int, default=None, choices=[0, 1, 2, 3, 4],
                   help="int4: MatMulNBits compute precision (4 = int8 activations, fastest on x86)")
