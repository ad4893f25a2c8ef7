"""TextGenerator: streaming, sampling, seeds, batches, stop strings and input errors on a tiny GPT-2."""
from __future__ import annotations

import numpy as np
import pytest

from reelrt.runtime import InputError, ReelrtError, load
from reelrt.runtime.tasks.generation.detokenize import Detokenizer
from reelrt.runtime.command import printable
from reelrt.runtime.tasks.generation.pieces import _stop_prefix_length

PROMPT = "The object is"


@pytest.fixture(scope="module")
def gen(gpt2_tiny_bundle):
    return load(gpt2_tiny_bundle, threads=1)


@pytest.mark.parametrize("options", [
    dict(),
    dict(temperature=0.9, top_p=0.95, seed=11),
    dict(temperature=1.2, top_k=20, repetition_penalty=1.3, seed=5),
])
def test_stream_joins_to_generate(gen, options):
    pieces = list(gen.stream(PROMPT, max_new_tokens=40, **options))
    assert "".join(pieces) == gen.generate(PROMPT, max_new_tokens=40, **options)
    assert len(pieces) > 1


def test_stream_and_generate_agree_on_stop_strings(gen):
    text = gen.generate(PROMPT, max_new_tokens=60, temperature=1.0, seed=2)
    stop = text[10:13]  # a string the continuation is known to hold
    cut = gen.generate(PROMPT, max_new_tokens=60, temperature=1.0, seed=2, stop=[stop])
    assert cut == text[:text.find(stop)]
    assert "".join(gen.stream(PROMPT, max_new_tokens=60, temperature=1.0, seed=2, stop=[stop])) == cut


def test_greedy_text_is_the_decoded_greedy_ids(gen):
    ids = gen.tokenizer.encode(PROMPT).ids
    new = gen.generate_ids(ids, max_new_tokens=30)
    assert gen.generate(PROMPT, max_new_tokens=30) == gen.tokenizer.decode(new, skip_special_tokens=False)


def test_a_seed_reproduces_and_seeds_differ(gen):
    a = gen.generate(PROMPT, max_new_tokens=30, temperature=1.0, seed=123)
    assert gen.generate(PROMPT, max_new_tokens=30, temperature=1.0, seed=123) == a
    others = {gen.generate(PROMPT, max_new_tokens=30, temperature=1.0, seed=s) for s in range(4)}
    assert len(others) > 1


@pytest.mark.parametrize("options", [dict(), dict(temperature=0.8, top_k=50, seed=9)])
def test_batch_results_equal_single_results(gen, options):
    prompts = ["The object is", "A class", "When the interpreter reads a long statement it"]
    batch = gen.generate(prompts, max_new_tokens=25, **options)
    assert batch == [gen.generate(p, max_new_tokens=25, **options) for p in prompts]
    ids = [gen.tokenizer.encode(p).ids for p in prompts]
    assert gen.generate_ids(ids, max_new_tokens=25, stop_token_ids=(), **options) == [
        gen.generate_ids(i, max_new_tokens=25, stop_token_ids=(), **options) for i in ids]


def test_generate_ids_runs_to_max_new_tokens_without_stop_ids(gen):
    assert len(gen.generate_ids([1, 2, 3], max_new_tokens=17, stop_token_ids=())) == 17
    assert gen.generate_ids(np.array([1, 2, 3]), max_new_tokens=9) == gen.generate_ids([1, 2, 3], max_new_tokens=9)


def test_stop_token_ends_generation(gen):
    ids = gen.tokenizer.encode(PROMPT).ids
    free = gen.generate_ids(ids, max_new_tokens=20, stop_token_ids=())
    stopped = gen.generate_ids(ids, max_new_tokens=20, stop_token_ids=[free[5]])
    assert stopped == free[:free.index(free[5])]


def test_an_abandoned_stream_leaks_nothing_and_is_superseded(gen):
    fresh = gen.generate(PROMPT, max_new_tokens=30)
    buffers = {k: id(v) for k, v in gen.decoder.cache.items()}
    stream = gen.stream("Something else entirely", max_new_tokens=30, temperature=1.0, seed=1)
    next(stream)
    assert gen.generate(PROMPT, max_new_tokens=30) == fresh
    with pytest.raises(ReelrtError, match="superseded"):
        list(stream)
    for _ in range(5):
        s = gen.stream(PROMPT, max_new_tokens=30)
        next(s)
        del s
    assert gen.generate(PROMPT, max_new_tokens=30) == fresh
    assert {k: id(v) for k, v in gen.decoder.cache.items()} == buffers  # allocated once, reused


def test_prompt_longer_than_the_context_needs_explicit_truncation(gen):
    long_prompt = "the value of the name " * 200
    with pytest.raises(InputError, match="maximum context"):
        gen.generate(long_prompt, max_new_tokens=10)
    with pytest.raises(InputError, match="maximum context"):
        gen.generate_ids(list(range(1, gen.max_context + 1)), max_new_tokens=1)
    text = gen.generate(long_prompt, max_new_tokens=10, truncate=True)
    tail = gen.tokenizer.decode(gen.tokenizer.encode(long_prompt).ids[-(gen.max_context - 10):])
    assert text == gen.generate(tail, max_new_tokens=10)


@pytest.mark.parametrize("call", [
    lambda g: g.generate(""),
    lambda g: g.generate([]),
    lambda g: g.generate(["ok", ""]),
    lambda g: g.generate(42),
    lambda g: list(g.stream("")),
    lambda g: g.generate("x", max_new_tokens=0),
    lambda g: g.generate("x", max_new_tokens=1.5),
    lambda g: g.generate("x", max_new_tokens=10_000),
    lambda g: g.generate("x", temperature=-1),
    lambda g: g.generate("x", temperature=float("nan")),
    lambda g: g.generate("x", top_p=0),
    lambda g: g.generate("x", top_p=1.5),
    lambda g: g.generate("x", top_k=-1),
    lambda g: g.generate("x", top_k=2.5),
    lambda g: g.generate("x", repetition_penalty=0),
    lambda g: g.generate("x", seed=-3),
    lambda g: g.generate("x", seed="s"),
    lambda g: g.generate("x", stop=[""]),
    lambda g: g.generate("x", stop=[3]),
    lambda g: g.generate_ids([]),
    lambda g: g.generate_ids([1, 10**6]),
    lambda g: g.generate_ids([1, -1]),
    lambda g: g.generate_ids([[1], []]),
    lambda g: g.generate_ids([1, 2], stop_token_ids=["a"]),
    lambda g: g.generate_ids(5),
    lambda g: g.generate_ids("abc"),
    lambda g: g.generate_ids([[1, 2], 3]),
    lambda g: g.stream_ids([[1, 2]]),
])
def test_bad_input_raises_input_error(gen, call):
    with pytest.raises(InputError):
        call(gen)


def test_detokenizer_never_splits_a_character(gen):
    text = "caf\u00e9 \u00fcn\u00efc\u00f6d\u00e9 \u65e5\u672c\u8a9e \U0001f3b2 \u2014 done"
    ids = gen.tokenizer.encode(text).ids
    detok = Detokenizer(gen.tokenizer)
    pieces = [detok.push(i) for i in ids] + [detok.flush()]
    assert "".join(pieces) == gen.tokenizer.decode(ids) == text
    assert not any("\ufffd" in p for p in pieces)
    assert len(ids) > len(text.split())  # the multi-byte characters really were split over tokens


def test_generation_runs_on_the_cpu_only(gpt2_tiny_bundle):
    from reelrt.runtime import BackendUnavailableError
    with pytest.raises(BackendUnavailableError):
        load(gpt2_tiny_bundle, device="cuda")


def test_stop_prefix_hold_back():
    assert _stop_prefix_length("hello wor", ["world"]) == 3
    assert _stop_prefix_length("hello", ["xyz"]) == 0
    assert _stop_prefix_length("ab", ["abc", "bq"]) == 2


def test_cli_run_streams_a_prompt(gpt2_tiny_bundle, capsys, gen):
    from reelrt.cli import main
    assert main(["run", str(gpt2_tiny_bundle), "--prompt", PROMPT, "--max-new-tokens", "12", "--threads", "1"]) == 0
    assert capsys.readouterr().out == printable(PROMPT + gen.generate(PROMPT, max_new_tokens=12)) + "\n"


def test_stream_ids_yields_what_generate_ids_returns(gen):
    ids = gen.tokenizer.encode(PROMPT).ids
    options = dict(max_new_tokens=20, temperature=0.7, seed=4, stop_token_ids=())
    assert list(gen.stream_ids(ids, **options)) == gen.generate_ids(ids, **options)
    with pytest.raises(InputError):
        gen.stream_ids([])


def test_each_token_costs_the_same_however_long_the_text(gen, monkeypatch):
    """No step re-decodes or re-searches the text so far: one DecodeStream step per token, and
    the stop search sees only the new piece and the few characters held back before it."""
    import tokenizers.decoders

    from reelrt.runtime.tasks.generation import pieces
    steps, searched = [], []
    real_stream, real_first_stop = tokenizers.decoders.DecodeStream, pieces._first_stop

    class CountingStream:
        def __init__(self, **kwargs):
            self.inner = real_stream(**kwargs)

        def step(self, tokenizer, token):
            steps.append(token)
            return self.inner.step(tokenizer, token)

    def first_stop(text, stops):
        searched.append(len(text))
        return real_first_stop(text, stops)

    monkeypatch.setattr(tokenizers.decoders, "DecodeStream", CountingStream)  # what Detokenizer imports
    monkeypatch.setattr(pieces, "_first_stop", first_stop)
    stop = "\x00never written"
    text = gen.generate(PROMPT, max_new_tokens=200, temperature=1.0, seed=3, stop=[stop])
    longest_token = max(len(gen.tokenizer.decode([i])) for i in range(gen.text_vocab))
    bound = len(stop) - 1 + 2 * longest_token   # held-back prefix + one released piece
    assert len(steps) == 200 and len(text) > 3 * bound
    assert max(searched) <= bound
    assert "".join(gen.stream(PROMPT, max_new_tokens=200, temperature=1.0, seed=3, stop=[stop])) == text
