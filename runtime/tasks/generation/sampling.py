"""Choosing the next token from last-position logits, in numpy.

Greedy (temperature 0), temperature, top-k, top-p (nucleus) and a repetition penalty with
the semantics of transformers (a seen token's positive logit is divided by the penalty, a
negative one multiplied), so results line up with what users know from there.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from reelrt.runtime.errors import InputError


@dataclass(frozen=True)
class SamplingParams:
    temperature: float = 0.0
    top_k: int = 0              # 0: no limit
    top_p: float = 1.0
    repetition_penalty: float = 1.0

    def __post_init__(self):
        if not _real(self.temperature) or not 0 <= self.temperature <= 100:
            raise InputError(f"temperature must be a number in [0, 100] (0 = greedy), not {self.temperature!r}")
        if isinstance(self.top_k, bool) or not isinstance(self.top_k, (int, np.integer)) or self.top_k < 0:
            raise InputError(f"top_k must be a non-negative int (0 = no limit), not {self.top_k!r}")
        if not _real(self.top_p) or not 0 < self.top_p <= 1:
            raise InputError(f"top_p must be in (0, 1], not {self.top_p!r}")
        if not _real(self.repetition_penalty) or not 0 < self.repetition_penalty <= 100:
            raise InputError(f"repetition_penalty must be a number in (0, 100], not {self.repetition_penalty!r}")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0


def _real(x) -> bool:
    return isinstance(x, (int, float, np.floating, np.integer)) and not isinstance(x, bool) and np.isfinite(x)


def next_token(logits: np.ndarray, params: SamplingParams, rng: np.random.Generator, seen: np.ndarray | None = None) -> int:
    """One token id from a 1-D logits row. `seen` holds the ids the repetition penalty applies to."""
    if params.repetition_penalty != 1.0 and seen is not None and len(seen):
        logits = logits.copy()
        picked = logits[seen]
        with np.errstate(over="ignore", divide="ignore"):  # a tiny penalty may push a logit to infinity
            logits[seen] = np.where(picked > 0, picked / params.repetition_penalty, picked * params.repetition_penalty)
    if params.greedy:
        return int(np.argmax(logits))
    with np.errstate(over="ignore", divide="ignore"):
        scaled = logits.astype(np.float64) / params.temperature
    if scaled.max() == np.inf:  # a temperature (or penalty) so extreme that sampling is greedy
        return int(np.argmax(scaled))
    probs = np.exp(scaled - scaled.max())
    probs /= probs.sum()
    k = params.top_k if 0 < params.top_k < len(probs) else len(probs)
    if k == len(probs) and params.top_p == 1.0:
        return int(rng.choice(len(probs), p=probs))
    candidates = _top(probs, k, params.top_p)
    kept = probs[candidates] / probs[candidates].sum()
    if params.top_p < 1.0:
        keep = int(np.searchsorted(np.cumsum(kept), params.top_p)) + 1  # smallest set reaching top_p
        candidates = candidates[:keep]
        kept = probs[candidates] / probs[candidates].sum()
    return int(candidates[rng.choice(len(candidates), p=kept)])


def _top(probs: np.ndarray, k: int, top_p: float) -> np.ndarray:
    """The k most likely ids, most likely first. For top-p alone, sorting a short head of the
    distribution suffices whenever it already holds top_p of the mass (a full sort of 50k
    logits would cost milliseconds per token)."""
    head = min(k, 256)
    if head < len(probs):
        ids = np.argpartition(-probs, head - 1)[:head]
        if head == k or probs[ids].sum() >= top_p:
            return ids[np.argsort(-probs[ids], kind="stable")]
    order = np.argsort(-probs, kind="stable")
    return order[:k]
