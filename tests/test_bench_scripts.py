"""The benchmark scripts run end to end on tiny bundles (their figures are not checked here:
speed belongs to the benchmarks, this only keeps the scripts working)."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest


@pytest.mark.slow
def test_gameloop_reports_every_configuration(tiny_cnn_bundle, tmp_path):
    out = tmp_path / "gameloop.json"
    # a child process: the loop pins its own thread to one CPU
    subprocess.run([sys.executable, "-m", "reelrt.bench.gameloop", str(tiny_cnn_bundle), "--rounds", "1",
                    "--frames", "6", "--render-ms", "1", "--json", str(out)], check=True, capture_output=True)
    summary = json.loads(out.read_text())["summary"]
    assert {"loop alone", "spin off", "spin on"} <= set(summary)
    assert summary["loop alone"]["latency_p50_ms"] is None
    for name in set(summary) - {"loop alone"}:
        assert summary[name]["answered_per_frame"] > 0
        assert 0 < summary[name]["latency_p50_ms"] <= summary[name]["latency_p99_ms"]


def test_batch_step_times_each_row_count_and_attributes_the_step(gpt2_tiny_bundle, tmp_path, capsys):
    from reelrt.bench.batch_step import main
    out = tmp_path / "batch.json"
    assert main([str(gpt2_tiny_bundle), "--rows", "1,3", "--context", "8", "--steps", "3", "--rounds", "1",
                 "--threads", "1", "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert set(report["step_ms"]) == {"1", "3"} and all(ms > 0 for ms in report["step_ms"].values())
    assert set(report["profile_one_thread_ms"]) == {"1", "3"}
    assert "GroupQueryAttention" in report["profile_one_thread_ms"]["3"]
    assert "| 3 |" in capsys.readouterr().out


@pytest.mark.slow
def test_serving_bench_runs_a_server_and_the_in_process_baseline(gpt2_tiny_bundle, tmp_path, capsys):
    from reelrt.bench.serving import main
    out = tmp_path / "serving.json"
    assert main([str(gpt2_tiny_bundle), "--clients", "1,2", "--requests", "1", "--threads", "1", "--no-spin",
                 "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert set(report["results"]["reelrt"]) == {"1", "2"} and report["in_process"]["tokens_per_s"] > 0
    # one event per token whose text is complete: a token holding part of a character waits for the next
    assert 0.5 * report["new_tokens"] < report["results"]["reelrt"]["2"]["events_per_request"] <= report["new_tokens"]


def test_preprocessing_bench_times_every_interpolation_with_and_without_opencv(tmp_path, capsys):
    from reelrt.bench.preprocessing import INTERPOLATIONS, main
    out = tmp_path / "pre.json"
    assert main(["--size", "16", "--resize", "18", "--gaps", "none,2", "--rounds", "1", "--calls", "1",
                 "--json", str(out)]) == 0
    rows = json.loads(out.read_text())["rows"]
    assert {r["interpolation"] for r in rows if r["backend"] == "opencv"} == set(INTERPOLATIONS)
    assert {r["interpolation"] for r in rows if r["backend"] == "numpy"} == \
        set(INTERPOLATIONS) - {"cubic", "nearest", "lanczos"}
    assert all(r["median_ms"] > 0 for r in rows)
    assert not any(r["reducing_gap"] for r in rows if r["interpolation"] in ("nearest", "pil-nearest"))
    assert "| numpy | pil-bicubic | 2.0 |" in capsys.readouterr().out


def test_structured_bench_reports_the_constraints_cost_and_runs_per_token(gpt2_tiny_bundle, tmp_path, capsys):
    from reelrt.bench.structured import main
    out = tmp_path / "structured.json"
    assert main([str(gpt2_tiny_bundle), "--requests", "2", "--threads", "1", "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["requests"] == 2 and report["tokens"] == sum(r["tokens"] for r in report["rows"])
    assert 0 < report["model_runs_per_token"] < 1   # forced tokens ride along with sampled ones
    assert report["constraint_ms_per_token"] > 0 and "% of a decode step" in capsys.readouterr().out
