"""The reference set a bundle carries: real inputs (reference/inputs.npz) and the source model's
answers to them (reference/outputs.npz), written at export and read by quantize and compile, which
check every new graph against the model it came from.

CNN and LSTM bundles store their graph's feeds as they are (pixels; token ids and lengths of real
texts). A GPT-2 bundle stores the token ids of a real prompt, and its feeds (that prompt's prefill
on an empty cache) are built from the manifest's input specs when read, so they always match the
graph's declared inputs; its answers are the next-token logits after the prompt.
"""
from __future__ import annotations

from typing import Mapping

import numpy as np

from reelrt.runtime.bundle import Bundle
from reelrt.runtime.bundle.layout import REFERENCE_INPUTS, REFERENCE_OUTPUTS
from reelrt.runtime.errors import BundleError
from reelrt.runtime.validation import QualityGate, check, compare, weights_are_random

Feeds = dict[str, np.ndarray]


def has_reference(bundle: Bundle) -> bool:
    return REFERENCE_INPUTS in bundle.manifest.artifacts


def has_source_answers(bundle: Bundle) -> bool:
    """Whether the bundle carries both the reference inputs and the source model's answers to them
    (read from the manifest: nothing is loaded)."""
    return has_reference(bundle) and REFERENCE_OUTPUTS in bundle.manifest.artifacts


def reference_feeds(bundle: Bundle) -> Feeds:
    """The graph's feeds for the bundle's reference inputs; BundleError when it carries none."""
    if bundle.manifest.task == "text-generation":
        from reelrt.runtime.tasks.generation.decoder import prefill_feeds
        return prefill_feeds(bundle.manifest.inputs, reference_prompt(bundle))
    return _inputs(bundle)


def at_batch(feeds: Mapping[str, np.ndarray], batch: int) -> Feeds:
    """The feeds with `batch` rows: theirs repeated in turn, or the first `batch` of them (scalars
    are left alone). Benchmarks and profile checks use real inputs at any batch this way."""
    return {name: a if a.ndim == 0 else np.take(a, np.arange(batch) % len(a), axis=0) for name, a in feeds.items()}


def reference_prompt(bundle: Bundle) -> np.ndarray:
    """A text-generation bundle's reference prompt: 1-D token ids of real text."""
    ids = _inputs(bundle).get("input_ids")
    if ids is None or ids.ndim != 2 or ids.shape[0] != 1 or ids.shape[1] < 1 or ids.dtype.kind not in "iu":
        raise BundleError(f"{REFERENCE_INPUTS} of a text-generation bundle must hold input_ids of shape (1, tokens)")
    return ids[0]


def source_outputs(bundle: Bundle) -> Feeds | None:
    """The source model's answers to the reference inputs, by output name; None when not carried."""
    if REFERENCE_OUTPUTS not in bundle.manifest.artifacts:
        return None
    return _read(bundle, REFERENCE_OUTPUTS)


def check_against_source(bundle: Bundle, outputs: Mapping[str, np.ndarray], precision: str, what: str,
                         gate: QualityGate | None = None) -> dict | None:
    """Compare a graph's outputs on the reference feeds with the source model's answers under
    `precision`'s tolerance; ValidationError outside it, None when the bundle carries no answers.

    Top-1 agreement is asked only of trained classifiers: a random model's near-tied logits, and a
    generator's single next-token row, make it say nothing. A QualityGate `gate` checks instead of
    raising, when it accepts the loss."""
    source = source_outputs(bundle)
    if source is None:
        return None
    top1 = not weights_are_random(bundle.manifest) and bundle.manifest.task != "text-generation"
    report = {"reference": "the source model's answers (reference/outputs.npz)"}
    for name, want in source.items():
        if name not in outputs:
            raise BundleError(f"{REFERENCE_OUTPUTS} holds {name!r}, which the graph does not output")
        report[name] = (gate.check if gate else check)(compare(want, outputs[name]), precision,
                             f"{what}: output {name!r} against the source model", top1=top1).to_json()
    return report


def _inputs(bundle: Bundle) -> Feeds:
    if not has_reference(bundle):
        raise BundleError(f"{bundle.root} carries no reference set ({REFERENCE_INPUTS}) to measure and check on;"
                          " export it again with this version of reelrt")
    return _read(bundle, REFERENCE_INPUTS)


def _read(bundle: Bundle, artifact: str) -> Feeds:
    try:
        with np.load(bundle.path(artifact), allow_pickle=False) as data:
            return {k: np.ascontiguousarray(v) for k, v in data.items()}
    except (OSError, ValueError) as e:  # not an npz, or one holding objects (pickle is refused)
        raise BundleError(f"{artifact} is not a readable array archive: {e}") from None
