"""bench/cnn.py: the rows it offers, the peers it skips, and that every factory answers."""
from __future__ import annotations

import json

import pytest

from reelrt.bench import cnn
from reelrt.bench.harness import System, measure
from reelrt.runtime import open_bundle


def test_reelrt_rows_for_every_workload_and_skipped_peers_with_reasons(tiny_cnn_bundle):
    rows, skipped = cnn.systems([open_bundle(tiny_cnn_bundle)], None, 1)
    assert {r.workload for r in rows} == {"tiny batch 1", "tiny batch 8", "tiny 1080p frame"}
    assert len(rows) == 4
    assert all(r.is_reelrt and r.size_bytes > 0 for r in rows)
    assert set(skipped) == {"pytorch", "ort-naive", "opencv-dnn", "openvino", "optimum", "llama.cpp"}
    for r in rows:
        json.dumps(r.kwargs)     # rebuildable in a child process
    results = measure(rows, warmup=1, iterations=3)
    assert all(r.latency_ms.median > 0 for r in results)
    assert {r.system.batch for r in results if r.system.workload == "tiny batch 8"} == {8}


def test_two_bundles_of_one_build_get_distinct_rows(tiny_cnn_bundle):
    rows, _ = cnn.systems([open_bundle(tiny_cnn_bundle)] * 2, set(), 1)
    batch1 = [r.name for r in rows if r.workload == "tiny batch 1"]
    assert len(batch1) == 2 and len(set(batch1)) == 2


def test_peer_rows_share_the_workload_and_answer(tiny_cnn_bundle):
    pytest.importorskip("openvino")
    bundle = open_bundle(tiny_cnn_bundle)
    bundle.manifest.extra["arch"] = "digits"      # as a digits bundle would record it
    rows, skipped = cnn.systems([bundle], {"pytorch", "ort-naive", "opencv-dnn", "openvino"}, 1)
    peers = [r for r in rows if not r.is_reelrt]
    assert {r.peer_name for r in peers} == set(cnn.PEERS) and set(skipped) == set()
    assert {r.workload for r in peers} == {"digits batch 1", "digits batch 8"}
    for peer in cnn.PEERS:
        step = System(peer, "digits batch 1", f"reelrt.bench.cnn:{peer.replace('-', '_')}_step",
                      {"arch": "digits", "batch": 2, "threads": 1}).build()
        assert step() is None
    assert cnn.naive_onnx("digits").is_file()


def test_demo_shows_a_frame_classified(tiny_cnn_bundle):
    from reelrt.bench.demo import show_cnn
    text = show_cnn(tiny_cnn_bundle)
    assert "1080p frame ->" in text and "random weights" in text
