"""Which pass quantizes which family to which precision, and the one typed entry that picks it.

    from reelrt.quantize.passes import quantize
    quantize(open_bundle("bundles/gpt2"), "bundles/gpt2-int4", "int4", block_size=32)

`reelrt quantize` is this function behind argparse.
"""
from __future__ import annotations

import importlib
import os
from pathlib import Path

from reelrt.runtime.bundle import Bundle
from reelrt.runtime.errors import InputError

# (family, precision) -> ("module:function", the options it takes beyond the source, the output
# path and accept_quality_loss); each function is typed: f(src: Bundle, out, *, option=...) -> Path
WEIGHT_ONLY = ("block_size", "accuracy_level")
PASSES = {
    ("cnn", "int8"): ("reelrt.quantize.cnn:quantize_int8", ("calibration", "method")),
    ("cnn", "fp16"): ("reelrt.quantize.fp16:quantize_fp16", ()),
    ("lstm", "int8"): ("reelrt.quantize.lstm:quantize_int8", ()),
    ("lstm", "fp16"): ("reelrt.quantize.fp16:quantize_fp16", ()),
    ("gpt2", "int8"): ("reelrt.quantize.gpt2:quantize_int8", WEIGHT_ONLY),
    ("gpt2", "int4"): ("reelrt.quantize.gpt2:quantize_int4", WEIGHT_ONLY),
    ("gpt2", "fp16"): ("reelrt.quantize.fp16:quantize_fp16", ()),
}
OPTIONS = ("calibration", "method", "block_size", "accuracy_level")


def quantize(src: Bundle, out: str | os.PathLike, precision: str, *, accept_quality_loss: bool = False,
             **options) -> Path:
    """Write `src` (an fp32 bundle) at `precision` into `out` with its family's pass; options left
    None take the pass's defaults, and one the pass does not take is an InputError."""
    if src.manifest.precision != "fp32":
        raise InputError(f"{src.root} is already {src.manifest.precision}; quantize an fp32 bundle")
    key = (src.manifest.family, precision)
    if key not in PASSES:
        supported = sorted(p for f, p in PASSES if f == src.manifest.family)
        raise InputError(f"{src.manifest.family} bundles quantize to {supported}, not {precision}")
    target, takes = PASSES[key]
    if unknown := sorted(set(options) - set(OPTIONS)):
        raise InputError(f"unknown quantize options {unknown}")
    given = {name: value for name, value in options.items() if value is not None}
    if stray := sorted(set(given) - set(takes)):
        raise InputError(f"{', '.join('--' + n.replace('_', '-') for n in stray)} does not apply to"
                         f" {src.manifest.family} {precision}")
    module, func = target.split(":")
    return getattr(importlib.import_module(module), func)(src, out, accept_quality_loss=accept_quality_loss, **given)
