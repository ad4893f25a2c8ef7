"""The pieces export and quantize share: tolerance checks and deriving a bundle from another."""
from __future__ import annotations

import shutil

import numpy as np
import pytest

from reelrt.runtime.validation import ValidationError, check, compare
from reelrt.quantize.derive import derive_bundle
from reelrt.runtime import open_bundle


def test_compare_and_check():
    ref = np.array([[0.0, 10.0, 1.0], [5.0, 0.0, 1.0]])
    same = compare(ref, ref + 1e-6)
    assert same.top1_agreement == 1.0 and same.max_abs_diff == pytest.approx(1e-6)
    check(same, "fp32", "identical")
    flipped = compare(ref, -ref)
    assert flipped.top1_agreement == 0.0
    with pytest.raises(ValidationError, match="tolerance"):
        check(flipped, "int8", "flipped")
    near_tie = np.array([[0.0, 10.0, 9.99], [5.0, 0.0, 1.0]])
    one_flip = compare(near_tie, near_tie + np.array([[0, 0, 0.02], [0, 0, 0]]))
    with pytest.raises(ValidationError, match="top-1 agreement"):
        check(one_flip, "int8", "one flip")
    check(one_flip, "int8", "random inputs", top1=False)
    with pytest.raises(ValidationError, match="NaN"):
        compare(ref, ref * np.nan)
    with pytest.raises(ValidationError, match="shapes differ"):
        compare(ref, ref[:1])


def test_derive_bundle_copies_and_records(tiny_bundle, tmp_path):
    (tiny_bundle / "labels.txt").write_text("a\nb\nc\n")  # an extra file the source does not list is not copied
    src = open_bundle(tiny_bundle)

    def copy_pass(src_model, dst_model):
        shutil.copy(src_model, dst_model)
        return {"max_abs_diff": 0.0}

    out = derive_bundle(src, tmp_path / "q", "fp16", copy_pass, {"method": "copy"})
    derived = open_bundle(out).manifest
    assert derived.precision == "fp16"
    assert derived.validation["max_abs_diff"] == 0.0
    assert derived.provenance["quantized_from"]["model_sha256"] == src.manifest.artifacts["model.onnx"].sha256
    assert derived.provenance["quantized_from"]["settings"] == {"method": "copy"}
    assert derived.labels == src.manifest.labels and not (out / "labels.txt").exists()
    with pytest.raises(ValueError, match="differ"):
        derive_bundle(src, tiny_bundle, "fp16", copy_pass, {})


def test_failed_pass_writes_nothing(tiny_bundle, tmp_path):
    def failing(src_model, dst_model):
        dst_model.write_bytes(b"half")
        raise ValidationError("out of tolerance")

    with pytest.raises(ValidationError):
        derive_bundle(open_bundle(tiny_bundle), tmp_path / "q", "int8", failing, {})
    assert not (tmp_path / "q").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["tiny"]
