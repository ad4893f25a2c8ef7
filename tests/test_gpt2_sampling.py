"""Next-token selection: greedy, temperature, top-k, top-p, repetition penalty."""
from __future__ import annotations

import numpy as np
import pytest

from reelrt.runtime import InputError
from reelrt.runtime.tasks.generation.sampling import SamplingParams, next_token

LOGITS = np.log(np.array([0.5, 0.25, 0.125, 0.0625, 0.0625], np.float32))


def draws(params: SamplingParams, n: int = 4000, logits=LOGITS, seen=None) -> np.ndarray:
    rng = np.random.default_rng(0)
    return np.bincount([next_token(logits, params, rng, seen) for _ in range(n)], minlength=len(logits)) / n


def test_greedy_is_argmax():
    assert next_token(LOGITS, SamplingParams(), np.random.default_rng(0)) == 0


def test_temperature_one_samples_the_softmax():
    np.testing.assert_allclose(draws(SamplingParams(temperature=1.0)), np.exp(LOGITS), atol=0.03)


def test_top_k_keeps_the_k_most_likely():
    freq = draws(SamplingParams(temperature=1.0, top_k=2))
    np.testing.assert_allclose(freq, [2 / 3, 1 / 3, 0, 0, 0], atol=0.03)


def test_top_p_keeps_the_smallest_set_reaching_p():
    freq = draws(SamplingParams(temperature=1.0, top_p=0.7))  # 0.5 + 0.25 reaches 0.7
    np.testing.assert_allclose(freq, [2 / 3, 1 / 3, 0, 0, 0], atol=0.03)


def test_top_p_on_a_long_tail_matches_a_full_sort():
    logits = np.random.default_rng(1).standard_normal(5000).astype(np.float32)
    params = SamplingParams(temperature=1.0, top_p=0.5)
    probs = np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()
    order = np.argsort(-probs)
    allowed = set(order[:np.searchsorted(np.cumsum(probs[order]), 0.5) + 1].tolist())
    picked = {next_token(logits, params, np.random.default_rng(s)) for s in range(300)}
    assert picked <= allowed and len(picked) > 1


def test_repetition_penalty_demotes_seen_tokens():
    seen = np.array([0])
    assert next_token(LOGITS, SamplingParams(repetition_penalty=10.0), np.random.default_rng(0), seen) == 1
    positive = np.array([2.0, 1.5, -1.0], np.float32)
    assert next_token(positive, SamplingParams(repetition_penalty=1.5), np.random.default_rng(0), np.array([0])) == 1


@pytest.mark.parametrize("kwargs", [dict(temperature=-0.1), dict(top_k=-2), dict(top_p=0.0), dict(top_p=2.0),
                                    dict(repetition_penalty=0.0), dict(temperature=True), dict(top_k=1.0)])
def test_bad_parameters_raise_input_error(kwargs):
    with pytest.raises(InputError):
        SamplingParams(**kwargs)
