"""bench/gpu.py's plumbing on the CPU (its GPU rows need a GPU and are not run here)."""
from __future__ import annotations

import json

import numpy as np

from reelrt.bench.gpu import build_systems, feeds_for, main
from reelrt.runtime.bundle.manifest import Manifest, TensorSpec


def test_feeds_follow_the_manifest():
    manifest = Manifest(family="lstm", task="text-classification", precision="fp32", model="m.onnx",
                        inputs=[TensorSpec("input_ids", "int64", ("batch", "sequence")), TensorSpec("lengths", "int64", ("batch",))],
                        outputs=[TensorSpec("logits", "float32", ("batch", 2))], artifacts={})
    feeds = feeds_for(manifest, batch=3, sequence=128)
    assert feeds["input_ids"].shape == (3, 128) and feeds["input_ids"].max() < 100
    assert (feeds["lengths"] == 128).all() and feeds["lengths"].dtype == np.int64


def test_cpu_smoke_run_writes_rows_per_workload(tiny_bundle, tmp_path, capsys):
    assert main(["--cnn", str(tiny_bundle), "--device", "cpu", "--iterations", "2", "--warmup", "0", "--out", str(tmp_path)]) == 0
    rows = json.loads((tmp_path / "gpu.json").read_text())["rows"]
    assert [r["workload"] for r in rows] == ["cnn batch 1", "cnn batch 32"]
    assert "| cnn batch 32 | reelrt cpu |" in capsys.readouterr().out


def test_pytorch_rows_are_added_only_when_a_builder_is_named(tiny_bundle):
    import argparse
    args = argparse.Namespace(cnn=str(tiny_bundle), torch_cnn=None, torch_cnn_kwargs="{}", lstm=None, torch_lstm=None,
                              torch_lstm_kwargs="{}", gpt2="g", gpt2_checkpoint="ckpt", device="cuda")
    names = [(s.workload, s.name) for s in build_systems(args)]
    assert ("cnn batch 1", "pytorch cuda eager") not in names
    assert ("gpt2 decode 32+128", "pytorch cuda eager") in names
    args.torch_cnn = "pkg:build"
    assert ("cnn batch 32", "pytorch cuda eager") in [(s.workload, s.name) for s in build_systems(args)]
