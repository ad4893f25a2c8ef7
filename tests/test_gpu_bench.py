"""bench/gpu.py's plumbing on the CPU (its GPU rows need a GPU and are not run here)."""
from __future__ import annotations

import json

import numpy as np

from reelrt.bench.gpu import build_systems, feeds_for, main


def test_feeds_are_the_reference_inputs_at_the_batch(tiny_text_bundle):
    from reelrt.runtime import open_bundle
    from reelrt.runtime.reference import reference_feeds
    bundle = open_bundle(tiny_text_bundle)
    reference = reference_feeds(bundle)
    feeds = feeds_for(bundle, batch=3)
    assert feeds["input_ids"].shape == (3, reference["input_ids"].shape[1])
    np.testing.assert_array_equal(feeds["lengths"], reference["lengths"][:3])


def test_cpu_smoke_run_writes_rows_per_workload(tiny_bundle, tmp_path, capsys):
    assert main(["--cnn", str(tiny_bundle), "--device", "cpu", "--iterations", "2", "--warmup", "0", "--out", str(tmp_path)]) == 0
    rows = json.loads((tmp_path / "gpu.json").read_text())["rows"]
    assert [r["workload"] for r in rows] == ["cnn batch 1", "cnn batch 32"]
    assert "| cnn batch 32 | reelrt cpu |" in capsys.readouterr().out


def test_pytorch_rows_are_added_only_when_a_builder_is_named(tiny_bundle):
    names = [(s.workload, s.name) for s in build_systems("cuda", cnn=str(tiny_bundle), gpt2="g", gpt2_checkpoint="ckpt")]
    assert ("cnn batch 1", "pytorch cuda eager") not in names
    assert ("gpt2 decode 32+128", "pytorch cuda eager") in names
    with_builder = build_systems("cuda", cnn=str(tiny_bundle), torch_cnn="pkg:build")
    assert ("cnn batch 32", "pytorch cuda eager") in [(s.workload, s.name) for s in with_builder]
