"""reelrt.runtime: load a bundle and run it. Depends on numpy, onnxruntime, tokenizers and
OpenCV only; never on torch, onnx, transformers or optimum.

    from reelrt.runtime import load
    clf = load("bundles/mobilenet-int8")
    clf.classify(frame, top_k=5)
"""
from __future__ import annotations

import importlib
import os

from .bundle import Bundle, Verify, open_bundle, verify_bundle
from .errors import BackendUnavailableError, BundleError, InputError, ReelrtError
from .model import Model

# task -> the class that serves it, imported only when a bundle of that task is loaded
TASKS = {
    "image-classification": "reelrt.runtime.image:ImageClassifier",
    "text-classification": "reelrt.runtime.text:TextClassifier",
    "text-generation": "reelrt.runtime.generate:TextGenerator",
}


def load(path: str | os.PathLike, device: str = "auto", threads: int | None = None, verify: Verify = "auto") -> Model:
    """Verify the bundle at `path` and return the task object its manifest names.

    device: "auto" (the compiled choice, CUDA when present, else CPU), "cpu" or "cuda".
    threads: intra-op threads; default one per physical core.
    verify: "auto" trusts an unchanged, already-verified bundle; "always" re-hashes.
    """
    bundle = open_bundle(path, verify=verify)
    module, name = TASKS[bundle.manifest.task].split(":")
    cls = getattr(importlib.import_module(module), name)
    return cls(bundle, device=device, threads=threads)


__all__ = ["load", "open_bundle", "verify_bundle", "Bundle", "Model", "ReelrtError", "BundleError",
           "InputError", "BackendUnavailableError"]
