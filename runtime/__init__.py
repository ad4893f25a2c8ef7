"""reelrt.runtime: load a bundle and run it. Depends on numpy and onnxruntime, on tokenizers
(`reelrt[text]`), OpenCV (`reelrt[images]`) and cryptography (`reelrt[signing]`) where installed;
never on torch, onnx, transformers or optimum.

    from reelrt.runtime import load
    clf = load("bundles/mobilenet-int8")
    clf.classify(frame, top_k=5)
"""
from __future__ import annotations

import os
from typing import TYPE_CHECKING, Sequence

from reelrt.runtime.bundle import Bundle, Verify, open_bundle, verify_bundle
from reelrt.runtime.errors import (BackendUnavailableError, BundleError, DeviceCheckError, InputError, ReelrtError,
                                   ValidationError)

if TYPE_CHECKING:
    from reelrt.runtime.backends.session import ThreadPolicy
    from reelrt.runtime.tasks.model import Model


def load(path: str | os.PathLike, device: str = "auto", threads: int | None = None, verify: Verify = "auto", *,
         spin: bool = False, affinity: Sequence[int] | None = None,
         trusted_keys: Sequence[str | os.PathLike | bytes] | None = None, device_check: bool = True) -> Model:
    """Verify the bundle at `path` and return the task object its manifest names.

    device: "auto" (the compiled choice, CUDA when present, else CPU), "cpu" or "cuda".
    threads: intra-op threads; default one per physical core (or per CPU of `affinity`).
    verify: "auto" trusts an unchanged, already-verified bundle; "always" re-hashes.
    spin: let idle worker threads busy-wait between runs (lower latency, a busy core);
      off by default so that a host's own threads keep the CPU.
    affinity: CPU ids the worker threads may run on (Linux); None lets the OS place them.
    trusted_keys: ed25519 public keys (files or PEM bytes); when given, the bundle must carry
      a signature by one of them over its manifest (`reelrt sign`), else BundleError.
    device_check: before the first answer, run the bundle's reference set on this device once per
      CPU class (cached) and raise DeviceCheckError if the answers are wrong here (runtime/device_check.py);
      False skips it.
    """
    from reelrt.runtime.backends.session import ThreadPolicy  # imports onnxruntime: only when loading
    policy = ThreadPolicy(threads, spin, None if affinity is None else tuple(affinity))
    return open_task(open_bundle(path, verify=verify, trusted_keys=trusted_keys), device, policy, device_check)


def open_task(bundle: Bundle, device: str = "auto", threads: "ThreadPolicy | int | None" = None,
              device_check: bool = True) -> Model:
    """The task object for an opened bundle, checked on this device first unless device_check
    is False (load's second half; the command line uses it on the bundle it opened)."""
    model = task_class(bundle.manifest.task)(bundle, device=device, threads=threads)
    if device_check:
        from reelrt.runtime.device_check import check_device
        try:
            check_device(bundle, model.backend)
        except BaseException:
            model.close()
            raise
    return model


def task_class(task: str) -> type[Model]:
    """The class serving a manifest task, imported only when a bundle of that task is loaded
    (a text app never imports OpenCV)."""
    if task == "image-classification":
        from reelrt.runtime.tasks.image import ImageClassifier
        return ImageClassifier
    if task == "text-classification":
        from reelrt.runtime.tasks.text import TextClassifier
        return TextClassifier
    from reelrt.runtime.tasks.generation.generator import TextGenerator   # the manifest admits no other task
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


__all__ = ["load", "open_task", "open_bundle", "verify_bundle", "Bundle", "Model", "ImageClassifier", "TextClassifier",
           "TextGenerator", "ReelrtError", "BundleError", "InputError", "BackendUnavailableError", "ValidationError",
           "DeviceCheckError",
           "BackendFallbackWarning"]
