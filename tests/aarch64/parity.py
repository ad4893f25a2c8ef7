"""Every family's answers, computed the same way on two machines, and their comparison.

`answers` runs the runtime's three task classes on a folder of bundles and on inputs that
are the same everywhere (frames from a seeded generator; PNG and JPEG bytes written on the
first machine and shipped with the bundles; fixed texts and prompts). `compare` holds a
second machine's answers against the first's: token ids exactly (tokenizer ids, greedy and
seeded sampling), numbers within the bundle precision's tolerance, the policy every stage
validates with (reelrt.runtime.validation). Numpy and the runtime only: it runs where torch does not.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from reelrt.runtime import ValidationError, load, open_bundle, validation
from reelrt.runtime.bundle.layout import REFERENCE_INPUTS
from reelrt.runtime.tasks.text import encode

# the bundles compared, each an exported fp32 bundle or a quantized copy (tests/aarch64/build.py)
BUNDLES = ("tiny-cnn-rgb", "cnn-int8", "cnn-fp16", "digits", "digits-int8", "tiny-text", "lstm-int8", "gpt2-tiny",
           "gpt2-int8", "gpt2-int4")
IMAGE_BUNDLES = BUNDLES[:5]
TEXTS = ["the cat sat on the mat", "dogs chase cats in the garden", "the ship warped away",
         "captain on the bridge, the ship is yours", "ünïcödé 🚀 ship"]
PROMPTS = ["The innkeeper says", "A quest:", "def main():"]
NEW_TOKENS = 12
ENCODED = "encoded.npz"  # PNG and JPEG files of the frames, written once, decoded everywhere


def frames() -> list[np.ndarray]:
    """Frames of several shapes and kinds, the same on every machine (PCG64 is portable)."""
    rng = np.random.default_rng(7)
    return [rng.integers(0, 256, shape, dtype=np.uint8) for shape in ((24, 32, 3), (40, 17, 3), (16, 16, 3), (33, 50, 4), (21, 22))]


def write_encoded(folder: Path) -> Path:
    """PNG and JPEG bytes of `frames()`, as one uint8 array per file (npz: no pickle)."""
    import cv2
    files = {}
    for i, frame in enumerate(frames()[:3]):
        for ext in ("png", "jpg"):
            ok, data = cv2.imencode(f".{ext}", frame)
            assert ok, ext
            files[f"{ext}{i}"] = data.ravel()
    np.savez(folder / ENCODED, **files)
    return folder / ENCODED


def answers(folder: Path, names: Sequence[str] = BUNDLES, decode: bool = True) -> dict[str, np.ndarray]:
    """Each named bundle under `folder` answering its inputs: {"bundle/what": array}. decode=False
    leaves out the PNG and JPEG files (the OpenCV-free install classifies raw frames only)."""
    encoded = {}
    if decode:
        with np.load(folder / ENCODED, allow_pickle=False) as z:
            encoded = {k: z[k].tobytes() for k in sorted(z.files)}
    out: dict[str, np.ndarray] = {}
    for name in names:
        model = load(folder / name, device="cpu", threads=1)
        for what, value in TASKS[model.manifest.task](model, encoded).items():
            out[f"{name}/{what}"] = value
    return out


def _image(clf, encoded: dict[str, bytes]) -> dict[str, np.ndarray]:
    pngs = [v for k, v in encoded.items() if k.startswith("png")]
    jpegs = [v for k, v in encoded.items() if k.startswith("jpg")]
    with np.load(clf.bundle.path(REFERENCE_INPUTS), allow_pickle=False) as ref:
        pixels = ref[ref.files[0]]
    out = {"frames": np.concatenate([clf.logits(f) for f in frames()]),
           "frames_rgb": clf.logits(frames()[0], rgb=True),
           "reference": clf.run({clf.input_name: pixels})[clf.output_name],
           "classified": np.array([[dict(clf.classify(f, top_k=len(clf.labels)))[label] for label in clf.labels]
                                   for f in frames()], np.float32)}
    if encoded:
        out.update(png=clf.logits(pngs), jpeg=clf.logits(jpegs))
    return out


def _text(clf, encoded: dict[str, bytes]) -> dict[str, np.ndarray]:
    ids, lengths = encode(clf.tokenizer, TEXTS, clf.max_length, clf.pad_id)
    return {"ids": ids.astype(np.int64), "lengths": lengths.astype(np.int64),
            "probabilities": clf.probabilities(TEXTS)}


def _generation(gen, encoded: dict[str, bytes]) -> dict[str, np.ndarray]:
    prompt = np.array(gen.tokenizer.encode(PROMPTS[0]).ids, np.int64)
    gen.decoder.start(1)
    prefill = gen.decoder.prefill(0, prompt).copy()
    step = gen.decoder.decode(np.array([int(np.argmax(prefill))])).copy()
    greedy = gen.generate_ids([gen.tokenizer.encode(p).ids for p in PROMPTS], NEW_TOKENS, stop_token_ids=())
    text = gen.generate(PROMPTS[1], NEW_TOKENS)  # through the detokenizer: compared as its UTF-8 bytes
    out = {"prompt_ids": prompt, "prefill_logits": prefill[None], "decode_logits": step,
           "greedy": np.array(greedy, np.int64), "greedy_text": np.frombuffer(text.encode(), np.uint8)}
    if gen.manifest.precision == "fp32":
        # the seed makes the same draws everywhere (PCG64), but the token a draw picks moves with any logit
        # difference: quantized kernels differ per CPU by design (x86 int4 computes with int8 activations)
        sampled = gen.generate_ids(prompt.tolist(), NEW_TOKENS, temperature=0.8, top_p=0.9, seed=7, stop_token_ids=())
        out["sampled"] = np.array(sampled, np.int64)
    return out


TASKS = {"image-classification": _image, "text-classification": _text, "text-generation": _generation}


@dataclass
class Row:
    """One answer compared: `measure` is the relative difference for numbers, mismatches for ids."""
    key: str
    precision: str
    measure: float
    limit: float
    problem: str = ""

    @property
    def ok(self) -> bool:
        return not self.problem and self.measure <= self.limit

    def line(self) -> str:
        verdict = "ok" if self.ok else f"FAILED {self.problem}".rstrip()
        return f"{self.key:<32} {self.precision:<5} {self.measure:<10.3g} limit {self.limit:<8g} {verdict}"


def compare(reference: Mapping[str, np.ndarray], candidate: Mapping[str, np.ndarray],
            precisions: Mapping[str, str]) -> list[Row]:
    """One Row per reference answer; precisions: bundle name -> precision."""
    rows = []
    for key in sorted(reference):
        want, precision = reference[key], precisions[key.split("/")[0]]
        got = candidate.get(key)
        exact = np.issubdtype(want.dtype, np.integer)
        limit = 0.0 if exact else validation.tolerance_for(precision).max_relative_diff
        if got is None:
            rows.append(Row(key, precision, float("inf"), limit, "missing"))
        elif got.dtype != want.dtype or got.shape != want.shape:
            rows.append(Row(key, precision, float("inf"), limit, f"{got.dtype}{list(got.shape)} != {want.dtype}{list(want.shape)}"))
        elif exact:
            rows.append(Row(key, precision, float(np.count_nonzero(got != want)), limit))
        else:
            try:
                rows.append(Row(key, precision, validation.compare(want, got).relative_diff, limit))
            except ValidationError as e:
                rows.append(Row(key, precision, float("inf"), limit, str(e)))
    return rows + [Row(key, precisions[key.split("/")[0]], float("inf"), 0.0, "unexpected")
                   for key in sorted(set(candidate) - set(reference))]


def precisions(folder: Path) -> dict[str, str]:
    return {name: open_bundle(folder / name).manifest.precision for name in BUNDLES}
