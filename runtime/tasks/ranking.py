"""What both classifiers do with logits: probabilities, and the k best classes in order."""
from __future__ import annotations

import numpy as np


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax in float64, so near-tied classes keep distinct probabilities."""
    z = logits.astype(np.float64) - logits.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def best(row: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k largest values, best first, ties in index order; without sorting
    all classes when k is small (1000 ImageNet classes, top 5)."""
    if k * 8 >= len(row):
        return np.argsort(-row, kind="stable")[:k]
    part = np.argpartition(-row, k - 1)[:k]
    return part[np.argsort(-row[part], kind="stable")]
