"""reelrt.runtime: load a bundle and run it. Depends on numpy, onnxruntime, tokenizers and
OpenCV only; never on torch, onnx, transformers or optimum.

    from reelrt.runtime import load
    clf = load("bundles/mobilenet-int8")
    clf.classify(frame, top_k=5)
"""
from __future__ import annotations

import os

from typing import TYPE_CHECKING

from reelrt.runtime.bundle import Bundle, Verify, open_bundle, verify_bundle
from reelrt.runtime.errors import BackendUnavailableError, BundleError, InputError, ReelrtError, ValidationError

if TYPE_CHECKING:
    from reelrt.runtime.tasks.model import Model


def load(path: str | os.PathLike, device: str = "auto", threads: int | None = None, verify: Verify = "auto") -> Model:
    """Verify the bundle at `path` and return the task object its manifest names.

    device: "auto" (the compiled choice, CUDA when present, else CPU), "cpu" or "cuda".
    threads: intra-op threads; default one per physical core.
    verify: "auto" trusts an unchanged, already-verified bundle; "always" re-hashes.
    """
    bundle = open_bundle(path, verify=verify)
    return task_class(bundle.manifest.task)(bundle, device=device, threads=threads)


def task_class(task: str) -> type[Model]:
    """The class serving a manifest task, imported only when a bundle of that task is loaded
    (a text app never imports OpenCV)."""
    if task == "image-classification":
        from reelrt.runtime.tasks.image import ImageClassifier
        return ImageClassifier
    if task == "text-classification":
        from reelrt.runtime.tasks.text import TextClassifier
        return TextClassifier
    from reelrt.runtime.tasks.generation import TextGenerator   # the manifest admits no other task
    return TextGenerator


def __getattr__(name: str):
    """Names that pull in numpy and onnxruntime, imported on first use so that importing
    reelrt.runtime (the command line, a bundle check) stays cheap."""
    tasks = {"ImageClassifier": "image-classification", "TextClassifier": "text-classification",
             "TextGenerator": "text-generation"}
    if name in tasks:
        return task_class(tasks[name])
    if name == "Model":
        from reelrt.runtime.tasks.model import Model
        return Model
    if name == "BackendFallbackWarning":
        from reelrt.runtime.backends import BackendFallbackWarning
        return BackendFallbackWarning
    raise AttributeError(f"module 'reelrt.runtime' has no attribute {name!r}")


__all__ = ["load", "open_bundle", "verify_bundle", "Bundle", "Model", "ImageClassifier", "TextClassifier",
           "TextGenerator", "ReelrtError", "BundleError", "InputError", "BackendUnavailableError", "ValidationError",
           "BackendFallbackWarning"]
