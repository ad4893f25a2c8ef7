"""`reelrt quantize`: the command line of quantize/passes.py."""
from __future__ import annotations

import argparse

from reelrt.parsing import command, positive_int


def main(args: argparse.Namespace) -> int:
    from reelrt.quantize.passes import OPTIONS, quantize
    from reelrt.runtime.bundle import open_bundle

    out = quantize(open_bundle(args.bundle), args.out, args.precision,
                   accept_quality_loss=getattr(args, "accept_quality_loss", False),
                   **{name: getattr(args, name, None) for name in OPTIONS})
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
    p.add_argument("--accept-quality-loss", action="store_true",
                   help="write the bundle even when it fails its quality gate; the failed gate is recorded in the"
                        " manifest and shown by `reelrt inspect`")
