"""`reelrt train FAMILY ...`: each family's training script, imported only when asked for."""
from __future__ import annotations

import argparse
import importlib

# family -> "module:function(args) -> exit code"
TRAINERS = {
    "digits": "reelrt.models.digits:main",
    "lstm": "reelrt.models.lstm_train:main",
    "gpt2": "reelrt.models.gpt2_train:main",
}


def train(args: argparse.Namespace) -> int:
    module, func = TRAINERS[args.family].split(":")
    return getattr(importlib.import_module(module), func)(args)
