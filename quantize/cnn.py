"""Static int8 for CNN bundles: calibrated activations, per-channel weights, QDQ graph.

Defaults were measured on this machine (2-core AMD EPYC, AVX-512 VNNI, ONNX Runtime 1.32;
see README "CNN"): QDQ with uint8 activations and per-channel int8 weights is the fastest
ONNX Runtime build, while int8 activations fall off ONNX Runtime's fast
path and run slower than fp32. The weights keep 7 bits (REDUCE_RANGE): on x86 CPUs without
VNNI (AVX2 or AVX-512 alone: consoles' Zen 2) ONNX Runtime's uint8 x int8 kernels add pairs
of products into int16, which saturates with full-range weights (the digits model fell to
90% agreement with fp32 there) and is exact with 7-bit ones on every CPU (bench/RESULTS.md,
"int8 on every CPU class"). QDQ rather than QOperator also serves OpenVINO and
TensorRT from the same file. Calibration: a folder of images or an .npy array
(N,H,W,3 uint8 BGR frames or N,C,H,W float32 model inputs); without one, the digits model
calibrates on its training split and others on the bundle's reference images (say so:
a few photos are a poor stand-in for the deployment's frames).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator

import numpy as np

from reelrt.runtime.bundle import Bundle
from reelrt.runtime.bundle.layout import REFERENCE_INPUTS
from reelrt.runtime.errors import InputError

DEFAULT_METHOD = "minmax"
CALIBRATION_BATCH = 8
# 7-bit weights: |u8 x s7| pair sums stay within int16, so the integer kernels are exact on every CPU class
REDUCE_RANGE = True
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".ppm", ".pgm"}


def quantize_int8(src: Bundle, out: str | os.PathLike, *, calibration: str | os.PathLike | None = None,
                  method: str | None = None, accept_quality_loss: bool = False) -> Path:
    """Static int8 of a CNN bundle into `out` (`reelrt quantize BUNDLE --precision int8
    [--calibration PATH] [--method M] [--accept-quality-loss] --out DIR`)."""
    from reelrt.quantize.derive import derive_bundle
    from reelrt.runtime.validation import QualityGate

    method = method or DEFAULT_METHOD
    gate = QualityGate(accept_quality_loss)
    pixels, where = calibration_inputs(src, calibration)
    settings = {"format": "QDQ", "activations": "uint8", "weights": "int8 per-channel, 7-bit range",
                "integer_kernels_exact": "every CPU", "method": method,
                "calibration": where, "calibration_samples": len(pixels)}
    print(f"calibrating on {len(pixels)} inputs from {where} ({method})")

    def model_pass(src_model: Path, dst_model: Path) -> dict:
        quantize_static_qdq(src_model, dst_model, pixels, method, src.manifest.inputs[0].name)
        return quality_report(src, src_model, dst_model, gate)

    out = derive_bundle(src, out, "int8", model_pass, settings, gate=gate)
    print(describe(out))
    return out


def quantize_static_qdq(src_model: Path, dst_model: Path, pixels: np.ndarray, method: str, input_name: str,
                        activation: str = "uint8", per_channel: bool = True, fmt: str = "QDQ",
                        reduce_range: bool | None = None) -> None:
    """ONNX Runtime's static quantizer, with a progress bar over the calibration batches.
    reduce_range: 7-bit weights (default REDUCE_RANGE)."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    methods = {"minmax": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile,
               "entropy": CalibrationMethod.Entropy}
    if method not in methods:
        raise InputError(f"unknown calibration method {method!r}; choose one of {sorted(methods)}")
    prepared = dst_model.with_name("prepared.onnx")
    quant_pre_process(str(src_model), str(prepared), skip_symbolic_shape=True)
    try:
        quantize_static(str(prepared), str(dst_model), _Reader(input_name, pixels, calibration_batch(len(pixels), method)),
                        quant_format=QuantFormat.QDQ if fmt == "QDQ" else QuantFormat.QOperator,
                        per_channel=per_channel, weight_type=QuantType.QInt8, reduce_range=REDUCE_RANGE if reduce_range is None else reduce_range,
                        activation_type=QuantType.QUInt8 if activation == "uint8" else QuantType.QInt8,
                        calibrate_method=methods[method],
                        extra_options={"CalibMovingAverage": False, "CalibPercentile": 99.999})
    finally:
        prepared.unlink(missing_ok=True)
        for leftover in dst_model.parent.glob("augmented_model*.onnx"):
            leftover.unlink()


class _Reader:
    """ONNX Runtime's CalibrationDataReader protocol over an array, with a tqdm bar."""

    def __init__(self, input_name: str, pixels: np.ndarray, batch: int = CALIBRATION_BATCH):
        from tqdm import tqdm

        self.input_name = input_name
        self.pixels = pixels
        self.batch = batch
        self.bar = tqdm(total=len(pixels), desc="calibrating", unit="img", disable=None)  # None: a terminal only
        self.rewind()

    def get_next(self) -> dict[str, np.ndarray] | None:
        batch = next(self.batches, None)
        if batch is None:
            self.bar.close()
            return None
        self.bar.update(len(batch))
        return {self.input_name: batch}

    def rewind(self) -> None:
        self.bar.reset()
        self.batches: Iterator[np.ndarray] = (self.pixels[i:i + self.batch]
                                              for i in range(0, len(self.pixels), self.batch))


def calibration_batch(count: int, method: str) -> int:
    """Rows per calibration run. ONNX Runtime's histogram calibrators (percentile, entropy) stack
    every run's outputs into one array and fail on a shorter last batch, so for them the batch
    is the largest size up to CALIBRATION_BATCH that divides the count (1 for a prime count)."""
    if method == "minmax":
        return CALIBRATION_BATCH
    return max(size for size in range(1, CALIBRATION_BATCH + 1) if count % size == 0)


def calibration_inputs(src: Bundle, path: str | os.PathLike | None) -> tuple[np.ndarray, str]:
    """(N, C, H, W) float32 calibration inputs and a description of where they came from."""
    from reelrt.runtime.tasks.image import Preprocessor, load_frame

    pre = Preprocessor(src.manifest.preprocessing)
    shape = (pre.channels, pre.height, pre.width)
    if path is None:
        if src.manifest.extra.get("heldout", {}).get("dataset") == "sklearn-digits":
            from reelrt.models.digits import digits_split
            return pre.batch(digits_split()[0]), "the digits training split"
        reference = _reference_inputs(src)
        print("warning: no --calibration given; calibrating on the bundle's few reference images."
              " Pass a folder of frames like the ones the model will see.")
        return reference, "the bundle's reference images"
    p = Path(path)
    if p.is_dir():
        files = sorted(f for f in p.rglob("*") if f.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise InputError(f"calibration folder {p} holds no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
        return pre.batch([load_frame(f, pre.channels) for f in files]), f"{len(files)} images in {p}"
    if p.suffix == ".npy" and p.is_file():
        try:
            array = np.load(p, allow_pickle=False)
        except ValueError as e:
            raise InputError(f"calibration array {p} cannot be read: {e}") from None
        if array.dtype == np.uint8 and array.ndim in (3, 4):
            return pre.batch(list(array)), f"{len(array)} frames in {p}"
        if array.dtype == np.float32 and array.ndim == 4 and array.shape[1:] == shape:
            return array, f"{len(array)} model inputs in {p}"
        raise InputError(f"calibration array {p} has dtype {array.dtype} and shape {array.shape}: expected uint8"
                         f" frames (N,H,W,3) or float32 model inputs (N,{','.join(map(str, shape))})")
    raise InputError(f"calibration path {p} is neither a folder of images nor an .npy file")


def _reference_inputs(src: Bundle) -> np.ndarray:
    with np.load(src.path(REFERENCE_INPUTS), allow_pickle=False) as ref:
        return ref[src.manifest.inputs[0].name]


def quality_report(src: Bundle, fp32_model: Path, int8_model: Path, gate) -> dict:
    """Validate int8 against its fp32 source on the reference inputs; add held-out accuracy for digits.

    The gate raises ValidationError (nothing written) out of the int8 tolerance, unless it accepts the loss.
    Top-1 agreement is not asked of random weights (near-tied logits).
    """
    from reelrt.runtime.validation import compare, weights_are_random

    trained = not weights_are_random(src.manifest)
    reference = {src.manifest.inputs[0].name: _reference_inputs(src)}
    fp32, int8 = _session(fp32_model), _session(int8_model)
    cmp = compare(fp32.run(None, reference)[0], int8.run(None, reference)[0])
    report = {"reference": "fp32 source bundle (onnxruntime)", "precision": "int8",
              "reference_inputs": gate.check(cmp, "int8", "int8 vs fp32 on reference inputs", top1=trained).to_json(),
              "size_bytes": {"fp32": os.path.getsize(fp32_model), "int8": os.path.getsize(int8_model)}}
    if src.manifest.extra.get("heldout", {}).get("dataset") == "sklearn-digits":
        report["heldout_accuracy"] = heldout_accuracy(src, {"fp32": fp32, "int8": int8})
    return report


def heldout_accuracy(src: Bundle, sessions: dict) -> dict[str, float]:
    """Accuracy of each session on the digits' held-out split (360 images)."""
    from reelrt.models.digits import digits_split
    from reelrt.runtime.tasks.image import Preprocessor

    _, _, frames, labels = digits_split()
    pixels = Preprocessor(src.manifest.preprocessing).batch(frames)
    name = src.manifest.inputs[0].name
    return {k: round(float((s.run(None, {name: pixels})[0].argmax(1) == labels).mean()), 6) for k, s in sessions.items()}


def describe(out: Path) -> str:
    """The quality lines `reelrt quantize` prints."""
    from reelrt.runtime.bundle import open_bundle

    v = open_bundle(out).manifest.validation
    size = v.get("size_bytes", {})
    lines = [f"size        {size.get('fp32', 0) / 1e6:.2f} MB fp32 -> {size.get('int8', 0) / 1e6:.2f} MB int8"]
    ref = v.get("reference_inputs", {})
    lines.append(f"vs fp32     top-1 agreement {ref.get('top1_agreement', 0):.2%}, max |logit diff| "
                 f"{ref.get('max_abs_diff', 0):.3g} ({ref.get('relative_diff', 0):.2%} of the logit range)"
                 f" on {ref.get('samples')} reference inputs")
    if "heldout_accuracy" in v:
        acc = v["heldout_accuracy"]
        lines.append(f"held-out    accuracy fp32 {acc['fp32']:.2%}, int8 {acc['int8']:.2%}"
                     f" (drop {100 * (acc['fp32'] - acc['int8']):.2f} points)")
    return "\n".join(lines)


def _session(model: Path):
    import onnxruntime as ort

    return ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
