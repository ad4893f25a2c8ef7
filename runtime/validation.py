"""The validation policy every stage shares: how a graph's answers are compared with its
reference's, and how far each precision may stray.

export compares its ONNX graph with PyTorch, quantize compares a lower precision with the fp32
bundle it came from, compile compares each backend's build with ONNX Runtime on the bundle's
own graph, and a TensorRT plan is compared with ONNX Runtime on the CPU. All of them use
`compare` and one table, TOLERANCES, keyed by the precision the candidate computes in.

The figure is the largest absolute difference relative to the reference's range, so large
logits are not held to a figure meant for small ones. The range is never taken below
MIN_RANGE: outputs that span less (a random-weight model's near-constant logits) carry no
decision to guard, and a relative figure on them would be noise divided by almost nothing.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from reelrt.runtime.errors import ValidationError

MIN_RANGE = 1e-2


@dataclass(frozen=True)
class Tolerance:
    max_relative_diff: float      # largest max-abs difference over the reference's range
    min_top1_agreement: float     # smallest share of rows whose argmax agrees, on real inputs


# the precision a candidate computes in -> how far it may stray from its reference
TOLERANCES = {
    "fp32": Tolerance(1e-4, 1.0),
    "tf32": Tolerance(1e-2, 0.99),    # TensorRT's default for fp32 graphs on Ampere and later
    "bf16": Tolerance(2e-2, 0.99),    # OpenVINO's bf16 inference-precision hint
    "fp16": Tolerance(1e-2, 0.99),
    "mixed": Tolerance(0.15, 0.95),   # int8 weights with fp16 or fp32 elsewhere
    "int8": Tolerance(0.15, 0.95),
    "int4": Tolerance(0.25, 0.90),
}


@dataclass
class Comparison:
    max_abs_diff: float
    relative_diff: float
    top1_agreement: float
    samples: int

    def to_json(self) -> dict:
        return {k: (round(v, 6) if isinstance(v, float) else v) for k, v in asdict(self).items()}

    def within(self, tolerance: Tolerance, top1: bool = True) -> bool:
        return self.relative_diff <= tolerance.max_relative_diff and (
            not top1 or self.top1_agreement >= tolerance.min_top1_agreement)


def weights_are_random(manifest) -> bool:
    """Whether a bundle's weights were never trained, so top-1 agreement says nothing (near-tied
    logits) and is not asked of it. Exports record it as provenance["random_weights"]."""
    prov, extra = manifest.provenance, manifest.extra
    return bool(prov.get("random_weights", extra.get("trained") is False or "random_config" in prov))


def tolerance_for(precision: str) -> Tolerance:
    if precision not in TOLERANCES:
        raise ValidationError(f"no tolerance for precision {precision!r}; known: {sorted(TOLERANCES)}")
    return TOLERANCES[precision]


def compare(reference: np.ndarray, candidate: np.ndarray) -> Comparison:
    """Compare two (N, ..., classes) output arrays; ValidationError when they cannot be compared."""
    reference = np.asarray(reference, np.float64)
    candidate = np.asarray(candidate, np.float64)
    if reference.shape != candidate.shape:
        raise ValidationError(f"output shapes differ: reference {reference.shape}, candidate {candidate.shape}")
    if not np.isfinite(candidate).all():
        raise ValidationError("candidate outputs hold NaN or infinity")
    diff = float(np.abs(reference - candidate).max()) if reference.size else 0.0
    scale = max(float(np.ptp(reference)) if reference.size else 0.0, MIN_RANGE)
    agree = reference.argmax(-1) == candidate.argmax(-1) if reference.ndim else np.ones(1, bool)
    return Comparison(diff, diff / scale, float(agree.mean()) if agree.size else 1.0, int(agree.size))


def check(comparison: Comparison, precision: str, what: str, top1: bool = True) -> Comparison:
    """Raise ValidationError, saying which figure failed and by how much, when a comparison is
    out of the precision's tolerance. top1=False skips the agreement check (random inputs on
    random weights, where near-tied logits make agreement meaningless)."""
    tolerance = tolerance_for(precision)
    if comparison.relative_diff > tolerance.max_relative_diff:
        raise ValidationError(
            f"{what}: max abs difference {comparison.max_abs_diff:.3g} is {comparison.relative_diff:.3g} of the"
            f" output range, over the {precision} tolerance {tolerance.max_relative_diff}")
    if top1 and comparison.top1_agreement < tolerance.min_top1_agreement:
        raise ValidationError(
            f"{what}: top-1 agreement {comparison.top1_agreement:.2%} is under the {precision} minimum"
            f" {tolerance.min_top1_agreement:.0%}")
    return comparison
