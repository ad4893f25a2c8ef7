"""The aarch64 parity check (tests/aarch64) can fail: answers from a broken path, or answers of
the wrong kind, do not pass it; the same answers computed twice do."""
from __future__ import annotations

import shutil

import cv2
import numpy as np
import pytest

from aarch64.parity import answers, compare, write_encoded
from reelrt.runtime.tasks.image import Preprocessor

FP32 = ("tiny-cnn-rgb", "tiny-text", "gpt2-tiny")


@pytest.fixture(scope="module")
def folder(tmp_path_factory, tiny_cnn_bundle, tiny_text_bundle, gpt2_tiny_bundle):
    root = tmp_path_factory.mktemp("parity")
    for name, bundle in zip(FP32, (tiny_cnn_bundle, tiny_text_bundle, gpt2_tiny_bundle)):
        shutil.copytree(bundle, root / name)
    write_encoded(root)
    return root


@pytest.fixture(scope="module")
def reference(folder):
    return answers(folder, FP32)


PRECISIONS = {name: "fp32" for name in FP32}


def failures(reference, candidate) -> list[str]:
    return [row.key for row in compare(reference, candidate, PRECISIONS) if not row.ok]


def test_the_same_answers_pass(folder, reference):
    rows = compare(reference, answers(folder, FP32), PRECISIONS)
    assert rows and all(row.ok for row in rows), [row.line() for row in rows if not row.ok]
    assert {row.key.split("/")[0] for row in rows} == set(FP32)
    assert any(row.limit == 0 for row in rows) and any(row.limit > 0 for row in rows)  # ids and numbers


def signed_pixels(original):
    """A wrong dtype assumption: pixel bytes read as C's char, signed on x86 and unsigned on ARM, so a
    port that gets it wrong turns every pixel above 127 black."""
    def call(self, frame, rgb, out):
        original(self, np.maximum(frame.view(np.int8), 0).astype(np.uint8), rgb, out)
    return call


def nearest_resize(original):
    """A resize kernel that is not the one the manifest names."""
    return lambda src, size, interpolation=None: original(src, size, interpolation=cv2.INTER_NEAREST)


@pytest.mark.parametrize("target, attribute, breakage", [
    (Preprocessor, "__call__", signed_pixels),
    (cv2, "resize", nearest_resize),
])
def test_a_broken_image_path_fails(folder, reference, monkeypatch, target, attribute, breakage):
    monkeypatch.setattr(target, attribute, breakage(getattr(target, attribute)))
    failed = failures(reference, answers(folder, FP32))
    assert "tiny-cnn-rgb/frames" in failed and "tiny-cnn-rgb/png" in failed
    assert not [key for key in failed if not key.startswith("tiny-cnn-rgb/")]  # text and generation unaffected


def replaced(answers: dict, key: str, value) -> dict:
    return {**answers, key: value}


def one_bumped(ids: np.ndarray) -> np.ndarray:
    ids = ids.copy()
    ids.flat[5] += 1
    return ids


@pytest.mark.parametrize("breakage", [
    lambda a: replaced(a, "gpt2-tiny/greedy", one_bumped(a["gpt2-tiny/greedy"])),
    lambda a: replaced(a, "gpt2-tiny/greedy", a["gpt2-tiny/greedy"].astype(np.int32)),
    lambda a: replaced(a, "tiny-text/ids", a["tiny-text/ids"][:, :-1]),
    lambda a: replaced(a, "tiny-text/probabilities", a["tiny-text/probabilities"] * 1.01),
    lambda a: replaced(a, "gpt2-tiny/prefill_logits", np.full_like(a["gpt2-tiny/prefill_logits"], np.nan)),
    lambda a: {k: v for k, v in a.items() if k != "tiny-cnn-rgb/jpeg"},
    lambda a: replaced(a, "tiny-cnn-rgb/extra", np.zeros(1)),
], ids=["one-greedy-id", "int32-ids", "shorter-ids", "probabilities-off-1%", "nan-logits", "missing", "unexpected"])
def test_wrong_answers_fail(reference, breakage):
    assert len(failures(reference, breakage(reference))) == 1
