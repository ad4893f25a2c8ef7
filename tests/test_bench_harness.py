"""The harness beyond its core: peers named in rows, baselines, per-system build errors."""
from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from reelrt.bench.harness import (PEERS, Result, Stats, System, baselines, fastest_peers, measure, one_line, ratios,
                                  thread_env)


@given(st.lists(st.floats(0, 1e6, allow_nan=False), min_size=1, max_size=200))
def test_percentiles_are_ordered_and_bounded(samples):
    s = Stats.of(samples)
    assert min(samples) <= s.median <= s.p90 <= s.p99 <= max(samples)
    assert s.n == len(samples)


def row(name: str, workload: str, median: float, is_reelrt: bool = False, peer: str | None = None) -> Result:
    return Result(System(name, workload, "m:f", is_reelrt=is_reelrt, peer=peer), Stats.of([median]), {})


@pytest.mark.parametrize("name, expected", [("pytorch eager", "pytorch"), ("ONNX Runtime (naive export)", "ort-naive"),
                                            ("Optimum ORTModel", "optimum"), ("OpenCV DNN", "opencv-dnn"),
                                            ("openvino 2026", "openvino"), ("llama.cpp q4_0", "llama.cpp"),
                                            ("something else", None)])
def test_peer_guessed_from_the_row_name(name, expected):
    assert System(name, "w", "m:f").peer_name == expected
    assert expected is None or expected in PEERS


def test_explicit_peer_and_reelrt_rows():
    assert System("eager", "w", "m:f", peer="pytorch").peer_name == "pytorch"
    assert System("reelrt int8 (openvino)", "w", "m:f", is_reelrt=True).peer_name is None


def test_baselines_prefer_pytorch_then_a_peer_then_the_first_row():
    results = [row("reelrt int8", "a", 2, True), row("openvino", "a", 3), row("pytorch eager", "a", 8),
               row("reelrt fp32", "b", 4, True), row("ort naive", "b", 5),
               row("reelrt int4", "c", 6, True), row("reelrt fp32", "c", 7, True)]
    assert baselines(results) == {"a": "pytorch eager", "b": "ort naive", "c": "reelrt int4"}
    assert fastest_peers(results) == {"a": "openvino", "b": "ort naive"}


def test_ratios_stay_within_each_workload():
    results = [row("reelrt", "a", 2, True), row("pytorch eager", "a", 8),
               row("reelrt", "b", 30, True), row("pytorch eager", "b", 10)]
    r = ratios(results, baselines(results))
    assert r == {"a / reelrt": 0.25, "a / pytorch eager": 1.0, "b / reelrt": 3.0, "b / pytorch eager": 1.0}
    only_a = ratios(results, {"a": "pytorch eager"})
    assert set(only_a) == {"a / reelrt", "a / pytorch eager"}


def test_a_system_that_fails_to_build_is_left_out_and_reported():
    systems = [System("ok", "w", "fake_family:numpy_step", {"threads": 1}),
               System("broken", "w", "fake_family:failing_factory")]
    errors: dict[str, str] = {}
    results = measure(systems, warmup=0, iterations=3, errors=errors)
    assert [r.system.name for r in results] == ["ok"] and results[0].latency_ms.n == 3
    assert errors == {"broken": "RuntimeError: this peer cannot start"}
    with pytest.raises(RuntimeError):
        measure(systems, warmup=0, iterations=1)


def test_step_metrics_are_summarised():
    results = measure([System("gen", "w", "fake_family:generation_step", {"ms_per_token": 5.0})], warmup=0, iterations=4)
    assert results[0].metrics["decode_ms_per_token"].median == 5.0
    assert results[0].metrics["ttft_ms"].p99 == 10.0


def test_thread_env_and_one_line():
    env = thread_env(3)
    assert env["OMP_NUM_THREADS"] == "3" and env["MKL_NUM_THREADS"] == "3"
    assert one_line(ValueError("first\nsecond")) == "ValueError: first"
    assert one_line("  \n") == ""
