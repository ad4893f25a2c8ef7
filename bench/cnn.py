"""CNN rows for `reelrt bench` (see the benchmark contract in bench/runner.py).

Workloads per architecture: "<arch> batch 1" (latency), "<arch> batch 8" (throughput:
the harness divides the batch by the latency), and "<arch> 1080p frame": a 1920x1080 BGR
frame to top-5 labels, beside the same bundle on a ready tensor ("model only") in the same
interleaved run, so their ratio is the cost of turning a frame into the model's input.
Peers run the same architecture (weights do not change the time) on the same thread
count: PyTorch eager, ONNX Runtime with default settings on a naive export (torch's
TorchScript exporter), OpenCV DNN on that file, and OpenVINO on it with its defaults
(bf16 on CPUs that have it).
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

from reelrt.bench.harness import Step, System
from reelrt.runtime.bundle import Bundle

PEERS = ("pytorch", "ort-naive", "opencv-dnn", "openvino")
NOT_APPLICABLE = {"optimum": "Optimum has no image-classification export for these plain-torch CNNs",
                  "llama.cpp": "llama.cpp runs language models, not CNNs"}
PEER_LABELS = {"pytorch": "pytorch eager", "ort-naive": "onnxruntime (naive export)",
               "opencv-dnn": "opencv-dnn (naive export)", "openvino": "openvino (naive export, defaults)"}
_PEER_MODULES = {"pytorch": "torch", "ort-naive": "onnxruntime", "opencv-dnn": "cv2", "openvino": "openvino"}
# (channels, side) of models.cnn's architectures, repeated here so peers' child processes need no torch
_ARCH_INPUTS = {"mobilenetv2": (3, 224), "resnet18": (3, 224), "digits": (1, 8)}


def systems(bundles: list[Bundle], peers: set[str] | None, threads: int) -> tuple[list[System], dict[str, str]]:
    """reelrt rows for each bundle, then one set of peer rows per architecture."""
    rows: list[System] = []
    skipped: dict[str, str] = {p: why for p, why in NOT_APPLICABLE.items() if peers is None or p in peers}
    archs: dict[str, tuple[int, int]] = {}
    for bundle in bundles:
        m = bundle.manifest
        arch = m.extra.get("arch", bundle.root.name)
        name = f"reelrt {m.precision} ({_backend_label(m.target)})"
        if any(r.name == name and r.workload.startswith(f"{arch} ") for r in rows):
            name += f" [{bundle.root.name}]"     # two bundles of one build: tell them apart
        size = sum(a.size for p, a in m.artifacts.items() if p == m.model or p.startswith(m.model + "."))
        for batch in (1, 8):
            rows.append(System(name, f"{arch} batch {batch}", "reelrt.bench.cnn:reelrt_step",
                               {"bundle": str(bundle.root), "batch": batch, "threads": threads}, True, size, batch))
        rows.append(System(name, f"{arch} 1080p frame", "reelrt.bench.cnn:reelrt_frame_step",
                           {"bundle": str(bundle.root), "threads": threads}, True, size))
        rows.append(System(f"{name}, model only", f"{arch} 1080p frame", "reelrt.bench.cnn:reelrt_step",
                           {"bundle": str(bundle.root), "batch": 1, "threads": threads}, True, size))
        if arch in _ARCH_INPUTS:
            archs[arch] = _ARCH_INPUTS[arch]
        else:
            skipped.update({p: f"{arch}: no PyTorch architecture recorded in the bundle" for p in PEERS})
    wanted = [p for p in PEERS if peers is None or p in peers]
    for peer in wanted:
        if importlib.util.find_spec(_PEER_MODULES[peer]) is None:
            skipped[peer] = f"{_PEER_MODULES[peer]} is not installed"
            continue
        for arch in archs:
            if peer != "pytorch":
                naive_onnx(arch)   # exported here, once, so no peer's child process loads torch
            for batch in (1, 8):
                rows.append(System(PEER_LABELS[peer], f"{arch} batch {batch}",
                                   f"reelrt.bench.cnn:{peer.replace('-', '_')}_step",
                                   {"arch": arch, "batch": batch, "threads": threads}, False,
                                   _peer_size(peer, arch), batch, peer))
    return rows, skipped


# ---- steps (factories return a zero-argument callable; the harness times it) --------------

def reelrt_step(bundle: str, batch: int, threads: int) -> Step:
    from reelrt.runtime import load

    model = load(bundle, device="cpu", threads=threads, spin=True)
    spec = model.manifest.inputs[0]
    feeds = {spec.name: _pixels(batch, spec.shape[1], spec.shape[2])}
    return _discarding(lambda: model.run(feeds))


def reelrt_frame_step(bundle: str, threads: int) -> Step:
    from reelrt.runtime import load

    model = load(bundle, device="cpu", threads=threads, spin=True)
    frame = hd_frame()

    def step() -> None:
        model.classify(frame, top_k=5)
    return step


def pytorch_step(arch: str, batch: int, threads: int) -> Step:
    import torch

    from reelrt.models.cnn import build

    torch.set_num_threads(threads)
    model = build(arch)
    channels, size = _input_shape(arch)
    x = torch.from_numpy(_pixels(batch, channels, size))

    def step() -> None:
        with torch.inference_mode():
            model(x)
    return step


def ort_naive_step(arch: str, batch: int, threads: int) -> Step:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    session = ort.InferenceSession(str(naive_onnx(arch)), options, providers=["CPUExecutionProvider"])
    feeds = {"pixels": _pixels(batch, *_input_shape(arch))}
    return _discarding(lambda: session.run(None, feeds))


def opencv_dnn_step(arch: str, batch: int, threads: int) -> Step:
    import cv2

    cv2.setNumThreads(threads)
    net = cv2.dnn.readNetFromONNX(str(naive_onnx(arch)))
    x = _pixels(batch, *_input_shape(arch))

    def step() -> None:
        net.setInput(x)
        net.forward()
    return step


def openvino_step(arch: str, batch: int, threads: int) -> Step:
    import openvino as ov

    compiled = ov.Core().compile_model(str(naive_onnx(arch)), "CPU",
                                       {"INFERENCE_NUM_THREADS": threads, "PERFORMANCE_HINT": "LATENCY"})
    request = compiled.create_infer_request()
    x = _pixels(batch, *_input_shape(arch))
    return _discarding(lambda: request.infer({0: x}))


# ---- helpers --------------------------------------------------------------------------------

def hd_frame() -> np.ndarray:
    """A 1920x1080 BGR frame with gradients and shapes, drawn here (no dataset import to pay for
    in cold start; resizing costs the same whatever the picture)."""
    import cv2

    y, x = np.mgrid[0:1080, 0:1920]
    frame = np.dstack([(x * 255 // 1919), (y * 255 // 1079), ((x + y) * 255 // 2998)]).astype(np.uint8)
    cv2.circle(frame, (960, 540), 300, (40, 200, 240), -1)
    cv2.rectangle(frame, (200, 150), (700, 900), (200, 60, 30), -1)
    return frame


def naive_onnx(arch: str) -> Path:
    """The peers' model: torch's TorchScript exporter with its defaults, cached per architecture."""
    from reelrt.runtime.bundle.cache import cache_dir

    path = cache_dir("bench", f"{arch}-naive.onnx")
    if not path.is_file():
        import torch

        from reelrt.models.cnn import build

        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        channels, size = _input_shape(arch)
        torch.onnx.export(build(arch), (torch.randn(1, channels, size, size),), str(tmp), dynamo=False,
                          input_names=["pixels"], output_names=["logits"],
                          dynamic_axes={"pixels": {0: "batch"}, "logits": {0: "batch"}}, opset_version=17)
        tmp.replace(path)
    return path


def _input_shape(arch: str) -> tuple[int, int]:
    return _ARCH_INPUTS[arch]


def _peer_size(peer: str, arch: str) -> int | None:
    from reelrt.runtime.bundle.cache import cache_dir

    path = cache_dir("bench", f"{arch}-naive.onnx")
    return path.stat().st_size if peer != "pytorch" and path.is_file() else None


def _pixels(batch: int, channels: int, size: int) -> np.ndarray:
    return np.random.default_rng(0).standard_normal((batch, channels, size, size)).astype(np.float32)


def _discarding(call) -> Step:
    """A step that drops the answer: a step's return value is read as extra metrics."""
    def step() -> None:
        call()
    return step


def _backend_label(target: dict) -> str:
    if not target:
        return "onnxruntime, not compiled"
    hint = target.get("inference_precision")
    return f"{target.get('backend')}{'' if hint in (None, 'f32') else ' ' + hint}"
