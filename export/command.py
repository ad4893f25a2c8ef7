"""`reelrt export FAMILY ...`: the arguments of each family's export; each family's module is
imported only when its export runs."""
from __future__ import annotations

from reelrt.parsing import positive_int


def add_parsers(sub) -> None:
    """`reelrt export cnn|lstm|gpt2`."""
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
    e.add_argument("--vocab-size", type=positive_int, default=2000, help="random-weight model: vocabulary size")
    e.add_argument("--hidden", type=positive_int, default=128, help="random-weight model: hidden size")
    e.add_argument("--out", required=True)
    e = fam.add_parser("gpt2", help="GPT-2 decoder with a key/value cache and fused operators")
    e.set_defaults(handler="reelrt.export.gpt2:main")
    src = e.add_mutually_exclusive_group(required=True)
    src.add_argument("--checkpoint", help="checkpoint directory in transformers format")
    src.add_argument("--config", choices=["gpt2", "gpt2-medium", "distilgpt2", "tiny"], help="random weights")
    e.add_argument("--max-context", type=positive_int, default=None, help="largest prompt + generated length")
    e.add_argument("--out", required=True)
