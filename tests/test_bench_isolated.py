"""Peak memory and cold start measured in a child process of its own."""
from __future__ import annotations

import numpy as np

from reelrt.bench.harness import System
from reelrt.bench.isolated import measure_isolated
from reelrt.bench.machine import peak_rss_bytes

MB = 1024 * 1024


def test_child_memory_is_its_own():
    held = np.ones(300 * MB // 8)  # the parent's memory must not count against the child
    assert peak_rss_bytes() > 300 * MB
    small = measure_isolated(System("small", "w", "fake_family:allocating_step", {"mb": 1}), threads=1)
    big = measure_isolated(System("big", "w", "fake_family:allocating_step", {"mb": 160}), threads=1)
    assert small.error is None and big.error is None
    assert 0 < small.peak_rss_bytes < 200 * MB
    assert big.peak_rss_bytes - small.peak_rss_bytes > 140 * MB
    assert held[0] == 1


def test_cold_start_spans_the_child_up_to_its_first_answer():
    slow = measure_isolated(System("slow", "w", "fake_family:allocating_step", {"mb": 1, "sleep_s": 0.4}), threads=1)
    assert slow.error is None and slow.cold_start_ms >= 400


def test_child_gets_the_same_thread_settings(tmp_path):
    seen = tmp_path / "threads.txt"
    assert measure_isolated(System("env", "w", "fake_family:env_step", {"path": str(seen)}), threads=3).error is None
    assert seen.read_text() == "3"


def test_failures_are_reported_not_raised():
    broken = measure_isolated(System("broken", "w", "fake_family:failing_factory"), threads=1)
    assert broken.peak_rss_bytes is None and broken.cold_start_ms is None
    assert "this peer cannot start" in broken.error
    missing = measure_isolated(System("missing", "w", "no_such_module_here:f"), threads=1)
    assert "No module named" in missing.error
    stuck = measure_isolated(System("stuck", "w", "fake_family:allocating_step", {"mb": 1, "sleep_s": 30}),
                             threads=1, timeout=1)
    assert stuck.error == "child run took over 1 s"
