"""The public request type of the engine, and the events a request's answer comes as.

`TextGenerator` (in-process) and the server both describe a generation as a `Request` and
hand it to the scheduler (runtime/tasks/generation/scheduler.py); the scheduler answers with
`Pick` events (one per new token) and one `Finish`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from reelrt.runtime.errors import InputError
from reelrt.runtime.tasks.generation.config import DecoderConfig
from reelrt.runtime.tasks.generation.sampling import MAX_TOP_LOGPROBS, Constraint, Pick, SamplingParams

__all__ = ["Finish", "Pick", "Request", "build_request"]


@dataclass(frozen=True)
class Request:
    """One prompt to continue, checked: it fits the context with its new tokens."""
    prompt: tuple[int, ...]
    max_new_tokens: int
    params: SamplingParams = SamplingParams()
    seed: int | None = None
    stop_ids: frozenset[int] = frozenset()
    vocab_limit: int = 0                    # ids at or above it are never produced
    logprobs: int | None = None             # None: no log-probabilities; k: the token's and k alternatives
    constraint: Callable[[], Constraint] | None = field(default=None, compare=False)  # a fresh one per request


@dataclass(frozen=True)
class Finish:
    """The last event of a request: why it ended ("stop", "length", "cancelled", "error")."""
    reason: str
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int = 0
    error: str | None = None


def build_request(config: DecoderConfig, defaults: Mapping[str, Any], prompt: Sequence[int], *,
                  max_new_tokens: int | None = None, temperature: float | None = None, top_k: int | None = None,
                  top_p: float | None = None, repetition_penalty: float | None = None, seed: int | None = None,
                  stop_token_ids: Sequence[int] | None = None, truncate: bool = False, vocab_limit: int | None = None,
                  logprobs: int | None = None, constraint: Callable[[], Constraint] | None = None) -> Request:
    """A checked request; parameters left as None take `defaults` (the bundle's). Prompt ids must
    be ids of the model; stop_token_ids None means the end-of-text token."""
    pick = lambda value, key: value if value is not None else defaults[key]
    params = SamplingParams(temperature=pick(temperature, "temperature"), top_k=pick(top_k, "top_k"),
                            top_p=pick(top_p, "top_p"), repetition_penalty=pick(repetition_penalty, "repetition_penalty"))
    new = pick(max_new_tokens, "max_new_tokens")
    if not is_int(new) or new < 1:
        raise InputError(f"max_new_tokens must be a positive int, not {new!r}")
    if seed is not None and (not is_int(seed) or seed < 0):
        raise InputError(f"seed must be a non-negative int or None, not {seed!r}")
    if logprobs is not None and (not is_int(logprobs) or not 0 <= logprobs <= MAX_TOP_LOGPROBS):
        raise InputError(f"logprobs must be an int in [0, {MAX_TOP_LOGPROBS}] or None, not {logprobs!r}")
    context = config.max_context
    if new >= context:
        raise InputError(f"max_new_tokens {new} leaves no room for a prompt in the model's maximum context of"
                         f" {context} tokens: ask for 1 to {context - 1}")
    ids = list(prompt.tolist() if isinstance(prompt, np.ndarray) else prompt)
    if not ids or not all(is_int(t) and 0 <= t < config.vocab_size for t in ids):
        raise InputError(f"every prompt must be a non-empty list of token ids in [0, {config.vocab_size})")
    room = context - new
    if len(ids) > room:
        if not truncate:
            raise InputError(f"a prompt of {len(ids)} tokens and {new} new tokens exceed the model's maximum context"
                             f" of {context} tokens: shorten the prompt, ask for fewer new tokens, or truncate the"
                             " prompt's start")
        ids = ids[-room:]  # keep the most recent tokens
    if stop_token_ids is None:
        stop_token_ids = () if config.eos_token_id is None else (config.eos_token_id,)
    if not all(is_int(t) for t in stop_token_ids):
        raise InputError(f"stop_token_ids must be ints, not {stop_token_ids!r}")
    return Request(tuple(int(t) for t in ids), int(new), params, seed, frozenset(int(t) for t in stop_token_ids),
                   config.vocab_size if vocab_limit is None else vocab_limit, logprobs, constraint)


def is_int(x) -> bool:
    return isinstance(x, (int, np.integer)) and not isinstance(x, bool)
