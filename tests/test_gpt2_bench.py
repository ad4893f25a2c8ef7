"""The GPT-2 side of the benchmark contract (systems, peers) and the demo's GPT-2 (no timing asserted)."""
from __future__ import annotations

import pytest

from reelrt.bench import gpt2 as bench
from reelrt.bench.harness import measure
from reelrt.runtime import open_bundle


def test_systems_pair_reelrt_rows_with_peers_on_the_same_workload(gpt2_tiny_bundle, monkeypatch):
    monkeypatch.delenv("REELRT_LLAMA_CPP_SRC", raising=False)
    rows, skipped = bench.systems([open_bundle(gpt2_tiny_bundle)], {"pytorch", "llama.cpp", "opencv-dnn"}, threads=1)
    assert [r.name for r in rows] == ["reelrt fp32", "pytorch eager generate"]
    assert len({r.workload for r in rows}) == 1 and rows[0].is_reelrt and rows[0].size_bytes > 0
    assert "llama.cpp" in skipped and "opencv-dnn" in skipped


def test_reelrt_and_pytorch_steps_report_generation_metrics(gpt2_tiny_bundle):
    rows, _ = bench.systems([open_bundle(gpt2_tiny_bundle)], {"pytorch"}, threads=1)
    results = measure(rows, warmup=0, iterations=1)
    for r in results:
        assert {"ttft_ms", "decode_ms_per_token", "decode_p90_ms", "tokens_per_s"} <= set(r.metrics)



def test_the_floor_counts_the_weights_streamed_and_the_cache_read(gpt2_tiny_bundle):
    """One decode step reads every streamed weight once and the keys and values of the context."""
    m = open_bundle(gpt2_tiny_bundle).manifest
    x = m.extra
    cache = 2 * x["n_layer"] * x["n_embd"] * 4  # float32 keys and values of one token in every layer
    assert bench.bytes_per_token(m, 0) == x["weight_bytes_per_token"] > 0
    assert bench.bytes_per_token(m, 96) - bench.bytes_per_token(m, 0) == 96 * cache
    bundle = open_bundle(gpt2_tiny_bundle)
    rows, _ = bench.systems([bundle], set(), threads=1)
    assert rows[0].bytes_per_token == bench.bytes_per_token(m, bench.mean_context(bench.new_tokens(bundle)))


def test_pytorch_peer_generates_what_reelrt_generates(gpt2_tiny_bundle):
    """The peer rebuilds the bundle's weights from its recorded config and seed: same greedy tokens."""
    import torch

    from reelrt.runtime import load
    source = bench.weights_source(open_bundle(gpt2_tiny_bundle))
    model = bench._torch_model(source)
    ids = bench.prompt_ids(source["text_vocab"])
    with torch.no_grad():
        ref = model.generate(torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                             max_new_tokens=24, do_sample=False, eos_token_id=None, pad_token_id=0)[0, len(ids):]
    assert load(gpt2_tiny_bundle, threads=1).generate_ids(ids, 24, stop_token_ids=()) == ref.tolist()


def test_demo_trains_builds_once_and_streams_text(tmp_path, monkeypatch):
    from reelrt.bench import demo
    from reelrt.models.gpt2_train import Recipe, read_record
    tiny = Recipe(shape=dict(n_layer=1, n_head=2, n_embd=32, n_positions=64), vocab=300, block=32, batch=4,
                  minutes=None, steps=3)
    monkeypatch.setattr(demo, "gpt2_recipe", lambda: tiny)
    bundles = demo.build_gpt2(tmp_path)
    assert [open_bundle(b).manifest.precision for b in bundles] == ["fp32", "int8"]
    assert read_record(tmp_path / "gpt2-fortunes.ckpt")["steps"] == 3
    stamp = [(b / "manifest.json").stat().st_mtime_ns for b in bundles]
    monkeypatch.setattr("reelrt.models.gpt2_train.train", lambda *a, **k: pytest.fail("demo retrained"))
    assert demo.build_gpt2(tmp_path) == bundles
    assert [(b / "manifest.json").stat().st_mtime_ns for b in bundles] == stamp  # reused, not rebuilt
    text = demo.show_gpt2(bundles[1])
    assert "int8" in text and "trained 3 steps" in text and all(p in text for p in demo.GPT2_PROMPTS)
    # the demo's benchmark: 128 new tokens do not fit a 64-position context after the 32-token prompt
    rows, _ = bench.systems([open_bundle(bundles[1])], set(), threads=1)
    assert rows[0].workload.endswith("greedy 32+32") and rows[0].kwargs["new_tokens"] == 32
    assert bench.reelrt_generation(**rows[0].kwargs)()["tokens_per_s"] > 0