"""`reelrt export image-classifier` (alias `cnn`): an image classifier to a validated fp32 bundle.

Sources: the built-in architectures (mobilenetv2, resnet18, digits; a state_dict of another class
count is welcome), or the user's own model (export/image_sources.py: a transformers directory,
torchvision:NAME, a .pt2 ExportedProgram, module:Class with a state_dict). Preprocessing comes
from the checkpoint where it has one, overridden key by key by the caller's; labels likewise.

Real inputs for validation and the bundle's reference set: the two photographs that
scikit-learn ships (and their mirror images), or held-out digits for the digits model, all
preprocessed by the runtime's own Preprocessor so the checks cover the path the runtime takes.
"""
from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from reelrt.runtime.errors import InputError

BUILT_IN = ("mobilenetv2", "resnet18", "digits")


def export_cnn(arch: str, out: str | os.PathLike, checkpoint: str | os.PathLike | None = None,
               labels: Sequence[str] | str | None = None, preprocessing: dict | None = None) -> Path:
    """Export one of models.cnn's architectures; the digits model needs a trained checkpoint.
    The class count follows the checkpoint (a fine-tuned head of any size)."""
    from reelrt.models.cnn import ARCHS, build, default_labels
    from reelrt.models.cnn import preprocessing as arch_preprocessing

    if arch == "digits" and checkpoint is None:
        raise FileNotFoundError("the digits model is exported from a trained checkpoint:"
                                " run `reelrt train digits --out digits.pt`, then pass --checkpoint digits.pt")
    module = build(arch, str(checkpoint) if checkpoint else None)
    policy = {**arch_preprocessing(arch), **(preprocessing or {})}
    frames = digits_reference_frames() if arch == "digits" else photo_frames()
    trained = checkpoint is not None
    classes = _class_count(module, policy)
    extra = {"arch": arch, "num_classes": classes, "trained": trained}
    if arch == "digits":
        extra["heldout"] = {"dataset": "sklearn-digits", "split": "20% stratified, seed 0"}
    names = default_labels(arch) if classes == ARCHS[arch][1] else None
    return export_image_classifier(module, preprocess_frames(frames, policy), out, policy,
                                   resolve_labels(labels, classes, names), extra,
                                   source=f"{arch} checkpoint" if trained else f"{arch} random init (seed 0)",
                                   checkpoint=checkpoint, random_weights=not trained)


def image_classifier(out: str | os.PathLike, *, checkpoint: str | os.PathLike | None = None,
                     arch: str | None = None, module: Any = None, module_kwargs: dict | None = None,
                     preprocessing: dict | None = None, labels: Sequence[str] | str | None = None,
                     head: dict | None = None, random_weights: bool = False) -> Path:
    """Export the user's image classifier to a validated fp32 bundle at `out`; return its path.

    What to export, by the arguments given:
      checkpoint=DIR                      a transformers image-classification directory
      checkpoint="m.pt2"                  an ExportedProgram (torch.export.save)
      arch="torchvision:resnet50", checkpoint="w.pth"   a torchvision architecture and its state_dict
      arch="mobilenetv2"|"resnet18"|"digits"            the built-in ones (state_dict optional)
      module=nn.Module | "pkg.mod:Class" | "file.py:Class" (+ module_kwargs, checkpoint=state_dict)
    preprocessing: the runtime's policy keys (size [H, W], resize, crop, interpolation, reducing_gap,
      scale, mean, std, channel_order); merged over the checkpoint's own, which it overrides key by key.
    labels: a list, "a,b,c", or a file with one label per line; default the checkpoint's names
      (or "0".."N-1"); the class count always comes from the model's output.
    head: {"kind": "softmax"} (default) or {"kind": "multi-label", "threshold": t}.
    random_weights: declare untrained weights, so top-1 agreement does not gate int8/int4.
    Bad modules and checkpoints raise InputError saying what was expected.
    """
    from . import image_sources as sources

    if arch in BUILT_IN and module is None:
        if random_weights and checkpoint is not None:
            raise InputError("random_weights declares untrained weights: a built-in architecture without a"
                             " checkpoint is already random")
        return export_cnn(arch, out, checkpoint, labels, preprocessing)
    if module is not None:
        if isinstance(module, str):
            source = sources.from_module(module, checkpoint, module_kwargs)
        else:
            if checkpoint:
                sources.load_weights(module, sources.read_state_dict(checkpoint), checkpoint)
            source = sources.ImageSource(module.eval(), f"{type(module).__name__} module")
    elif arch is not None and arch.startswith("torchvision:"):
        source = sources.from_torchvision(arch.split(":", 1)[1], checkpoint)
    elif arch is not None:
        raise InputError(f"unknown --arch {arch!r}: one of {', '.join(BUILT_IN)} or torchvision:NAME"
                         " (for your own class, --module pkg.mod:Class or file.py:Class)")
    elif checkpoint is not None and Path(checkpoint).is_dir():
        if not (Path(checkpoint) / "config.json").is_file():
            raise InputError(f"{checkpoint} is a directory without config.json: not a transformers checkpoint")
        source = sources.from_transformers(checkpoint)
    elif checkpoint is not None and Path(checkpoint).suffix == ".pt2":
        if not Path(checkpoint).is_file():
            raise FileNotFoundError(f"checkpoint {checkpoint} does not exist")
        source = sources.from_exported_program(checkpoint)
    elif checkpoint is not None:
        raise InputError(f"{checkpoint}: say what it holds: a state_dict needs --arch (built-in or"
                         " torchvision:NAME) or --module pkg.mod:Class; a .pt2 is an ExportedProgram; a"
                         " directory is a transformers checkpoint")
    else:
        raise InputError("nothing to export: give a checkpoint (transformers directory, .pt2, state_dict with"
                         " --arch/--module) or a module")
    policy = complete_policy({**(source.policy or {}), **(preprocessing or {})}, source.input_shape)
    classes = _class_count(source.module, policy)
    return export_image_classifier(
        source.module, preprocess_frames(photo_frames(), policy), out, policy,
        resolve_labels(labels, classes, source.labels), {"arch": source.description, "num_classes": classes,
                                                         "trained": not random_weights},
        source=source.description, checkpoint=checkpoint, random_weights=random_weights, head=head)


def export_image_classifier(module, pixels: np.ndarray, out: str | os.PathLike, policy: dict, labels: list[str],
                            extra: dict, source: str = "user module", checkpoint=None, random_weights: bool = False,
                            head: dict | None = None) -> Path:
    """Any image classifier module with NCHW float input `pixels` and `logits` output."""
    import torch

    from .torch_onnx import export_module

    return export_module(module, torch.from_numpy(pixels[:2]), out, family="cnn", task="image-classification",
                         input_names=("pixels",), output_names=("logits",), real_inputs={"pixels": pixels},
                         preprocessing=policy, labels=labels, head=head, source=source, checkpoint=checkpoint,
                         extra=extra, random_weights=random_weights)


def complete_policy(policy: dict, input_shape: tuple[int, ...] | None = None) -> dict:
    """A full policy from what is known: the size and channels a traced program takes, pixels
    scaled to [0, 1] with no mean/std when nothing else is said, RGB (GRAY for one channel)."""
    policy = dict(policy)
    if input_shape is not None:
        channels, height, width = input_shape
        if "size" in policy and [int(v) for v in policy["size"]] != [height, width]:
            raise InputError(f"the program was traced at {height}x{width}; --size {policy['size']} cannot change it")
        policy.setdefault("size", [height, width])
        policy.setdefault("channel_order", "GRAY" if channels == 1 else "RGB")
    if "size" not in policy:
        raise InputError("give the input size the model takes (--size H,W, or preprocessing={'size': [H, W]})")
    channels = 1 if policy.setdefault("channel_order", "RGB") == "GRAY" else 3
    if input_shape is not None and input_shape[0] != channels:
        raise InputError(f"the program takes {input_shape[0]} channels; channel_order {policy['channel_order']}"
                         f" gives {channels}")
    policy.setdefault("resize", None)
    policy.setdefault("crop", "center" if policy["resize"] else "none")
    for key, value in (("interpolation", "area"), ("mean", [0.0] * channels), ("std", [1.0] * channels),
                       ("scale", 255.0), ("layout", "NCHW")):
        policy.setdefault(key, value)
    return policy


def resolve_labels(labels: Sequence[str] | str | None, classes: int, default: Sequence[str] | None) -> list[str]:
    """The caller's labels (a list, "a,b,c" or a file of one per line) or the default, checked against
    the model's class count."""
    if isinstance(labels, (str, os.PathLike)):
        path = Path(labels)
        if path.is_file():
            text = path.read_text(encoding="utf-8")
            labels = json.loads(text) if path.suffix == ".json" else [line.strip() for line in text.splitlines()
                                                                       if line.strip()]
        elif "," in str(labels) or classes == 1:
            labels = [part.strip() for part in str(labels).split(",")]
        else:
            raise InputError(f"--labels {labels!r} is neither a file nor a comma-separated list")
    chosen = list(labels) if labels is not None else (list(default) if default else [str(i) for i in range(classes)])
    if len(chosen) != classes or not all(isinstance(x, str) and x for x in chosen):
        raise InputError(f"{len(chosen)} labels for a model with {classes} classes: give one non-empty name per"
                         " class, in class order")
    return chosen


def _class_count(module, policy: dict) -> int:
    """The class count from the module's own output on one input of the policy's shape."""
    import torch

    channels = 1 if policy.get("channel_order") == "GRAY" else 3
    height, width = (int(v) for v in policy["size"])
    try:
        with torch.inference_mode():
            out = module.eval()(torch.zeros(2, channels, height, width))
    except Exception as e:  # the module's own error for an input it cannot take
        raise InputError(f"the model cannot take (N, {channels}, {height}, {width}) pixels: {type(e).__name__}:"
                         f" {str(e).splitlines()[0] if str(e) else ''} (check --size and --channel-order)") from None
    if not isinstance(out, torch.Tensor) or out.ndim != 2:
        what = f"shape {list(out.shape)}" if isinstance(out, torch.Tensor) else type(out).__name__
        raise InputError(f"an image classifier returns (N, classes) logits; this model returns {what}")
    return int(out.shape[1])


def photo_frames() -> list[np.ndarray]:
    """scikit-learn's two sample photographs as BGR frames, and their mirror images."""
    from sklearn.datasets import load_sample_images

    frames = [np.ascontiguousarray(img[:, :, ::-1]) for img in load_sample_images().images]
    return frames + [np.ascontiguousarray(f[:, ::-1]) for f in frames]


def digits_reference_frames(count: int = 32) -> list[np.ndarray]:
    from reelrt.models.digits import digits_split

    return list(digits_split()[2][:count])


def preprocess_frames(frames: list[np.ndarray], policy: dict) -> np.ndarray:
    from reelrt.runtime.tasks.image import Preprocessor

    return Preprocessor(policy).batch(frames)


def preprocessing_options(args: argparse.Namespace) -> dict:
    """The policy the command-line flags give: --preprocessing FILE first, each flag over it."""
    policy: dict = {}
    if args.preprocessing:
        try:
            policy = json.loads(Path(args.preprocessing).read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise InputError(f"--preprocessing {args.preprocessing}: not a readable JSON object ({e})") from None
        if not isinstance(policy, dict):
            raise InputError(f"--preprocessing {args.preprocessing} must hold a JSON object")
    for key in ("size", "mean", "std"):
        if getattr(args, key) is not None:
            policy[key] = getattr(args, key)
    if args.size is not None and len(args.size) == 1:
        policy["size"] = args.size * 2
    for key in ("resize", "crop", "interpolation", "reducing_gap", "scale", "channel_order"):
        if getattr(args, key) is not None:
            policy[key] = getattr(args, key)
    return policy


def main(args: argparse.Namespace) -> int:
    from reelrt.runtime.tasks.ranking import Head

    head = Head("multi-label", args.threshold).to_json() if args.multi_label else None
    out = image_classifier(args.out, checkpoint=args.checkpoint, arch=args.arch, module=args.module,
                           module_kwargs=args.module_kwargs, preprocessing=preprocessing_options(args),
                           labels=args.labels, head=head, random_weights=args.random_weights)
    print(f"wrote {out}")
    return 0
