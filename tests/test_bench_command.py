"""`reelrt bench` and `reelrt demo` end to end on the tiny bundle, with a fake family module
standing in for reelrt.bench.<family> (the contract in tests/fake_family.py)."""
from __future__ import annotations

import json
import subprocess
import sys
import types

import pytest

import fake_family
from reelrt.bench.runner import FamilyUnavailable, family_module, parse_peers
from reelrt.bench.harness import THREAD_VARS, System
from reelrt.cli import main
from reelrt.runtime.errors import ReelrtError


@pytest.fixture(autouse=True)
def _restore_thread_env(monkeypatch):
    """The commands pin threads through the environment; keep that inside each test."""
    for name in THREAD_VARS:
        monkeypatch.setenv(name, "1")


def family(monkeypatch, name: str, module) -> None:
    monkeypatch.setitem(sys.modules, f"reelrt.bench.{name}", module)


def test_parse_peers():
    assert parse_peers("auto") is None and parse_peers("none") == set()
    assert parse_peers("pytorch, llama.cpp") == {"pytorch", "llama.cpp"}
    with pytest.raises(ReelrtError, match="unknown peer.*tensorflow"):
        parse_peers("pytorch,tensorflow")


def test_missing_family_module(monkeypatch):
    family(monkeypatch, "cnn", None)
    with pytest.raises(FamilyUnavailable, match="reelrt.bench.cnn"):
        family_module("cnn")


def test_bench_writes_three_outputs(tiny_bundle, tmp_path, monkeypatch, capsys):
    family(monkeypatch, "cnn", fake_family)
    out = tmp_path / "out"
    assert main(["bench", str(tiny_bundle), "--out", str(out), "--iterations", "5", "--threads", "1",
                 "--json", str(tmp_path / "copy.json")]) == 0
    data = json.loads((out / "results.json").read_text())
    assert data["settings"] == {"threads": 1, "warmup": 3, "iterations": 5, "seconds": None}
    assert data["command"].startswith(f"reelrt bench {tiny_bundle} --peers auto --threads 1")
    assert data["machine"]["bandwidth_gb_s"] > 0
    assert [(r["system"], r["latency_ms"]["n"]) for r in data["rows"]] == [("reelrt fp32", 8), ("pytorch eager", 8)]  # 5 rounded up to blocks of 4
    reelrt, torch = data["rows"]
    assert reelrt["speedup_vs_baseline"] == pytest.approx(torch["latency_ms"]["median"] / reelrt["latency_ms"]["median"])
    assert reelrt["size_bytes"] == (tiny_bundle / "model.onnx").stat().st_size and reelrt["throughput_per_s"] > 0
    for r in data["rows"]:
        assert r["isolated_error"] is None and r["peak_rss_bytes"] > 0 and r["cold_start_ms"] > 0
    assert {s["peer"]: s["reason"] for s in data["skipped"]} == {"llama.cpp": "not applicable to image classifiers",
                                                                "optimum": "not installed"}
    assert (out / "results.png").stat().st_size > 0 and json.loads((tmp_path / "copy.json").read_text()) == data
    printed = capsys.readouterr()
    assert "| **reelrt fp32** |" in printed.out and "results.png" in printed.out
    assert "cnn: peer optimum skipped: not installed" in printed.err


def test_bench_peers_select_rows(tiny_bundle, tmp_path, monkeypatch):
    family(monkeypatch, "cnn", fake_family)
    assert main(["bench", str(tiny_bundle), "--out", str(tmp_path), "--iterations", "2", "--peers", "none",
                 "--no-isolated"]) == 0
    data = json.loads((tmp_path / "results.json").read_text())
    assert [r["system"] for r in data["rows"]] == ["reelrt fp32"] and data["skipped"] == []
    assert data["rows"][0]["peak_rss_bytes"] is None and data["rows"][0]["speedup_vs_baseline"] == 1.0


def test_a_failing_peer_is_reported_and_the_rest_measured(tiny_bundle, tmp_path, monkeypatch):
    def systems(bundles, peers, threads):
        rows, skipped = fake_family.systems(bundles, peers, threads)
        return rows + [System("openvino", rows[0].workload, "fake_family:failing_factory")], skipped

    family(monkeypatch, "cnn", types.SimpleNamespace(systems=systems))
    assert main(["bench", str(tiny_bundle), "--out", str(tmp_path), "--iterations", "2", "--no-isolated"]) == 1
    data = json.loads((tmp_path / "results.json").read_text())
    assert [r["system"] for r in data["rows"]] == ["reelrt fp32", "pytorch eager"]
    assert data["errors"] == [{"family": "cnn", "system": f"{data['rows'][0]['workload']} / openvino",
                               "error": "RuntimeError: this peer cannot start"}]


def test_a_missing_family_is_reported_not_fatal(tiny_bundle, tmp_path, monkeypatch, capsys):
    family(monkeypatch, "cnn", None)
    assert main(["bench", str(tiny_bundle), "--out", str(tmp_path), "--iterations", "2"]) == 1
    data = json.loads((tmp_path / "results.json").read_text())
    assert data["rows"] == [] and "no benchmark module reelrt.bench.cnn" in data["errors"][0]["error"]
    assert "cnn: not measured" in capsys.readouterr().err


def test_bench_refuses_bad_arguments(tmp_path, capsys):
    assert main(["bench", str(tmp_path / "nowhere")]) == 2
    assert "not a bundle directory" in capsys.readouterr().err
    assert main(["bench", str(tmp_path / "nowhere"), "--peers", "pytorch,tflite"]) == 2
    assert "unknown peer(s) tflite" in capsys.readouterr().err


def fake_demo(name: str):
    """The fake family's demo, building its bundle in a folder of its own."""
    from reelrt.bench.demo import Demo
    return Demo(lambda workdir: fake_family.demo(workdir / name), fake_family.show)


def test_demo_shows_answers_and_a_table(tmp_path, monkeypatch, capsys):
    from reelrt.bench import demo
    monkeypatch.setattr(demo, "DEMOS", {name: fake_demo(name) for name in ("cnn", "lstm", "gpt2")})
    for name in ("cnn", "lstm", "gpt2"):
        family(monkeypatch, name, types.SimpleNamespace(systems=fake_family.systems))
    monkeypatch.setenv("REELRT_DEMO_DIR", str(tmp_path / "demo"))
    assert main(["demo", "--seconds", "0.01", "--out", str(tmp_path / "reports")]) == 0
    out = capsys.readouterr().out
    assert out.count("tiny answers:") == 3 and "== gpt2: building the demo bundles" in out
    assert out.count("| **reelrt fp32** |") == 3 and out.count("| pytorch eager |") == 3
    assert "reelrt demo: done" in out
    assert json.loads((tmp_path / "reports" / "results.json").read_text())["command"] == "reelrt demo"
    # a second run reuses the bundles it built
    built = (tmp_path / "demo" / "cnn" / "tiny-demo" / "manifest.json").stat().st_mtime_ns
    assert main(["demo", "--seconds", "0.01", "--out", str(tmp_path / "reports")]) == 0
    assert (tmp_path / "demo" / "cnn" / "tiny-demo" / "manifest.json").stat().st_mtime_ns == built


def test_demo_goes_on_past_failing_families(tmp_path, monkeypatch, capsys):
    from reelrt.bench import demo

    def broken_build(workdir):
        raise RuntimeError("no checkpoint")

    def broken_show(bundle):
        raise RuntimeError("cannot answer")

    monkeypatch.setattr(demo, "DEMOS", {"cnn": fake_demo("cnn"), "lstm": demo.Demo(fake_demo("lstm").build, broken_show),
                                        "gpt2": demo.Demo(broken_build, fake_family.show)})
    family(monkeypatch, "cnn", types.SimpleNamespace(systems=fake_family.systems))
    assert main(["demo", "--workdir", str(tmp_path), "--seconds", "0.01", "--out", str(tmp_path / "reports")]) == 1
    out = capsys.readouterr().out
    assert "lstm FAILED to answer: RuntimeError: cannot answer" in out
    assert "gpt2 FAILED: RuntimeError: no checkpoint" in out
    assert "tiny answers:" in out and "| **reelrt fp32** |" in out
    assert "finished with failures in lstm, gpt2" in out


def test_bench_modules_import_nothing_heavy():
    probe = ("import sys, reelrt.bench.runner, reelrt.bench.demo, reelrt.bench.report, reelrt.bench.machine;"
             "print(sorted(m for m in ('torch', 'matplotlib', 'transformers', 'tqdm') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
