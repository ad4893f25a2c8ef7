"""The `reelrt` command: a thin dispatcher.

Each stage's command.py declares its subcommands and imports nothing heavy; each subcommand
names the function that serves it as "module:function", imported only when that subcommand
runs, so `reelrt run` and `reelrt compile` start without torch.
"""
from __future__ import annotations

import argparse
import importlib
import sys

from reelrt import __version__
from reelrt.parsing import Parser

# Each stage declares its own subcommands (in --help order); none of these imports anything heavy.
STAGES = ("reelrt.export.command", "reelrt.models.command", "reelrt.quantize.command",
          "reelrt.runtime.command", "reelrt.serve.command", "reelrt.bench.command")

EPILOG = """pipeline: models -> export (fp32 ONNX bundle) -> quantize (int8/int4/fp16 bundle)
          -> compile (backend measured on this device) -> run / bench
examples:
  reelrt demo
  reelrt export cnn --arch mobilenetv2 --out bundles/mobilenetv2
  reelrt quantize bundles/mobilenetv2 --precision int8 --out bundles/mobilenetv2-int8
  reelrt compile bundles/mobilenetv2-int8 --target cpu
  reelrt run bundles/mobilenetv2-int8 --image poster.jpg --top-k 5"""


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="reelrt", description="Export, quantize, compile and run CNN, LSTM and GPT-2 models on edge devices.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"reelrt {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for stage in STAGES:
        importlib.import_module(stage).add_parsers(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    from reelrt.runtime.errors import ReelrtError

    args = build_parser().parse_args(argv)
    module, func = args.handler.split(":")
    try:
        return getattr(importlib.import_module(module), func)(args) or 0
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (ReelrtError, ValueError, OSError) as e:
        # ReelrtError and its typed children; InputError is a ValueError, and so are the refusals
        # of libraries handed a bad value; OSError covers missing, unreadable or unwritable paths
        message = " ".join(str(e).split()) or type(e).__name__
        print(f"reelrt {args.command}: error: {message}", file=sys.stderr)
        return 2

