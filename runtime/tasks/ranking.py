"""What both classifiers do with logits: the manifest's head turns them into probabilities, and
the k best classes come out in order.

Heads (manifest `head`, empty meaning softmax):
    {"kind": "softmax"}                         one class of N; probabilities sum to 1
    {"kind": "sigmoid", "threshold": 0.5}       one logit read as P(labels[1]); labels are
                                                [negative, positive], positive when P >= threshold
    {"kind": "multi-label", "threshold": 0.5}   one sigmoid per label; the labels at or over the
                                                threshold are the answer (possibly none)
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from reelrt.runtime.errors import BundleError

HEADS = ("softmax", "sigmoid", "multi-label")


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax in float64, so near-tied classes keep distinct probabilities."""
    z = logits.astype(np.float64) - logits.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def sigmoid(logits: np.ndarray) -> np.ndarray:
    """Element-wise logistic in float64, without overflow for large logits of either sign."""
    return np.exp(-np.logaddexp(0.0, -logits.astype(np.float64)))


def best(row: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k largest values, best first, ties in index order; without sorting
    all classes when k is small (1000 ImageNet classes, top 5)."""
    if k * 8 >= len(row):
        return np.argsort(-row, kind="stable")[:k]
    part = np.argpartition(-row, k - 1)[:k]
    return part[np.argsort(-row[part], kind="stable")]


@dataclass(frozen=True)
class Head:
    """How a classifier's logits become answers; read from the manifest by `read_head`."""
    kind: str = "softmax"
    threshold: float = 0.5

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind} if self.kind == "softmax" else {"kind": self.kind, "threshold": self.threshold}

    def probabilities(self, logits: np.ndarray) -> np.ndarray:
        """(N, labels) probabilities from (N, outputs) logits."""
        if self.kind == "softmax":
            return softmax(logits)
        p = sigmoid(logits)
        return np.stack([1.0 - p[:, 0], p[:, 0]], axis=1) if self.kind == "sigmoid" else p

    def rank(self, row: np.ndarray, k: int) -> np.ndarray:
        """The answer's label indices, most likely first, at most k."""
        if self.kind == "sigmoid":   # the threshold decides, whatever side of 0.5 it lies
            return np.array([1, 0] if row[1] >= self.threshold else [0, 1])[:k]
        if self.kind == "multi-label":
            on = np.flatnonzero(row >= self.threshold)
            return on[np.argsort(-row[on], kind="stable")][:k]
        return best(row, k)


def read_head(spec: dict, outputs: Any, labels: Sequence[str]) -> Head:
    """The manifest's head, checked against the graph's output width and the labels; BundleError when
    they do not fit. `outputs` is the last dimension of the logits (a symbol when not fixed)."""
    kind = spec.get("kind", "softmax")
    if kind not in HEADS:
        raise BundleError(f"manifest head kind {kind!r} is unknown; known: {list(HEADS)}")
    threshold = spec.get("threshold", 0.5)
    if kind == "softmax" and "threshold" in spec:
        raise BundleError("a softmax head has no threshold")
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not 0.0 < threshold < 1.0:
        raise BundleError(f"manifest head threshold must be a number between 0 and 1, got {threshold!r}")
    if kind == "sigmoid":
        if outputs != 1 or len(labels) != 2:
            raise BundleError(f"a sigmoid head reads one logit as P(labels[1]) and needs 2 labels [negative,"
                              f" positive]; the graph has {outputs} outputs and {len(labels)} labels")
    elif labels and outputs != len(labels):
        raise BundleError(f"the bundle has {len(labels)} labels for {outputs} output classes")
    return Head(kind, float(threshold))
