"""The host's say over the CPU: thread count, spinning and affinity reach ONNX Runtime, and
submit() answers a frame loop through a Future without blocking it."""
from __future__ import annotations

import os
import threading
from concurrent.futures import Future

import numpy as np
import pytest

from reelrt.cli import main
from reelrt.runtime import InputError, load
from reelrt.runtime.backends.session import ThreadPolicy, session_options

FRAME = np.random.default_rng(3).integers(0, 256, (40, 56, 3), dtype=np.uint8)
LINUX_AFFINITY = hasattr(os, "sched_getaffinity") and os.path.isdir("/proc/self/task")


def test_spinning_is_off_by_default_and_on_when_asked():
    off, on = session_options(ThreadPolicy()), session_options(ThreadPolicy(spin=True))
    for key in ("session.intra_op.allow_spinning", "session.inter_op.allow_spinning"):
        assert off.get_session_config_entry(key) == "0"
        assert on.get_session_config_entry(key) == "1"


def test_affinity_pins_every_pool_thread_to_the_cpus_given():
    options = session_options(ThreadPolicy(3, affinity=(0, 2)))
    assert options.intra_op_num_threads == 3
    # ONNX Runtime numbers processors from 1 and pins its count-1 pool threads
    assert options.get_session_config_entry("session.intra_op_thread_affinities") == "1,3;1,3"
    assert ThreadPolicy(affinity=(1, 0)).threads == 2


@pytest.mark.parametrize("bad", [{"count": 0}, {"count": 1.5}, {"spin": 1}, {"affinity": ()},
                                 {"affinity": (0, 0)}, {"affinity": (-1,)}])
def test_bad_policies_are_refused(bad):
    with pytest.raises(ValueError):
        ThreadPolicy(**bad)


def _thread_affinities() -> dict[int, set[int]]:
    return {int(t): os.sched_getaffinity(int(t)) for t in os.listdir("/proc/self/task")}


@pytest.mark.skipif(not LINUX_AFFINITY, reason="needs Linux thread affinity")
def test_pool_and_submit_threads_run_on_the_chosen_cpu(tiny_cnn_bundle):
    """The threads ONNX Runtime starts for the session, and the submit() worker, are pinned."""
    mine = os.sched_getaffinity(0)
    cpu = min(mine)
    before = set(_thread_affinities())
    clf = load(tiny_cnn_bundle, device="cpu", threads=2, affinity=[cpu])
    clf.submit(FRAME).result(timeout=30)
    new = {tid: cpus for tid, cpus in _thread_affinities().items() if tid not in before}
    clf.close()
    assert len(new) >= 2, "expected the ONNX Runtime pool thread and the submit() worker"
    assert all(cpus == {cpu} for cpus in new.values()), new
    assert os.sched_getaffinity(0) == mine, "the caller's own thread is the caller's to place"


@pytest.mark.parametrize("spin", [False, True])
def test_answers_do_not_depend_on_the_policy(tiny_cnn_bundle, spin):
    reference = load(tiny_cnn_bundle, device="cpu", threads=1).logits(FRAME)
    np.testing.assert_allclose(load(tiny_cnn_bundle, device="cpu", threads=2, spin=spin).logits(FRAME), reference,
                               rtol=1e-5, atol=1e-6)


def test_submit_returns_a_future_with_the_answer(tiny_cnn_bundle):
    with load(tiny_cnn_bundle, device="cpu", threads=1) as clf:
        futures = [clf.submit(FRAME, top_k=2) for _ in range(5)]
        assert all(isinstance(f, Future) for f in futures)
        expected = clf.classify(FRAME, top_k=2)
        assert [f.result(timeout=30) for f in futures] == [expected] * 5
        worker = futures[0]
    assert worker.done()


def test_submit_delivers_errors_through_the_future(tiny_cnn_bundle):
    clf = load(tiny_cnn_bundle, device="cpu", threads=1)
    bad = clf.submit(np.zeros((8, 8, 5), np.uint8))
    good = clf.submit(FRAME)
    with pytest.raises(InputError, match="channels"):
        bad.result(timeout=30)
    assert good.result(timeout=30)  # a failed call does not stop the worker
    clf.close()


def test_close_stops_the_worker_and_submit_starts_a_new_one(tiny_cnn_bundle):
    clf = load(tiny_cnn_bundle, device="cpu", threads=1)
    clf.submit(FRAME).result(timeout=30)
    names = lambda: {t.name for t in threading.enumerate() if t.name.startswith("reelrt-ImageClassifier")}
    assert names()
    clf.close()
    assert not names()
    assert clf.submit(FRAME).result(timeout=30)
    clf.close()


def test_text_classifier_and_generator_submit_their_main_call(tiny_text_bundle, gpt2_tiny_bundle):
    with load(tiny_text_bundle, device="cpu", threads=1) as clf:
        assert clf.submit(["a text", "another"], top_k=1).result(timeout=30) == clf.classify(["a text", "another"], top_k=1)
    with load(gpt2_tiny_bundle, threads=1) as gen:
        assert gen.submit("The", max_new_tokens=4).result(timeout=60) == gen.generate("The", max_new_tokens=4)


def test_cli_run_takes_threads_and_spin(tiny_cnn_bundle, tmp_path, capsys):
    import cv2
    image = tmp_path / "frame.png"
    cv2.imwrite(str(image), FRAME)
    assert main(["run", str(tiny_cnn_bundle), "--image", str(image), "--threads", "1", "--spin", "--top-k", "1"]) == 0
    assert str(image) in capsys.readouterr().out
    with pytest.raises(SystemExit) as exc:
        main(["run", str(tiny_cnn_bundle), "--image", str(image), "--threads", "0"])
    assert exc.value.code == 2
