"""The GPT-2 side of the benchmark contract: systems, demo, show (no timing asserted)."""
from __future__ import annotations

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
    rows, _ = bench.systems([open_bundle(gpt2_tiny_bundle)], set(), threads=1)
    assert rows[0].bytes_per_token == bench.bytes_per_token(m, bench.MEAN_CONTEXT)


def test_pytorch_peer_generates_what_reelrt_generates(gpt2_tiny_bundle):
    """The peer rebuilds the bundle's weights from its recorded config and seed: same greedy tokens."""
    import torch

    from reelrt.runtime import load
    source = bench._source(open_bundle(gpt2_tiny_bundle))
    model = bench._torch_model(source)
    ids = bench.prompt_ids(source["text_vocab"])
    with torch.no_grad():
        ref = model.generate(torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                             max_new_tokens=24, do_sample=False, eos_token_id=None, pad_token_id=0)[0, len(ids):]
    assert load(gpt2_tiny_bundle, threads=1).generate_ids(ids, 24, stop_token_ids=()) == ref.tolist()


def test_demo_builds_bundles_once_and_show_generates(tmp_path):
    bundles = bench.demo(tmp_path)
    assert [open_bundle(b).manifest.precision for b in bundles] == ["fp32", "int4"]
    stamp = [(b / "manifest.json").stat().st_mtime_ns for b in bundles]
    assert bench.demo(tmp_path) == bundles
    assert [(b / "manifest.json").stat().st_mtime_ns for b in bundles] == stamp  # reused, not rebuilt
    text = bench.show(bundles[1])
    assert bench.DEMO_PROMPT in text and "int4" in text
