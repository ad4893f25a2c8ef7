"""The three outputs of a run: JSON (the documented schema), Markdown and a PNG plot."""
from __future__ import annotations

import json

import pytest

from reelrt.bench.harness import Result, Stats, System
from reelrt.bench.isolated import Isolated
from reelrt.bench.report import SCHEMA, Run, markdown, to_json, write

MACHINE = {"cpu": "Test CPU", "physical_cores": 2, "threads": 2, "flags": ["avx512f"], "memory_bytes": 2**34,
           "bandwidth_gb_s": 10.0}
GEN, IMG = "gpt2 prompt 32 + 64 tokens", "digits batch 1"


def result(name, workload, latencies, is_reelrt=False, size=None, decode=None, per_token=None) -> Result:
    metrics = {"decode_ms_per_token": Stats.of(decode), "ttft_ms": Stats.of([1.0])} if decode else {}
    return Result(System(name, workload, "m:f", is_reelrt=is_reelrt, size_bytes=size, batch=1 if decode else 4,
                         bytes_per_token=per_token), Stats.of(latencies), metrics)


@pytest.fixture
def run() -> Run:
    return Run(command="reelrt bench x", settings={"threads": 2, "warmup": 1, "iterations": 3, "seconds": None},
               machine=MACHINE,
               results=[result("reelrt int4", GEN, [5.0, 5.0, 6.0], True, size=80_000_000, decode=[4.0, 5.0],
                               per_token=50_000_000),
                        result("pytorch eager", GEN, [20.0, 20.0], decode=[10.0]),
                        result("llama.cpp q4_0", GEN, [4.0], decode=[2.0]),
                        result("reelrt int8", IMG, [2.0], True, size=1_000_000),
                        result("reelrt fp32", IMG, [4.0], True)],
               isolated={(GEN, "reelrt int4"): Isolated(123_000_000, 250.0),
                         (GEN, "pytorch eager"): Isolated(error="child run took over 300 s")},
               skipped=[{"family": "gpt2", "peer": "optimum", "reason": "not installed"}],
               errors=[{"family": "gpt2", "system": f"{GEN} / openvino", "error": "RuntimeError: boom"}])


def test_json_rows_and_ratios(run):
    data = json.loads(json.dumps(to_json(run)))
    assert data["schema"] == SCHEMA and data["machine"] == MACHINE and data["command"] == "reelrt bench x"
    assert data["baselines"] == {GEN: "pytorch eager", IMG: "reelrt int8"}
    assert data["fastest_peers"] == {GEN: "llama.cpp q4_0"}
    rows = {(r["workload"], r["system"]): r for r in data["rows"]}
    int4 = rows[(GEN, "reelrt int4")]
    assert int4["latency_ms"]["median"] == 5.0 and int4["latency_ms"]["n"] == 3
    assert int4["speedup_vs_baseline"] == pytest.approx(4.0)
    assert int4["speedup_vs_fastest_peer"] == pytest.approx(0.8)
    assert int4["tokens_per_s"] == pytest.approx(1000 / 4.5)
    assert int4["bandwidth_floor_ms_per_token"] == pytest.approx(5.0)  # 50 MB read per token at 10 GB/s
    assert rows[(GEN, "llama.cpp q4_0")]["bandwidth_floor_ms_per_token"] is None  # bytes per token unknown
    assert (int4["peak_rss_bytes"], int4["cold_start_ms"], int4["isolated_error"]) == (123_000_000, 250.0, None)
    assert int4["peer"] is None and rows[(GEN, "pytorch eager")]["peer"] == "pytorch"
    assert rows[(GEN, "pytorch eager")]["isolated_error"] == "child run took over 300 s"
    fp32 = rows[(IMG, "reelrt fp32")]
    assert fp32["throughput_per_s"] == pytest.approx(1000.0)  # batch 4 in 4 ms
    assert fp32["speedup_vs_baseline"] == pytest.approx(0.5) and fp32["speedup_vs_fastest_peer"] is None
    assert fp32["tokens_per_s"] is None and fp32["peak_rss_bytes"] is None
    assert data["skipped"] == run.skipped and data["errors"] == run.errors


def test_markdown_has_a_table_per_workload(run):
    text = markdown(to_json(run))
    assert "- machine: Test CPU, 2 cores, 2 threads used, avx512f, 16 GiB, triad bandwidth 10.0 GB/s" in text
    gen = text.split(f"## {GEN}")[1].split("## ")[0]
    assert "| system | median ms | p90 ms | p99 ms | per s | TTFT ms | decode ms/token | tokens/s | floor ms/token |" in gen
    assert "vs pytorch eager | vs fastest peer |" in gen
    assert "| **reelrt int4** | 5 | 5.8 | 5.98 | 200 | 1 | 4.5 | 222 | 5 | 123 | 250 | 80 | 4.00x | 0.80x |" in gen
    img = text.split(f"## {IMG}")[1]
    assert "TTFT" not in img.split("\n\n")[1] and "vs fastest peer" not in img.split("\n\n")[1]
    assert "| **reelrt fp32** | 4 | 4 | 4 | 1000 | – | – | – | 0.50x |" in img
    assert "- skipped gpt2 optimum: not installed" in text
    assert f"- error gpt2 {GEN} / openvino: RuntimeError: boom" in text
    assert "memory and cold start not measured: child run took over 300 s" in text
    assert not markdown(to_json(run), header=False).startswith("# reelrt bench")


def test_write_produces_the_three_files(run, tmp_path):
    paths = write(run, tmp_path / "out", extra_json=tmp_path / "copy" / "r.json")
    assert json.loads(paths["json"].read_text())["rows"][0]["system"] == "reelrt int4"
    assert (tmp_path / "copy" / "r.json").read_text() == paths["json"].read_text()
    assert paths["markdown"].read_text().startswith("# reelrt bench")
    import matplotlib.image
    image = matplotlib.image.imread(paths["plot"])
    assert paths["plot"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and image.shape[0] > 200


def test_an_empty_run_still_writes_its_outputs(tmp_path):
    paths = write(Run(command="c", settings={}, machine={}), tmp_path)
    assert json.loads(paths["json"].read_text())["rows"] == []
    assert paths["plot"].stat().st_size > 0
