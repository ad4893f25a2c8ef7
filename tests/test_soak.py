"""The soak in short: RSS, file descriptors and threads stay flat over thousands of calls
(the long run is `python -m reelrt.bench.soak`, figures in bench/RESULTS.md)."""
from __future__ import annotations

import mmap
import threading

import numpy as np
import pytest

from reelrt.bench.soak import Workload, generation_workload, image_workload, main, soak, text_workload


def test_classifiers_stay_flat(tiny_cnn_bundle, tiny_text_bundle):
    report = soak([image_workload(tiny_cnn_bundle, 2000), text_workload(tiny_text_bundle, 2000)], rounds=20)
    assert report.failures == [], report.table()
    assert report.end.calls == 4400 and len(report.samples) == 20


def test_generator_stays_flat(gpt2_tiny_bundle):
    """Whole generations and streams abandoned mid-way: the cache is reused, nothing accumulates."""
    report = soak([generation_workload(gpt2_tiny_bundle, 100)], rounds=10)
    assert report.failures == [], report.table()


def test_command_prints_the_table(tiny_cnn_bundle, tiny_text_bundle, capsys):
    assert main(["--classifications", "300", "--generations", "0", "--rounds", "5",
                 "--image", str(tiny_cnn_bundle), "--text", str(tiny_text_bundle)]) in (0, 1)
    out = capsys.readouterr().out
    assert "| after warm-up | 60 |" in out and "growth after warm-up" in out


# the soak must see each kind of leak: otherwise a flat report means nothing
kept: list = []


def leak_memory(i: int) -> None:
    """64 KB a call, in fresh anonymous pages: a heap allocation could reuse memory that earlier
    tests of the same process freed, and then RSS would not grow however much leaked."""
    pages = mmap.mmap(-1, 64 * 1024, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    pages.write(b"\1" * len(pages))
    kept.append(pages)


def leak_file(i: int) -> None:
    if i % 50 == 0:
        kept.append(open(__file__, "rb"))


def leak_thread(i: int) -> None:
    if i % 100 == 0:
        stop = threading.Event()
        kept.append(stop)
        threading.Thread(target=stop.wait, daemon=True).start()


@pytest.mark.parametrize("step, failure", [(leak_memory, "anonymous RSS grew"), (leak_file, "file descriptors grew"),
                                           (leak_thread, "threads grew")])
def test_each_kind_of_leak_is_reported(step, failure):
    try:
        report = soak([Workload("leaky", 1000, step)], rounds=10)
        assert any(failure in f for f in report.failures), report.failures
    finally:
        for x in kept:
            x.set() if isinstance(x, threading.Event) else x.close() if hasattr(x, "close") else None
        kept.clear()
