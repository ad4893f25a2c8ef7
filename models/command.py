"""`reelrt train FAMILY ...`: each family's training script, imported only when asked for."""
from __future__ import annotations

import argparse
import importlib

from reelrt.parsing import command, non_negative_int, positive_float, positive_int

# family -> "module:function(args) -> exit code"
TRAINERS = {
    "digits": "reelrt.models.digits:main",
    "lstm": "reelrt.models.lstm_train:main",
    "gpt2": "reelrt.models.gpt2_train:main",
}


def train(args: argparse.Namespace) -> int:
    module, func = TRAINERS[args.family].split(":")
    return getattr(importlib.import_module(module), func)(args)


def add_parsers(sub) -> None:
    """`reelrt train`."""
    p = command(sub, "train", "reelrt.models.command:train", "train a small model on local data (digits, a CSV of texts, text files)")
    tsub = p.add_subparsers(dest="family", metavar="FAMILY", required=True)
    t = tsub.add_parser("digits", help="small CNN on scikit-learn's handwritten digits (under a minute)")
    t.add_argument("--out", required=True, help="checkpoint file to write (.pt)")
    t.add_argument("--epochs", type=positive_int, default=20)
    t = tsub.add_parser("lstm", help="LSTM text classifier on a CSV of (text,label) rows")
    t.add_argument("--csv", required=True, help="CSV file with a header and columns text,label")
    t.add_argument("--out", required=True, help="checkpoint file to write (.pt)")
    t.add_argument("--epochs", type=positive_int, default=8)
    t.add_argument("--hidden", type=positive_int, default=128)
    t.add_argument("--layers", type=positive_int, default=1)
    t.add_argument("--bidirectional", action="store_true")
    t.add_argument("--vocab-size", type=positive_int, default=2000, help="largest tokenizer vocabulary")
    t.add_argument("--max-length", type=positive_int, default=128, help="tokens kept per text (recorded in the bundle)")
    t.add_argument("--seed", type=non_negative_int, default=0)
    t = tsub.add_parser("gpt2", help="small GPT-2 on local text files (Python's pydoc topics by default)")
    t.add_argument("--out", required=True, help="checkpoint directory to write (transformers format)")
    t.add_argument("--text", nargs="*", help="text files to train on (default: pydoc_data topics)")
    t.add_argument("--minutes", type=positive_float, default=5.0, help="training time budget")
