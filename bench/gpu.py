"""GPU benchmark: reelrt on an NVIDIA GPU against PyTorch CUDA eager, in one interleaved run.

Workloads: CNN batch 1 and batch 32, LSTM batch 1 (the bundle's reference texts), GPT-2 greedy decode
(32-token prompt, 128 new tokens: time to first token and decode ms/token). reelrt rows
load each bundle with device="cuda", so they measure whatever the load-time selection
picks (a TensorRT plan, else ONNX Runtime CUDA) and name it in the row. PyTorch rows
build the same model in torch on the GPU from a "module:function" builder you name (the
families' model builders), or from a transformers checkpoint for GPT-2.

    python -m reelrt.bench.gpu --cnn bundles/mobilenetv2 --torch-cnn reelrt.models.cnn:build \\
        --torch-cnn-kwargs '{"arch": "mobilenetv2"}' --lstm bundles/reviews-lstm \\
        --gpt2 bundles/gpt2 --gpt2-checkpoint ckpt/gpt2 --out bench/out/gpu

UNVERIFIED: never run on a GPU (none was available when it was written). Only its CPU
path (`--device cpu`, no torch rows) has run, as a smoke test of the plumbing.
"""
from __future__ import annotations

import argparse
import importlib
import json
import time
from pathlib import Path

import numpy as np

from reelrt.bench.harness import System, measure, ratios

PROMPT_TOKENS, NEW_TOKENS = 32, 128
PYTORCH = "pytorch cuda eager"


def feeds_for(bundle, batch: int) -> dict[str, np.ndarray]:
    """The bundle's reference inputs (real images or texts) at `batch` rows."""
    from reelrt.runtime.reference import at_batch, reference_feeds
    return at_batch(reference_feeds(bundle), batch)


def reelrt_step(bundle: str, batch: int, device: str):
    """One model.run on fixed inputs; the backend's own stream is synchronised inside run()."""
    from reelrt.runtime import Model, open_bundle
    model = Model(open_bundle(bundle), device=device)
    feeds = feeds_for(model.bundle, batch)
    return lambda: model.run(feeds) and None


def reelrt_decode_step(bundle: str, device: str):
    """Greedy generation of NEW_TOKENS; returns time to first token and decode ms/token."""
    from reelrt.runtime import load
    generator = load(bundle, device=device)
    prompt = " ".join(["the"] * PROMPT_TOKENS)

    def step() -> dict[str, float]:
        start = time.perf_counter()
        stamps = [time.perf_counter() for _ in generator.stream(prompt, max_new_tokens=NEW_TOKENS, seed=0)]
        return {"ttft_ms": (stamps[0] - start) * 1e3,
                "decode_ms_per_token": (stamps[-1] - stamps[0]) * 1e3 / max(len(stamps) - 1, 1)}
    return step


def torch_step(builder: str, builder_kwargs: dict, bundle: str, batch: int):
    """The same model in PyTorch on the GPU, fed the same inputs, synchronised after each call."""
    import torch
    from reelrt.runtime import open_bundle
    module, func = builder.split(":")
    model = getattr(importlib.import_module(module), func)(**builder_kwargs).cuda().eval()
    feeds = feeds_for(open_bundle(bundle), batch)
    tensors = [torch.from_numpy(a).cuda() for a in feeds.values()]

    def step() -> None:
        with torch.inference_mode():
            model(*tensors)
        torch.cuda.synchronize()
    return step


def torch_decode_step(checkpoint: str):
    """transformers' greedy generate on the GPU: ttft from a 1-token run, decode from the rest."""
    import torch
    from transformers import GPT2LMHeadModel
    model = GPT2LMHeadModel.from_pretrained(checkpoint).cuda().eval()
    ids = torch.full((1, PROMPT_TOKENS), 100, dtype=torch.long, device="cuda")

    def timed(tokens: int) -> float:
        start = time.perf_counter()
        with torch.inference_mode():
            model.generate(ids, max_new_tokens=tokens, min_new_tokens=tokens, do_sample=False, pad_token_id=0)
        torch.cuda.synchronize()
        return (time.perf_counter() - start) * 1e3

    def step() -> dict[str, float]:
        first = timed(1)
        return {"ttft_ms": first, "decode_ms_per_token": (timed(NEW_TOKENS) - first) / (NEW_TOKENS - 1)}
    return step


def build_systems(device: str, cnn: str | None = None, lstm: str | None = None, gpt2: str | None = None, *,
                  torch_cnn: str | None = None, torch_cnn_kwargs: dict | None = None, torch_lstm: str | None = None,
                  torch_lstm_kwargs: dict | None = None, gpt2_checkpoint: str | None = None) -> list[System]:
    """The rows to measure: reelrt on `device` for each bundle named, and a PyTorch row beside it
    where a torch builder (or for GPT-2 a checkpoint) is named."""
    here = "reelrt.bench.gpu"
    systems = []
    for family, bundle, batches, builder, kwargs in (("cnn", cnn, (1, 32), torch_cnn, torch_cnn_kwargs),
                                                     ("lstm", lstm, (1,), torch_lstm, torch_lstm_kwargs)):
        if not bundle:
            continue
        for batch in batches:
            workload = f"{family} batch {batch}"
            systems.append(System(f"reelrt {device}", workload, f"{here}:reelrt_step",
                                  {"bundle": bundle, "batch": batch, "device": device}, is_reelrt=True))
            if builder:
                systems.append(System(PYTORCH, workload, f"{here}:torch_step", {
                    "builder": builder, "builder_kwargs": kwargs or {}, "bundle": bundle, "batch": batch}))
    if gpt2:
        workload = f"gpt2 decode {PROMPT_TOKENS}+{NEW_TOKENS}"
        systems.append(System(f"reelrt {device}", workload, f"{here}:reelrt_decode_step",
                              {"bundle": gpt2, "device": device}, is_reelrt=True))
        if gpt2_checkpoint:
            systems.append(System(PYTORCH, workload, f"{here}:torch_decode_step", {"checkpoint": gpt2_checkpoint}))
    return systems


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m reelrt.bench.gpu", description=__doc__.split("\n\n")[0])
    p.add_argument("--cnn", help="CNN bundle")
    p.add_argument("--torch-cnn", help="module:function building the CNN in torch (PyTorch row)")
    p.add_argument("--torch-cnn-kwargs", default="{}", help="JSON keyword arguments for --torch-cnn")
    p.add_argument("--lstm", help="LSTM bundle")
    p.add_argument("--torch-lstm", help="module:function building the LSTM in torch (PyTorch row)")
    p.add_argument("--torch-lstm-kwargs", default="{}", help="JSON keyword arguments for --torch-lstm")
    p.add_argument("--gpt2", help="GPT-2 bundle")
    p.add_argument("--gpt2-checkpoint", help="transformers checkpoint directory of the same GPT-2 (PyTorch row)")
    p.add_argument("--device", choices=["cuda", "cpu"], default="cuda", help="cpu: smoke-test the plumbing only")
    p.add_argument("--iterations", type=int, default=100)
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--out", help="directory for gpu.json")
    args = p.parse_args(argv)
    systems = build_systems(args.device, args.cnn, args.lstm, args.gpt2, torch_cnn=args.torch_cnn,
                            torch_cnn_kwargs=json.loads(args.torch_cnn_kwargs), torch_lstm=args.torch_lstm,
                            torch_lstm_kwargs=json.loads(args.torch_lstm_kwargs), gpt2_checkpoint=args.gpt2_checkpoint)
    if not systems:
        p.error("name at least one bundle (--cnn, --lstm, --gpt2)")
    results = measure(systems, warmup=args.warmup, iterations=args.iterations)
    rows = [{"system": r.system.name, "workload": r.system.workload, "median_ms": r.latency_ms.median,
             "p90_ms": r.latency_ms.p90, "p99_ms": r.latency_ms.p99,
             **{f"{k}_median": s.median for k, s in r.metrics.items()}} for r in results]
    print("| workload | system | median ms | p90 ms | p99 ms | extra |\n| --- | --- | --- | --- | --- | --- |")
    for row in rows:
        extra = ", ".join(f"{k} {v:.2f}" for k, v in row.items() if k.endswith("_median") and k != "median_ms")
        print(f"| {row['workload']} | {row['system']} | {row['median_ms']:.3f} | {row['p90_ms']:.3f} | {row['p99_ms']:.3f} | {extra} |")
    versus = ratios(results, PYTORCH)
    for name, ratio in versus.items():
        print(f"{name}: {ratio:.2f}x PyTorch")
    if args.out:
        Path(args.out).mkdir(parents=True, exist_ok=True)
        Path(args.out, "gpu.json").write_text(json.dumps({"rows": rows, "ratios_vs_pytorch": versus}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
