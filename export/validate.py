"""How exported and quantized graphs are compared with their reference.

Every export compares its ONNX against PyTorch; every quantize compares its graph against
the fp32 bundle it came from (itself proven against PyTorch). One table of tolerances
serves both, and a failed check raises ValidationError, which aborts the write: no bundle
that fails its check is ever put in place.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from reelrt.runtime.errors import ValidationError

# Largest max-abs logit difference accepted, relative to the reference's logit range
# (so a model with large logits is not held to an absolute figure meant for small ones).
RELATIVE_TOLERANCE = {"fp32": 1e-4, "fp16": 1e-2, "int8": 0.15, "int4": 0.25}
# Smallest top-1 agreement with the reference accepted, on real inputs.
MIN_TOP1_AGREEMENT = {"fp32": 1.0, "fp16": 0.99, "int8": 0.95, "int4": 0.90}


@dataclass
class Comparison:
    max_abs_diff: float
    relative_diff: float
    top1_agreement: float
    samples: int

    def to_json(self) -> dict:
        return {k: (round(v, 6) if isinstance(v, float) else v) for k, v in asdict(self).items()}


def compare_logits(reference: np.ndarray, candidate: np.ndarray) -> Comparison:
    """Compare two (N, ..., classes) logit arrays."""
    reference = np.asarray(reference, np.float64)
    candidate = np.asarray(candidate, np.float64)
    if reference.shape != candidate.shape:
        raise ValidationError(f"output shapes differ: reference {reference.shape}, candidate {candidate.shape}")
    if not np.isfinite(candidate).all():
        raise ValidationError("candidate outputs hold NaN or infinity")
    diff = float(np.abs(reference - candidate).max()) if reference.size else 0.0
    scale = float(np.ptp(reference)) or 1.0
    agree = reference.argmax(-1) == candidate.argmax(-1)
    return Comparison(diff, diff / scale, float(agree.mean()) if agree.size else 1.0, int(agree.size))


def check(comparison: Comparison, precision: str, what: str, top1: bool = True) -> Comparison:
    """Raise ValidationError when a comparison is out of the precision's tolerance.

    top1=False skips the agreement check, for random inputs on random weights where
    near-tied logits make agreement meaningless.
    """
    tolerance = RELATIVE_TOLERANCE[precision]
    if comparison.relative_diff > tolerance:
        raise ValidationError(
            f"{what}: max abs logit difference {comparison.max_abs_diff:.3g} is {comparison.relative_diff:.3g} of the"
            f" logit range, over the {precision} tolerance {tolerance}")
    if top1 and comparison.top1_agreement < MIN_TOP1_AGREEMENT[precision]:
        raise ValidationError(
            f"{what}: top-1 agreement {comparison.top1_agreement:.2%} is under the {precision} minimum"
            f" {MIN_TOP1_AGREEMENT[precision]:.0%}")
    return comparison
