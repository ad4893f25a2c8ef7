"""int8 representations on this CPU: which ones ONNX Runtime computes right, and what each costs.

    python -m reelrt.bench.int8_cpus --digits bundles/digits [--speed bundles/resnet18 ...] [--out FILE.md]

For each static int8 representation of a CNN (uint8 activations with full-range or 7-bit int8
weights, int8 activations), it quantizes the trained digits bundle (calibrated on the digits
training split, as `reelrt quantize` does) and reports, over scikit-learn's 1797 digits, top-1
agreement with the fp32 graph and held-out accuracy, plus the largest logit difference from fp32
as a share of the logit range. With --speed, each fp32 bundle given (weights do not change the
time) is quantized the same ways and timed at batch 1 under ONNX Runtime, interleaved, median of
the runs. Run it natively and under `qemu-x86_64-static -cpu Haswell` (an AVX2-only x86) with
--no-speed: emulated timings say nothing about a real CPU.
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from reelrt.runtime.system import cpu_features, cpu_name

# name -> (activations, 7-bit weights)
REPRESENTATIONS = {"uint8 x int8, full-range weights (reelrt before)": ("uint8", False),
                   "uint8 x int8, 7-bit weights (default)": ("uint8", True),
                   "int8 x int8, full-range weights": ("int8", False)}


def quantized(fp32: Path, folder: Path, pixels: np.ndarray) -> dict[str, Path]:
    """Each representation's graph of the bundle at `fp32`, calibrated on `pixels`."""
    from reelrt.quantize.cnn import quantize_static_qdq
    from reelrt.runtime.bundle import open_bundle

    bundle = open_bundle(fp32)
    out = {}
    for i, (name, (activation, reduce_range)) in enumerate(REPRESENTATIONS.items()):
        out[name] = folder / f"{fp32.name}-{i}.onnx"
        quantize_static_qdq(bundle.model_path, out[name], pixels, "minmax", bundle.manifest.inputs[0].name,
                            activation=activation, reduce_range=reduce_range)
    return out


def session(model: Path):
    import onnxruntime as ort
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    return ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])


def accuracy_rows(digits: Path, folder: Path) -> list[str]:
    from reelrt.models.digits import digits_split
    from reelrt.runtime.bundle import open_bundle
    from reelrt.runtime.tasks.image import Preprocessor
    from reelrt.runtime.validation import compare

    train, _, test, labels = digits_split()
    bundle = open_bundle(digits)
    pre = Preprocessor(bundle.manifest.preprocessing)
    everything = pre.batch(list(train) + list(test))
    name = bundle.manifest.inputs[0].name
    fp32 = session(bundle.model_path).run(None, {name: everything})[0]
    heldout = slice(len(train), None)
    rows = [f"| fp32 | {100.0:.2f}% | {np.mean(fp32[heldout].argmax(1) == labels):.2%} | 0 |"]
    for rep, model in quantized(digits, folder, pre.batch(list(train))).items():
        logits = session(model).run(None, {name: everything})[0]
        cmp = compare(fp32, logits)
        rows.append(f"| {rep} | {cmp.top1_agreement:.2%} | {np.mean(logits[heldout].argmax(1) == labels):.2%}"
                    f" | {cmp.relative_diff:.3f} |")
    return ["| graph | top-1 agreement with fp32 (1797 digits) | held-out accuracy (360) | max logit diff / range |",
            "| --- | --- | --- | --- |", *rows]


def speed_rows(bundles: list[Path], folder: Path, seconds: float) -> list[str]:
    from reelrt.runtime.bundle import open_bundle
    from reelrt.runtime.reference import reference_feeds

    rows = ["| model | " + " | ".join(REPRESENTATIONS) + " |", "| --- |" + " --- |" * len(REPRESENTATIONS)]
    for path in bundles:
        bundle = open_bundle(path)
        feeds = reference_feeds(bundle)
        name = bundle.manifest.inputs[0].name
        sessions = [session(m) for m in quantized(path, folder, feeds[name]).values()]
        single = {name: feeds[name][:1]}
        times: list[list[float]] = [[] for _ in sessions]
        deadline = time.perf_counter() + seconds
        while time.perf_counter() < deadline or len(times[0]) < 20:
            for s, t in zip(sessions, times):   # interleaved: drift of the machine hits every graph alike
                s.run(None, single)
                t0 = time.perf_counter()
                s.run(None, single)
                t.append((time.perf_counter() - t0) * 1e3)
        medians = [statistics.median(t) for t in times]
        rows.append(f"| {path.name} batch 1 | " + " | ".join(f"{m:.2f} ms ({m / medians[0]:.2f}x)" for m in medians) + " |")
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m reelrt.bench.int8_cpus", description=__doc__.splitlines()[0])
    parser.add_argument("--digits", type=Path, required=True, help="the trained digits fp32 bundle (reelrt train digits; export cnn)")
    parser.add_argument("--speed", type=Path, nargs="*", default=[], help="fp32 CNN bundles to time at batch 1")
    parser.add_argument("--seconds", type=float, default=10.0, help="timing per model (default 10)")
    parser.add_argument("--out", type=Path, help="also write the Markdown here")
    args = parser.parse_args(argv)
    features = set(cpu_features())
    vnni = sorted(features & {"AVX512VNNI", "AVXVNNI", "ASIMDDP"}) or ["no VNNI / dot product"]
    lines = [f"CPU: {cpu_name()}; {'AVX-512' if 'AVX512F' in features else 'AVX2' if 'AVX2' in features else 'other'},"
             f" {', '.join(vnni)}", ""]
    with tempfile.TemporaryDirectory() as tmp:
        lines += accuracy_rows(args.digits, Path(tmp))
        if args.speed:
            lines += ["", *speed_rows(args.speed, Path(tmp), args.seconds)]
    text = "\n".join(lines)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
