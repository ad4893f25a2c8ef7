"""One loaded classifier shared by 8 threads, 1000 calls each, gives exactly the answers one thread gives.

Each thread walks the inputs in its own order, with batches of several sizes, so a buffer or
a result shared between threads would hand one thread another's pixels or logits.
"""
from __future__ import annotations

import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from reelrt.runtime import load
from reelrt.runtime.tasks.model import Model

THREADS, CALLS = 8, 1000


def hammer(work, inputs: list, expected: list) -> None:
    """Run work(input) THREADS x CALLS times, each thread in its own order; compare bitwise."""
    start = threading.Barrier(THREADS)

    def worker(t: int) -> list[int]:
        start.wait()  # all threads begin together
        wrong = []
        for i in range(CALLS):
            k = (i * (2 * t + 1) + t) % len(inputs)
            got = work(inputs[k])
            if not np.array_equal(got, expected[k]):
                wrong.append(k)
        return wrong

    with ThreadPoolExecutor(THREADS) as pool:
        wrong = [w for ws in pool.map(worker, range(THREADS)) for w in ws]
    assert not wrong, f"{len(wrong)} of {THREADS * CALLS} answers differ from one thread's"


def test_image_classifier_shared_by_threads(tiny_cnn_bundle):
    clf = load(tiny_cnn_bundle, device="cpu", threads=1)
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 256, (16 + i, 20 + 2 * i, 3), np.uint8) for i in range(12)]
    # single frames and batches of 2 and 3: the per-thread buffer grows and shrinks under load
    inputs = [frames[i] for i in range(12)] + [frames[i:i + 2] for i in range(6)] + [frames[i:i + 3] for i in range(6)]
    expected = [clf.logits(x) for x in inputs]
    hammer(clf.logits, inputs, expected)


def test_text_classifier_shared_by_threads(tiny_text_bundle):
    clf = load(tiny_text_bundle, device="cpu", threads=1)
    words = "the cat sat on mat dogs chase cats in garden ship warped away captain bridge".split()
    rng = np.random.default_rng(1)
    texts = [" ".join(rng.choice(words, rng.integers(1, 12))) for _ in range(20)]
    inputs = texts + [texts[i:i + 5] for i in range(0, 20, 5)]
    expected = [clf.probabilities([x] if isinstance(x, str) else x) for x in inputs]
    hammer(lambda x: clf.probabilities([x] if isinstance(x, str) else x), inputs, expected)


class OneAtATime:
    """A backend like OpenVINO's reused infer request: entering it twice at once is a bug."""
    name, input_names, output_names = "fake", ["pixels"], ["logits"]

    def __init__(self):
        self.inside = 0
        self.overlaps = 0

    def run(self, feeds):
        self.inside += 1
        if self.inside > 1:
            self.overlaps += 1
        threading.Event().wait(0.0005)
        self.inside -= 1
        return [feeds["pixels"].reshape(len(feeds["pixels"]), -1)[:, :3]]


@pytest.mark.parametrize("thread_safe", [False, True])
def test_backends_that_are_not_thread_safe_run_one_call_at_a_time(tiny_bundle, monkeypatch, thread_safe):
    backend = OneAtATime()
    if thread_safe:
        backend.thread_safe = True  # a backend that says so is trusted to run concurrently
    monkeypatch.setattr("reelrt.runtime.tasks.model.open_backend", lambda *a, **k: backend)
    from reelrt.runtime import open_bundle
    model = Model(open_bundle(tiny_bundle), device="cpu")
    feeds = {"pixels": np.zeros((1, 3, 4, 4), np.float32)}
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda _: model.run(feeds), range(200)))
    assert (backend.overlaps == 0) if not thread_safe else (backend.overlaps > 0)


# -- text generation: one generator per thread -------------------------------------------------

PROMPTS = ["The dragon said", "Once upon a time", "In the tavern", "Level up!"]


def test_one_generator_per_thread_gives_one_threads_answers(gpt2_tiny_bundle):
    """8 threads, each with its own generator of one bundle, sampling with seeds: the same text as alone."""
    gens = [load(gpt2_tiny_bundle, device="cpu", threads=1) for _ in range(THREADS)]
    calls = [(PROMPTS[i % 4], dict(max_new_tokens=6, temperature=0.9, top_p=0.95, seed=i)) for i in range(24)]
    expected = [gens[0].generate(p, **k) for p, k in calls]

    def worker(t: int) -> list[int]:
        order = [(i * (2 * t + 1) + t) % len(calls) for i in range(len(calls))]
        return [i for i in order if gens[t].generate(calls[i][0], **calls[i][1]) != expected[i]]

    with ThreadPoolExecutor(THREADS) as pool:
        assert [w for ws in pool.map(worker, range(THREADS)) for w in ws] == []


def test_a_generator_busy_in_another_thread_refuses_at_once(gpt2_tiny_bundle):
    from reelrt.runtime import ReelrtError
    gen = load(gpt2_tiny_bundle, device="cpu", threads=1)
    expected = gen.generate("Level up!", max_new_tokens=4)
    stream = gen.stream("The dragon said", max_new_tokens=20)
    next(stream)  # a generation of this thread is in progress

    def elsewhere():
        return gen.generate("Level up!", max_new_tokens=4)
    with ThreadPoolExecutor(1) as pool:
        with pytest.raises(ReelrtError, match="another thread"):
            pool.submit(elsewhere).result()
        with pytest.raises(ReelrtError, match="another thread"):
            pool.submit(lambda: list(gen.stream("x", max_new_tokens=2))).result()
        assert next(stream)  # the refused calls did not disturb this thread's generation
        stream.close()  # finished with: the generator may now serve another thread
        assert pool.submit(elsewhere).result() == expected
    # this thread may still supersede its own unfinished stream (and the old one then says so)
    first = gen.stream("Once upon a time", max_new_tokens=20)
    next(first)
    assert gen.generate("Level up!", max_new_tokens=4) == expected
    with pytest.raises(ReelrtError, match="superseded"):
        list(first)


def test_thread_safety_cost_experiment_runs(tiny_cnn_bundle):
    script = Path(__file__).resolve().parent.parent / "bench" / "experiments" / "threads.py"
    run = subprocess.run([sys.executable, str(script), str(tiny_cnn_bundle), "--rounds", "2", "--calls", "3"],
                         capture_output=True, text=True, check=True)
    out = run.stdout
    assert "| per-thread buffer |" in out and "| shared buffer |" in out
