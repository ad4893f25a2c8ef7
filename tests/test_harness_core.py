"""The benchmark core's statistics and interleaving (no heavy peers needed)."""
from __future__ import annotations

import pytest

from reelrt.bench.harness import Stats, System, interleave, measure, percentile, ratios


def test_percentiles_interpolate():
    data = [float(x) for x in range(1, 101)]
    assert percentile(data, 50) == pytest.approx(50.5)
    assert percentile(data, 90) == pytest.approx(90.1)
    assert percentile(data, 99) == pytest.approx(99.01)
    s = Stats.of([3.0, 1.0, 2.0])
    assert (s.median, s.n, s.mean) == (2.0, 3, 2.0)
    with pytest.raises(ValueError):
        Stats.of([])


def test_interleaving_order():
    calls = []
    steps = [lambda: calls.append("A"), lambda: calls.append("B")]
    interleave(steps, warmup=1, iterations=3, seconds=None)
    assert "".join(calls) == "AB" + "ABABAB"


def test_blocks_start_with_an_untimed_call():
    calls = []
    steps = [lambda: calls.append("A"), lambda: calls.append("B")]
    times, _ = interleave(steps, warmup=0, iterations=2, seconds=None, block=2)
    assert "".join(calls) == "AAABBB" * 2
    assert [len(t) for t in times] == [4, 4]


def test_time_budget_stops():
    times, _ = interleave([lambda: None], warmup=0, iterations=None, seconds=0.01)
    assert len(times[0]) >= 5


def make_sleep(ms: float, token_ms: float | None = None):
    import time

    def step():
        time.sleep(ms / 1e3)
        return {"decode_ms_per_token": token_ms} if token_ms else None
    return step


def test_measure_builds_from_factories_and_ratios():
    systems = [System("fast", "w", "test_harness_core:make_sleep", {"ms": 1}),
               System("slow", "w", "test_harness_core:make_sleep", {"ms": 4, "token_ms": 2.0})]
    results = measure(systems, warmup=1, iterations=10)
    assert results[0].latency_ms.median < results[1].latency_ms.median
    assert results[1].metrics["decode_ms_per_token"].median == 2.0
    r = ratios(results, baseline="slow")
    assert r["w / slow"] == 1.0 and r["w / fast"] < 0.7
