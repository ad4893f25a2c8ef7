"""The `reelrt` command: a thin dispatcher.

Argument parsing lives here and imports nothing heavy; each subcommand names the function
that serves it as "module:function", imported only when that subcommand runs, so
`reelrt run` and `reelrt compile` start without torch.
"""
from __future__ import annotations

import argparse
import importlib
import sys

from reelrt import __version__

EPILOG = """pipeline: models -> export (fp32 ONNX bundle) -> quantize (int8/int4/fp16 bundle)
          -> compile (backend measured on this device) -> run / bench
examples:
  reelrt demo
  reelrt export cnn --arch mobilenetv2 --out bundles/mobilenetv2
  reelrt quantize bundles/mobilenetv2 --precision int8 --out bundles/mobilenetv2-int8
  reelrt compile bundles/mobilenetv2-int8 --target cpu
  reelrt run bundles/mobilenetv2-int8 --image poster.jpg --top-k 5"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="reelrt", description="Export, quantize, compile and run CNN, LSTM and GPT-2 models on edge devices.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"reelrt {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def command(name: str, handler: str, help: str, description: str | None = None) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, description=description or help)
        p.set_defaults(handler=handler)
        return p

    _export_commands(sub)

    p = command("train", "reelrt.models.command:train", "train a small model on local data (digits, a CSV of texts, text files)")
    tsub = p.add_subparsers(dest="family", metavar="FAMILY", required=True)
    t = tsub.add_parser("digits", help="small CNN on scikit-learn's handwritten digits (under a minute)")
    t.add_argument("--out", required=True, help="checkpoint file to write (.pt)")
    t.add_argument("--epochs", type=int, default=20)
    t = tsub.add_parser("lstm", help="LSTM text classifier on a CSV of (text,label) rows")
    t.add_argument("--csv", required=True, help="CSV file with a header and columns text,label")
    t.add_argument("--out", required=True, help="checkpoint file to write (.pt)")
    t.add_argument("--epochs", type=int, default=8)
    t.add_argument("--hidden", type=int, default=128)
    t.add_argument("--layers", type=int, default=1)
    t.add_argument("--bidirectional", action="store_true")
    t.add_argument("--vocab-size", type=int, default=2000, help="largest tokenizer vocabulary")
    t.add_argument("--max-length", type=int, default=128, help="tokens kept per text (recorded in the bundle)")
    t.add_argument("--seed", type=int, default=0)
    t = tsub.add_parser("gpt2", help="small GPT-2 on local text files (Python's pydoc topics by default)")
    t.add_argument("--out", required=True, help="checkpoint directory to write (transformers format)")
    t.add_argument("--text", nargs="*", help="text files to train on (default: pydoc_data topics)")
    t.add_argument("--minutes", type=float, default=5.0, help="training time budget")

    p = command("quantize", "reelrt.quantize.command:main", "write a lower-precision copy of a bundle",
                "Read a bundle, write a new bundle at a lower precision, validate it against the source and report"
                " size, agreement and (for trained models) accuracy.")
    p.add_argument("bundle", help="source bundle directory (fp32)")
    p.add_argument("--precision", required=True, choices=["int8", "int4", "fp16"])
    p.add_argument("--out", required=True, help="bundle directory to write")
    p.add_argument("--calibration", help="CNN int8: folder of images or an .npy array (N,H,W,3 uint8 or N,C,H,W float)")
    p.add_argument("--method", choices=["minmax", "percentile", "entropy"], default=None,
                   help="CNN int8 calibration method (default: the family's measured best)")
    p.add_argument("--block-size", type=int, default=None,
                   help="int4/int8 weight-only: weights per quantization block (default: the family's measured best)")
    p.add_argument("--accuracy-level", type=int, default=None, choices=[0, 1, 2, 3, 4],
                   help="int4: MatMulNBits compute precision (4 = int8 activations, fastest on x86)")

    p = command("compile", "reelrt.runtime.compile:main", "pick and record the fastest backend for this device",
                "Measure the builds available on this machine (ONNX Runtime, OpenVINO when installed; TensorRT on"
                " an NVIDIA GPU) and record the fastest one within the bundle's accuracy budget in the bundle.")
    p.add_argument("bundle")
    p.add_argument("--target", choices=["cpu", "tensorrt"], default="cpu")
    p.add_argument("--out", help="write the compiled bundle here instead of updating BUNDLE in place")
    p.add_argument("--prefer", choices=["latency", "startup"], default="latency",
                   help="cpu: fastest steady state (default), or ONNX Runtime only for the quickest first answer")

    p = command("run", "reelrt.runtime.command:run", "run a bundle on an image, a text or a prompt")
    p.add_argument("bundle")
    p.add_argument("--image", action="append", help="image file (repeatable)")
    p.add_argument("--text", action="append", help="text to classify (repeatable)")
    p.add_argument("--prompt", help="prompt to continue (streams to stdout)")
    p.add_argument("--top-k", type=int, default=None, help="classes to show, or top-k sampling for --prompt")
    p.add_argument("--max-new-tokens", type=int, default=64)
    p.add_argument("--temperature", type=float, default=0.0, help="0 = greedy")
    p.add_argument("--top-p", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    p.add_argument("--threads", type=int, default=None)

    p = command("bench", "reelrt.bench.command:bench", "measure bundles and peers side by side",
                "Latency (median/p90/p99), throughput, memory, cold start and size of each bundle and of its peers,"
                " interleaved in one run; writes JSON, a Markdown table and a PNG plot.")
    p.add_argument("bundles", nargs="+")
    p.add_argument("--peers", default="auto", help="comma-separated peers, 'auto' (all installed) or 'none'")
    p.add_argument("--out", default=None, help="directory for results.json, results.md and results.png")
    p.add_argument("--json", default=None, help="also write the JSON here")
    p.add_argument("--iterations", type=int, default=None,
                   help="timed calls per system, rounded up to blocks of 4 (default: 50, or 20 s per system, whichever ends first)")
    p.add_argument("--seconds", type=float, default=None, help="time budget per system instead of iterations")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--warmup", type=int, default=3, help="untimed rounds before measuring")
    p.add_argument("--no-isolated", action="store_true",
                   help="skip the per-system child processes that measure peak memory and cold start")

    p = command("demo", "reelrt.bench.demo:main", "build default bundles, show them answering, print a benchmark table")
    p.add_argument("--workdir", default=None, help="where demo bundles are built and cached"
                   " (default: $REELRT_DEMO_DIR or bundles/demo)")
    p.add_argument("--seconds", type=float, default=2.0, help="benchmark time budget per system")
    p.add_argument("--out", default="bench-results/demo", help="directory for the benchmark's JSON, Markdown and PNG")

    p = command("inspect", "reelrt.runtime.command:inspect", "summarise what a bundle holds")
    p.add_argument("bundle")
    p = command("verify", "reelrt.runtime.command:verify", "fully check a bundle's integrity (hash every artifact)")
    p.add_argument("bundle")
    return parser


def _export_commands(sub) -> None:
    p = sub.add_parser("export", help="export a PyTorch model to an fp32 ONNX bundle, validated against PyTorch",
                       description="Export a PyTorch model to a bundle; every export is validated against PyTorch.")
    fam = p.add_subparsers(dest="family", metavar="FAMILY", required=True)
    e = fam.add_parser("cnn", help="image classifier: mobilenetv2, resnet18 or the digits CNN")
    e.set_defaults(handler="reelrt.export.cnn:main")
    e.add_argument("--arch", required=True, choices=["mobilenetv2", "resnet18", "digits"])
    e.add_argument("--checkpoint", help="state_dict file (.pt); random weights when absent (not digits)")
    e.add_argument("--out", required=True)
    e = fam.add_parser("lstm", help="LSTM text classifier")
    e.set_defaults(handler="reelrt.export.lstm:main")
    e.add_argument("--checkpoint", help="checkpoint written by `reelrt train lstm`")
    e.add_argument("--vocab-size", type=int, default=2000, help="random-weight model: vocabulary size")
    e.add_argument("--hidden", type=int, default=128, help="random-weight model: hidden size")
    e.add_argument("--out", required=True)
    e = fam.add_parser("gpt2", help="GPT-2 decoder with a key/value cache and fused operators")
    e.set_defaults(handler="reelrt.export.gpt2:main")
    src = e.add_mutually_exclusive_group(required=True)
    src.add_argument("--checkpoint", help="checkpoint directory in transformers format")
    src.add_argument("--config", choices=["gpt2", "gpt2-medium", "distilgpt2", "tiny"], help="random weights")
    e.add_argument("--max-context", type=int, default=None, help="largest prompt + generated length")
    e.add_argument("--out", required=True)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    module, func = args.handler.split(":")
    try:
        return getattr(importlib.import_module(module), func)(args) or 0
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as e:
        from reelrt.runtime.errors import ReelrtError
        if isinstance(e, (ReelrtError, FileNotFoundError)):
            print(f"reelrt {args.command}: error: {e}", file=sys.stderr)
            return 2
        raise
