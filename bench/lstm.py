"""LSTM rows for `reelrt bench`.

Workloads: batch 1 and batch 16 at sequence length 128 (every row full length, so each
system does the same work). reelrt rows run TextClassifier.logits on token ids, the
runtime's own batched path; peers get the same ids and thread count:
- pytorch: the same classifier module in eager mode (torch.inference_mode);
- ort-naive: plain torch.onnx.export of the module, with no sequence lengths, in a default
  ONNX Runtime session (only the thread count set);
- openvino: the bundle's ONNX compiled by OpenVINO for the CPU (latency hint).
Peers are built from the bundle's architecture with random weights: latency does not
depend on the weights' values.
"""
from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import io
import json
import os
import warnings
from pathlib import Path

import numpy as np

from reelrt.bench.harness import System, Step
from reelrt.runtime.bundle import Bundle, open_bundle

WORKLOADS = ((1, 128), (16, 128))     # (batch, sequence length)
PEERS = ("pytorch", "ort-naive", "openvino")
NOT_APPLICABLE = {"optimum": "Optimum exports transformers models, not a custom LSTM classifier",
                  "opencv-dnn": "OpenCV DNN is a CNN peer", "llama.cpp": "llama.cpp is a GPT-2 peer"}



def architecture(bundle: Bundle) -> dict:
    """The LSTMConfig fields of a bundle's model, from its manifest."""
    m = bundle.manifest
    return {key: m.extra[key] for key in ("vocab_size", "embed_dim", "hidden", "layers", "bidirectional")} | {
        "num_classes": len(m.labels)}


def workload_name(config: dict, batch: int, sequence: int) -> str:
    shape = f"h{config['hidden']}" + (" bi" if config["bidirectional"] else "") + (
        f" x{config['layers']}" if config["layers"] > 1 else "")
    return f"lstm {shape} batch {batch} seq {sequence}"


def bench_inputs(vocab_size: int, batch: int, sequence: int) -> tuple[np.ndarray, np.ndarray]:
    ids = np.random.default_rng(0).integers(2, vocab_size, (batch, sequence)).astype(np.int64)
    return ids, np.full(batch, sequence, np.int32)


def systems(bundles: list[Bundle], peers: set[str] | None, threads: int) -> tuple[list[System], dict[str, str]]:
    rows: list[System] = []
    skipped = {peer: reason for peer, reason in NOT_APPLICABLE.items() if peers is None or peer in peers}
    wanted = [p for p in PEERS if peers is None or p in peers]
    for peer, module in (("pytorch", "torch"), ("ort-naive", "torch"), ("openvino", "openvino")):
        if peer in wanted and importlib.util.find_spec(module) is None:
            skipped[peer] = f"{module} is not installed"
            wanted.remove(peer)
    seen: list[dict] = []
    for bundle in bundles:
        config = architecture(bundle)
        new = config not in seen
        seen.append(config)
        for batch, sequence in WORKLOADS:
            workload = workload_name(config, batch, sequence)
            common = {"batch": batch, "sequence": sequence, "threads": threads}
            rows.append(System(f"reelrt {bundle.manifest.precision}", workload, "reelrt.bench.lstm:reelrt_step",
                               {"bundle": str(bundle.root), **common}, is_reelrt=True,
                               size_bytes=bundle.model_path.stat().st_size))
            if not new:
                continue
            if "pytorch" in wanted:
                rows.append(System("pytorch eager", workload, "reelrt.bench.lstm:pytorch_step", {"config": config, **common},
                                   size_bytes=parameter_bytes(config)))
            if "ort-naive" in wanted:
                rows.append(System("onnxruntime naive export", workload, "reelrt.bench.lstm:ort_naive_step",
                                   {"config": config, **common}, size_bytes=parameter_bytes(config)))
            if "openvino" in wanted and bundle.manifest.precision == "fp32":
                rows.append(System("openvino (fp32 bundle)", workload, "reelrt.bench.lstm:openvino_step",
                                   {"bundle": str(bundle.root), **common}, size_bytes=bundle.model_path.stat().st_size))
    if "openvino" in wanted and not any(r.factory.endswith(":openvino_step") for r in rows):
        skipped["openvino"] = "it runs a bundle's fp32 graph, and no fp32 bundle was given"
    return rows, skipped


def parameter_bytes(config: dict) -> int:
    h, e, d = config["hidden"], config["embed_dim"], 2 if config["bidirectional"] else 1
    lstm = sum(d * 4 * h * ((e if layer == 0 else d * h) + h + 2) for layer in range(config["layers"]))
    return 4 * (config["vocab_size"] * e + lstm + (d * h + 1) * config["num_classes"])


def reelrt_step(bundle: str, batch: int, sequence: int, threads: int) -> Step:
    from reelrt.runtime import load
    classifier = load(bundle, device="cpu", threads=threads, spin=True)
    ids, lengths = bench_inputs(classifier.vocab_size, batch, sequence)

    def step() -> None:
        classifier.logits(ids, lengths)
    return step


def torch_model(config: dict):
    import torch
    from reelrt.models.lstm import LSTMClassifier, LSTMConfig
    torch.manual_seed(0)
    return LSTMClassifier(LSTMConfig(**config)).eval()


def pytorch_step(config: dict, batch: int, sequence: int, threads: int) -> Step:
    import torch
    torch.set_num_threads(threads)
    model = torch_model(config)
    ids, lengths = (torch.from_numpy(a.astype(np.int64)) for a in bench_inputs(config["vocab_size"], batch, sequence))

    def step() -> None:
        with torch.inference_mode():
            model(ids, lengths)
    return step


def naive_export(config: dict) -> Path:
    """torch.onnx.export of the module as it stands (no lengths), cached per architecture."""
    from reelrt.runtime.bundle.cache import cache_dir
    key = hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:16]
    path = cache_dir("bench", f"lstm-naive-{key}.onnx")
    if path.is_file():
        return path
    import torch
    path.parent.mkdir(parents=True, exist_ok=True)
    ids = torch.zeros((2, 8), dtype=torch.int64)
    tmp = path.with_name(f".{os.getpid()}.{path.name}")
    dims = {0: torch.export.Dim("batch"), 1: torch.export.Dim("sequence")}
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")   # the exporter's deprecation chatter is not the benchmark's business
        torch.onnx.export(torch_model(config), (ids,), str(tmp), input_names=["input_ids"], output_names=["logits"],
                          dynamic_shapes=(dims,), external_data=False, verbose=False)
    os.replace(tmp, path)
    return path


def ort_naive_step(config: dict, batch: int, sequence: int, threads: int) -> Step:
    import onnxruntime as ort
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    session = ort.InferenceSession(str(naive_export(config)), options, providers=["CPUExecutionProvider"])
    feeds = {"input_ids": bench_inputs(config["vocab_size"], batch, sequence)[0]}

    def step() -> None:
        session.run(None, feeds)
    return step


def openvino_step(bundle: str, batch: int, sequence: int, threads: int) -> Step:
    import openvino as ov
    b = open_bundle(bundle)
    compiled = ov.Core().compile_model(str(b.model_path), "CPU",
                                       {"INFERENCE_NUM_THREADS": threads, "PERFORMANCE_HINT": "LATENCY"})
    request = compiled.create_infer_request()
    ids, lengths = bench_inputs(b.manifest.extra["vocab_size"], batch, sequence)

    def step() -> None:
        request.infer({"input_ids": ids, "lengths": lengths})
    return step
