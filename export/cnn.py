"""`reelrt export cnn`: MobileNetV2, ResNet-18 or the digits CNN to a validated fp32 bundle.

Real inputs for validation and the bundle's reference set: the two photographs that
scikit-learn ships (and their mirror images) for the ImageNet architectures, held-out
digits for the digits model, all preprocessed by the runtime's own Preprocessor so the
checks cover the path the runtime takes.
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np



def export_cnn(arch: str, out: str | os.PathLike, checkpoint: str | os.PathLike | None = None) -> Path:
    """Export one of models.cnn's architectures; the digits model needs a trained checkpoint."""
    from reelrt.models.cnn import ARCHS, build, default_labels, preprocessing

    if arch == "digits" and checkpoint is None:
        raise FileNotFoundError("the digits model is exported from a trained checkpoint:"
                                " run `reelrt train digits --out digits.pt`, then pass --checkpoint digits.pt")
    module = build(arch, str(checkpoint) if checkpoint else None)
    policy = preprocessing(arch)
    frames = digits_reference_frames() if arch == "digits" else photo_frames()
    pixels = preprocess_frames(frames, policy)
    trained = checkpoint is not None
    extra = {"arch": arch, "num_classes": ARCHS[arch][1], "trained": trained}
    if arch == "digits":
        extra["heldout"] = {"dataset": "sklearn-digits", "split": "20% stratified, seed 0"}
    return export_image_classifier(module, pixels, out, policy, default_labels(arch), extra,
                                   source=f"{arch} checkpoint" if trained else f"{arch} random init (seed 0)",
                                   checkpoint=checkpoint, top1=trained)


def export_image_classifier(module, pixels: np.ndarray, out: str | os.PathLike, policy: dict, labels: list[str],
                            extra: dict, source: str = "user module", checkpoint=None, top1: bool = True) -> Path:
    """Any image classifier module with NCHW float input `pixels` and `logits` output."""
    import torch

    from .torch_onnx import export_module

    return export_module(module, torch.from_numpy(pixels[:2]), out, family="cnn", task="image-classification",
                         input_names=("pixels",), output_names=("logits",), real_inputs={"pixels": pixels},
                         preprocessing=policy, labels=labels, source=source, checkpoint=checkpoint,
                         extra=extra, top1=top1)


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


def main(args: argparse.Namespace) -> int:
    out = export_cnn(args.arch, args.out, args.checkpoint)
    print(f"wrote {out}")
    return 0
