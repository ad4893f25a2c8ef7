"""SlotGenerator: many generations on one decoder give what TextGenerator gives alone."""
from __future__ import annotations

import threading

import numpy as np

import pytest

from reelrt.runtime import InputError, ReelrtError, load
from reelrt.runtime.tasks.backpressure import QueueFullError
from reelrt.runtime.tasks.generation.request import Finish
from reelrt.runtime.tasks.generation.slots import SlotGenerator

PROMPTS = [f"Rumour {i}: the miller" + " said" * i for i in range(9)]


@pytest.fixture(scope="module")
def gen(gpt2_tiny_bundle):
    return load(gpt2_tiny_bundle, threads=1)


def _together(slots: SlotGenerator, calls) -> list:
    out = [None] * len(calls)

    def run(i):
        out[i] = calls[i]()
    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return out


def test_answers_alone_equal_answers_in_a_full_batch(gen):
    greedy = [gen.generate(p, max_new_tokens=40) for p in PROMPTS]
    sampled = [gen.generate(p, max_new_tokens=30, temperature=0.9, top_k=50, repetition_penalty=1.3, seed=i)
               for i, p in enumerate(PROMPTS)]
    ids = [gen.generate_ids([3, 4, 5 + i], max_new_tokens=20, stop_token_ids=()) for i in range(3)]
    stop = greedy[0][3:5]
    stopped = gen.generate(PROMPTS[0], max_new_tokens=40, stop=[stop])
    with SlotGenerator(gen, slots=8, prefill_chunk=4) as slots:
        assert _together(slots, [lambda p=p: slots.generate(p, max_new_tokens=40) for p in PROMPTS]) == greedy
        assert _together(slots, [lambda i=i, p=p: slots.generate(p, max_new_tokens=30, temperature=0.9, top_k=50,
                                                                 repetition_penalty=1.3, seed=i)
                                 for i, p in enumerate(PROMPTS)]) == sampled
        assert [list(slots.stream_ids([3, 4, 5 + i], 20, stop_token_ids=())) for i in range(3)] == ids
        assert slots.steps < 9 * 40  # rows were decoded together
        assert "".join(slots.stream(PROMPTS[0], 40, stop=[stop])) == stopped


def test_a_shared_prefix_is_prefilled_once(gen):
    persona = [7, 8, 9, 10, 11, 12, 13, 14]
    want = gen.generate_ids(persona + [30, 31, 32], 5, stop_token_ids=())
    events = []
    with SlotGenerator(gen, slots=2) as slots:
        for tail in ([20, 21], [30, 31, 32]):
            done = threading.Event()
            req = slots.request(persona + tail, 5, stop_token_ids=())
            slots.submit(req, lambda e: (events.append(e), isinstance(e, Finish) and done.set()))
            done.wait(30)
        finishes = [e for e in events if isinstance(e, Finish)]
        assert [f.cached_tokens for f in finishes] == [0, len(persona)]
        tokens = [e.token for e in events if not isinstance(e, Finish)]
        assert tokens[5:] == want


def test_cancel_frees_the_slot_and_a_full_line_refuses(gen):
    hello = gen.generate("Hello", max_new_tokens=4)
    with SlotGenerator(gen, slots=1, max_waiting=1) as slots:
        first = []
        job = slots.submit(slots.request([5, 6], 200, stop_token_ids=()), first.append)
        job.cancel()
        jobs = []
        with pytest.raises(QueueFullError):
            for _ in range(50):  # one runs, one waits, the next is refused while the slot is busy
                jobs.append(slots.submit(slots.request([5, 6], 200, stop_token_ids=()), lambda e: None))
        for j in jobs:
            j.cancel()
        assert slots.generate("Hello", 4) == hello
        assert isinstance(first[-1], Finish) and first[-1].completion_tokens < 200
        with pytest.raises(InputError):
            slots.request([], 4)
        with pytest.raises(InputError):
            slots.request([1, 2], 0)
    with pytest.raises(ReelrtError, match="closed"):
        slots.submit(slots.request([5], 2), lambda e: None)
    assert gen.generate("Hello", max_new_tokens=4)  # the generator is its own again


def test_text_generator_refuses_while_slots_own_its_decoder(gen):
    with SlotGenerator(gen, slots=1):
        with pytest.raises(ReelrtError, match="lent to a SlotGenerator"):
            gen.generate("Hello", max_new_tokens=2)
        with pytest.raises(ReelrtError, match="in use"):   # one scheduler per decoder
            SlotGenerator(gen, slots=1)
    assert isinstance(gen.generate("Hello", max_new_tokens=2), str)
    stream = gen.stream("Hello", max_new_tokens=8)
    next(stream)                                         # a generation in progress is not taken from under it
    with pytest.raises(ReelrtError, match="in use"):
        SlotGenerator(gen, slots=1)
    stream.close()


class Refusing:
    """A constraint that admits no token: what a grammar the tokenizer cannot spell does."""

    def allowed(self):
        raise InputError("the grammar admits no token of this vocabulary")

    def accept(self, token_id):
        raise AssertionError("nothing was allowed")

    def forced(self, limit=None):
        return []

    def is_done(self):
        return False

    def start_mask(self):
        pass


def test_a_requests_failing_constraint_ends_that_request_only(gen):
    hello = gen.generate("Hello", max_new_tokens=6)
    with SlotGenerator(gen, slots=2) as slots:
        events, done = [], threading.Event()
        slots.submit(slots.request([5, 6], 8, constraint=Refusing),
                     lambda e: (events.append(e), isinstance(e, Finish) and done.set()))
        assert slots.generate("Hello", 6) == hello
        assert done.wait(30)
        assert events == [Finish("error", 2, 0, 0, "the grammar admits no token of this vocabulary")]
        assert slots.generate("Hello", 6) == hello   # the worker lives on


def test_the_runner_decodes_any_set_of_rows_and_keeps_the_others(gen):
    """Rows 0 and 2 step while row 1 (prefilling, or idle) keeps its length and its cache; a row's
    logits are the same as when it steps alone, and a row's prefix copied to another row continues
    as the original does."""
    runner = gen.lend_decoder()
    try:
        runner.start(3)
        prompts = [[5, 6, 7], [8, 9], [10, 11, 12, 13]]
        for row, ids in enumerate(prompts):
            runner.prefill(row, np.asarray(ids, np.int64))
        both = runner.decode_rows(np.array([2, 0]), np.array([40, 30])).copy()
        assert [runner.length(r) for r in range(3)] == [4, 2, 5]
        runner.copy_row(0, 1, 4)
        alone = runner.decode_rows(np.array([1]), np.array([31]))[1].copy()   # row 1 now holds row 0's tokens
        assert [runner.length(r) for r in range(3)] == [4, 5, 5]
        runner.truncate(0, 3)
        again = runner.decode_rows(np.array([0]), np.array([30]))[0].copy()
        np.testing.assert_array_equal(again, both[0])
        runner.start(1)   # the same tokens by the same path on a row of its own
        runner.prefill(0, np.asarray(prompts[0], np.int64))
        runner.decode_rows(np.array([0]), np.array([30]))
        np.testing.assert_array_equal(runner.decode_rows(np.array([0]), np.array([31]))[0], alone)
    finally:
        gen.take_back_decoder()
