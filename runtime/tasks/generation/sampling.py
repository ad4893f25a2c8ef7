"""Choosing the next token from last-position logits, in numpy: a chain of logits processors,
then a draw.

The processors run in order on one row's logits: the vocabulary limit (ids the tokenizer
cannot spell), a repetition penalty with the semantics of transformers (a seen token's
positive logit is divided by the penalty, a negative one multiplied), a constraint's mask (a
grammar or JSON schema: runtime/tasks/generation/constraint.py) and the temperature. The draw
is greedy (temperature 0) or a seeded choice among the top-k / top-p (nucleus) candidates.
A `Sampler` holds one request's state (its generator seeded once, its repetition history, its
constraint), so a request's answer never depends on its neighbours.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, Sequence

import numpy as np

from reelrt.runtime.errors import InputError

MAX_TOP_LOGPROBS = 20  # as the OpenAI API


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


class Constraint(Protocol):
    """One request's grammar state (runtime/tasks/generation/grammar.py's Constraint): the ids
    allowed next, the sampled token accepted, the tokens forced next (accepted as they are
    returned), whether the answer is complete, and the next mask started in the background."""

    def allowed(self) -> np.ndarray: ...

    def accept(self, token_id: int) -> None: ...

    def forced(self, limit: int | None = None) -> list[int]: ...

    def is_done(self) -> bool: ...

    def start_mask(self) -> None: ...


class LogitsProcessor(Protocol):
    def __call__(self, logits: np.ndarray) -> np.ndarray: ...


class VocabLimit:
    """Ids at or above `limit` are never produced (a tokenizer smaller than the model's logits)."""

    def __init__(self, limit: int):
        self.limit = limit

    def __call__(self, logits: np.ndarray) -> np.ndarray:
        if self.limit >= len(logits):
            return logits
        logits = logits.copy()
        logits[self.limit:] = -np.inf
        return logits


class RepetitionPenalty:
    """transformers' repetition penalty over the ids in `seen` (the prompt and what was produced)."""

    def __init__(self, penalty: float, seen: np.ndarray):
        self.penalty, self.seen = penalty, seen

    def __call__(self, logits: np.ndarray) -> np.ndarray:
        if self.penalty == 1.0 or not len(self.seen):
            return logits
        logits = logits.copy()
        picked = logits[self.seen]
        with np.errstate(over="ignore", divide="ignore"):  # a tiny penalty may push a logit to infinity
            logits[self.seen] = np.where(picked > 0, picked / self.penalty, picked * self.penalty)
        return logits


class ConstraintMask:
    """-inf for every id the constraint does not allow next."""

    def __init__(self, constraint: Constraint):
        self.constraint = constraint

    def __call__(self, logits: np.ndarray) -> np.ndarray:
        allowed = self.constraint.allowed()
        n = min(len(allowed), len(logits))
        logits = np.where(allowed[:n], logits[:n], -np.inf).astype(logits.dtype, copy=False)
        return logits if n == len(logits) else np.concatenate([logits, np.full(len(logits) - n, -np.inf, logits.dtype)])


class Temperature:
    def __init__(self, temperature: float):
        self.temperature = temperature

    def __call__(self, logits: np.ndarray) -> np.ndarray:
        if self.temperature == 0:  # greedy: the draw takes the argmax of the logits as they are
            return logits
        with np.errstate(over="ignore", divide="ignore"):
            return logits.astype(np.float64) / self.temperature


def chain(params: SamplingParams, seen: np.ndarray | None = None, vocab_limit: int | None = None,
          constraint: Constraint | None = None) -> list[LogitsProcessor]:
    """The processors a request's logits pass through, in order."""
    out: list[LogitsProcessor] = []
    if vocab_limit is not None:
        out.append(VocabLimit(vocab_limit))
    if params.repetition_penalty != 1.0 and seen is not None:
        out.append(RepetitionPenalty(params.repetition_penalty, seen))
    if constraint is not None:
        out.append(ConstraintMask(constraint))
    out.append(Temperature(params.temperature))
    return out


def draw(scaled: np.ndarray, params: SamplingParams, rng: np.random.Generator) -> int:
    """The next id from processed logits: the argmax when greedy, else a seeded draw among the
    top-k / top-p candidates of their softmax."""
    if params.greedy or scaled.max() == np.inf:  # a temperature (or penalty) so extreme that sampling is greedy
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


def run_chain(processors: Sequence[LogitsProcessor], logits: np.ndarray) -> np.ndarray:
    for processor in processors:
        logits = processor(logits)
    return logits


def next_token(logits: np.ndarray, params: SamplingParams, rng: np.random.Generator, seen: np.ndarray | None = None) -> int:
    """One token id from a 1-D logits row. `seen` holds the ids the repetition penalty applies to."""
    return draw(run_chain(chain(params, seen), logits), params, rng)


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


@dataclass(frozen=True)
class Pick:
    """A sampled token, with its log-probability and the most likely alternatives when asked."""
    token: int
    logprob: float | None = None
    top: tuple[tuple[int, float], ...] = ()


class Sampler:
    """One request's sampler: the chain of processors over its own state, and a generator seeded
    once per request. `logprobs` (None: none) asks for the sampled token's log-probability under
    the model (the vocabulary limit and constraint applied) and that many alternatives."""

    def __init__(self, params: SamplingParams, seed: int | None, prompt: Sequence[int], vocab_limit: int,
                 constraint: Constraint | None = None, logprobs: int | None = None):
        self.params, self.constraint, self.logprobs = params, constraint, logprobs
        self.rng = np.random.default_rng(seed)
        self.processors = chain(params, np.asarray(prompt, np.int64), vocab_limit, constraint)
        self.penalty = next((p for p in self.processors if isinstance(p, RepetitionPenalty)), None)

    def sample(self, logits: np.ndarray) -> Pick:
        token = draw(run_chain(self.processors, logits), self.params, self.rng)
        if self.logprobs is None:
            return Pick(token)
        masks = [p for p in self.processors if isinstance(p, (VocabLimit, ConstraintMask))]
        base = run_chain(masks, logits).astype(np.float64)
        finite = base[np.isfinite(base)]
        logz = finite.max() + np.log(np.exp(finite - finite.max()).sum())
        top = np.argsort(-base, kind="stable")[:self.logprobs]
        return Pick(token, float(base[token] - logz), tuple((int(t), float(base[t] - logz)) for t in top))

    def accept(self, token: int) -> None:
        """Record the sampled token (the repetition history, the constraint's state)."""
        if self.penalty is not None:
            self.penalty.seen = np.append(self.penalty.seen, token)
        if self.constraint is not None:
            self.constraint.accept(token)

    def forced(self, limit: int) -> list[int]:
        """The tokens the constraint admits as the only continuation (at most `limit`), recorded
        as if sampled; the caller feeds them to the model in one step."""
        if self.constraint is None or limit < 1 or self.constraint.is_done():
            return []
        tokens = self.constraint.forced(limit)
        if self.penalty is not None and tokens:
            self.penalty.seen = np.append(self.penalty.seen, tokens)
        return tokens

    def prepare(self) -> None:
        """Start the next mask while the model runs (where the constraint can)."""
        if self.constraint is not None and not self.constraint.is_done():
            self.constraint.start_mask()
