"""`reelrt export FAMILY ...`: the arguments of each family's export; each family's module is
imported only when its export runs."""
from __future__ import annotations

import argparse
import json

from reelrt.parsing import positive_int

IMAGE_SOURCES = """Export an image classifier to a bundle, validated against PyTorch.

  reelrt export image-classifier --checkpoint HF_DIR --out B          transformers directory
  reelrt export image-classifier --arch torchvision:resnet50 --checkpoint w.pth --out B
  reelrt export image-classifier --checkpoint model.pt2 --mean 0.5 --std 0.5 --out B
  reelrt export image-classifier --module my_models.py:LeNet --checkpoint w.pth --size 32 --out B
  reelrt export image-classifier --arch mobilenetv2 --out B             built-in, random weights"""

TEXT_SOURCES = """Export a recurrent text classifier to a bundle, validated against PyTorch.

  reelrt export text-classifier --checkpoint fortunes.pt --out B          from `reelrt train lstm`
  reelrt export text-classifier --module sentiment.py:SentimentLSTM --checkpoint w.pt \\
         --tokenizer vocab.txt --lowercase --labels negative,positive --out B
  reelrt export text-classifier --vocab-size 2000 --out B                 built-in, random weights"""


def int_list(text: str) -> list[int]:
    try:
        return [int(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected integers separated by commas, got {text!r}") from None


def float_list(text: str) -> list[float]:
    try:
        return [float(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected numbers separated by commas, got {text!r}") from None


def json_object(text: str) -> dict:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise argparse.ArgumentTypeError(f"not JSON: {e}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError("expected a JSON object")
    return value


def add_parsers(sub) -> None:
    """`reelrt export cnn|lstm|gpt2`."""
    p = sub.add_parser("export", help="export a PyTorch model to an fp32 ONNX bundle, validated against PyTorch",
                       description="Export a PyTorch model to a bundle; every export is validated against PyTorch.")
    fam = p.add_subparsers(dest="family", metavar="FAMILY", required=True)
    e = fam.add_parser("image-classifier", aliases=["cnn"], help="image classifier: built-in, transformers,"
                       " torchvision, .pt2 or your own module", description=IMAGE_SOURCES,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    e.set_defaults(handler="reelrt.export.cnn:main")
    e.add_argument("--arch", help="mobilenetv2, resnet18, digits, or torchvision:NAME (with a state_dict)")
    e.add_argument("--checkpoint", help="transformers directory, .pt2 ExportedProgram, or state_dict (.pt/.pth/"
                   ".safetensors) for --arch/--module; built-in archs: random weights when absent (not digits)")
    e.add_argument("--module", help="your class: package.module:Class or path/to/file.py:Class")
    e.add_argument("--module-kwargs", type=json_object, default=None, help="JSON object of the class's arguments")
    pre = e.add_argument_group("preprocessing (over the checkpoint's own; runtime/tasks/image.py)")
    pre.add_argument("--preprocessing", metavar="FILE", help="JSON file with the policy's keys")
    pre.add_argument("--size", type=int_list, help="model input H,W (or one number for a square)")
    pre.add_argument("--resize", type=int, help="scale the shorter side to this, then centre-crop --size")
    pre.add_argument("--crop", choices=["center", "none"])
    pre.add_argument("--interpolation", choices=["area", "linear", "cubic", "nearest", "lanczos", "pil-nearest",
                                                 "pil-box", "pil-bilinear", "pil-hamming", "pil-bicubic",
                                                 "pil-lanczos"],
                     help="OpenCV's filters crop then resize; pil-* resize the whole frame with PIL's filter"
                          " (antialiased) then crop, as transformers' processors do")
    pre.add_argument("--reducing-gap", type=float, help="box-average a shrink by floor(scale / G) first (PIL's"
                     " reducing_gap): faster on large frames, no longer exact; default: exact")
    pre.add_argument("--scale", type=float, help="pixels are divided by this before mean/std (default 255)")
    pre.add_argument("--mean", type=float_list, help="per channel, e.g. 0.485,0.456,0.406")
    pre.add_argument("--std", type=float_list, help="per channel, e.g. 0.229,0.224,0.225")
    pre.add_argument("--channel-order", choices=["RGB", "BGR", "GRAY"])
    e.add_argument("--labels", help="file (one per line, or a JSON list) or a,b,c; default the checkpoint's")
    e.add_argument("--multi-label", action="store_true", help="one sigmoid per label instead of a softmax")
    e.add_argument("--threshold", type=float, default=0.5, help="--multi-label: a label is on at or over this")
    e.add_argument("--random-weights", action="store_true",
                   help="declare untrained weights: top-1 agreement then does not gate quantization")
    e.add_argument("--out", required=True)
    e = fam.add_parser("text-classifier", aliases=["lstm"], help="LSTM/GRU text classifier: built-in or your own"
                       " module", description=TEXT_SOURCES, formatter_class=argparse.RawDescriptionHelpFormatter)
    e.set_defaults(handler="reelrt.export.lstm:main")
    e.add_argument("--checkpoint", help="checkpoint written by `reelrt train lstm`, or with --module a state_dict")
    e.add_argument("--vocab-size", type=positive_int, default=2000, help="random-weight model: vocabulary size")
    e.add_argument("--hidden", type=positive_int, default=128, help="random-weight model: hidden size")
    own = e.add_argument_group("your own module (Embedding -> nn.LSTM/nn.GRU -> Linear)")
    own.add_argument("--module", help="package.module:Class or path/to/file.py:Class")
    own.add_argument("--module-kwargs", type=json_object, default=None, help="JSON object of the class's arguments")
    own.add_argument("--tokenizer", help="tokenizer.json, or a vocabulary file (one token per line, or JSON token->id)")
    own.add_argument("--lowercase", action="store_true", help="vocabulary file: lower-case texts before splitting")
    own.add_argument("--unk-token", default="[UNK]", help="vocabulary file: the token for unknown words")
    own.add_argument("--labels", help="file (one per line) or a,b,c; sigmoid head: negative,positive")
    own.add_argument("--head", choices=["softmax", "sigmoid", "multi-label"],
                     help="default: sigmoid for one logit, softmax otherwise")
    own.add_argument("--threshold", type=float, default=0.5, help="sigmoid heads: positive at or over this")
    own.add_argument("--max-length", type=positive_int, default=256, help="tokens kept per text")
    own.add_argument("--texts", help="file of real texts (one per line) to check the export on")
    own.add_argument("--embedding", help="name of the nn.Embedding, when finding it by type is ambiguous")
    own.add_argument("--rnn", help="name of the nn.LSTM/nn.GRU")
    own.add_argument("--head-module", help="name of the head nn.Linear")
    own.add_argument("--random-weights", action="store_true",
                     help="declare untrained weights: top-1 agreement then does not gate quantization")
    e.add_argument("--out", required=True)
    e = fam.add_parser("gpt2", help="GPT-2 decoder with a key/value cache and fused operators")
    e.set_defaults(handler="reelrt.export.gpt2:main")
    src = e.add_mutually_exclusive_group(required=True)
    src.add_argument("--checkpoint", help="checkpoint directory in transformers format")
    src.add_argument("--config", choices=["gpt2", "gpt2-medium", "distilgpt2", "tiny"], help="random weights")
    e.add_argument("--max-context", type=positive_int, default=None, help="largest prompt + generated length")
    e.add_argument("--chat-template", metavar="FILE", help="Jinja chat template for /v1/chat/completions (default:"
                   " the checkpoint's tokenizer_config.json one, else a plain 'User: ... Assistant:' transcript)")
    e.add_argument("--out", required=True)
