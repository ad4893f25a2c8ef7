"""Raw frames without OpenCV: the numpy resize and colour conversion give OpenCV's pixels, so a
classifier answers the same whether or not `reelrt[images]` is installed."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from reelrt.runtime import BackendUnavailableError, InputError, load
from reelrt.runtime.tasks import image, pixels

RNG = np.random.default_rng(11)


def _frame(h: int, w: int, c: int) -> np.ndarray:
    return RNG.integers(0, 256, (h, w, c) if c > 1 else (h, w), np.uint8)


# (source h, w) -> (target h, w): shrinks by whole and fractional factors, exact 2x, enlargements,
# 1-pixel edges, a 1080p frame's centre to 224
SIZES = [((945, 945), (224, 224)), ((256, 341), (224, 224)), ((448, 448), (224, 224)), ((48, 48), (16, 16)),
         ((15, 20), (16, 16)), ((3, 5), (224, 224)), ((1, 7), (4, 4)), ((8, 8), (8, 3)), ((1080, 1920), (17, 31))]
SIZES += [(tuple(RNG.integers(1, 200, 2)), tuple(RNG.integers(1, 120, 2))) for _ in range(40)]


@pytest.mark.parametrize("src,dst", SIZES)
@pytest.mark.parametrize("channels", [1, 3, 4])
def test_resize_is_opencvs_to_the_bit(src, dst, channels):
    frame = _frame(*src, channels)
    (h, w) = (int(v) for v in dst)
    np.testing.assert_array_equal(pixels.resize_linear(frame, w, h),
                                  cv2.resize(frame, (w, h), interpolation=cv2.INTER_LINEAR))
    if src[0] >= h and src[1] >= w:  # the area filter only shrinks (reelrt enlarges bilinearly)
        np.testing.assert_array_equal(pixels.resize_area(frame, w, h),
                                      cv2.resize(frame, (w, h), interpolation=cv2.INTER_AREA))


@pytest.mark.parametrize("source", ["GRAY", "BGR", "RGB", "BGRA", "RGBA"])
@pytest.mark.parametrize("target", ["GRAY", "BGR", "RGB"])
def test_colour_conversion_is_opencvs_to_the_bit(source, target):
    frame = _frame(37, 53, {"GRAY": 1, "BGR": 3, "RGB": 3}.get(source, 4))
    expected = frame if source == target else cv2.cvtColor(frame, getattr(cv2, f"COLOR_{source}2{target}"))
    np.testing.assert_array_equal(pixels.convert(frame, source, target), expected)


@pytest.fixture
def without_opencv(monkeypatch):
    """The module as the base install runs it: no cv2."""
    monkeypatch.setattr(image, "cv2", None)


FRAMES = {"bgr": (_frame(48, 64, 3), False), "rgb": (_frame(48, 64, 3), True), "rgba": (_frame(30, 22, 4), True),
          "bgra": (_frame(30, 22, 4), False), "gray": (_frame(20, 20, 1), False), "small": (_frame(9, 7, 3), False),
          "hd": (_frame(1080, 1920, 3), False)}


@pytest.mark.parametrize("interpolation", ["area", "linear"])
def test_classifier_without_opencv_gives_the_same_logits(tiny_cnn_bundle, tmp_path, monkeypatch, interpolation):
    bundle = _with_interpolation(tiny_cnn_bundle, tmp_path / "b", interpolation)
    clf = load(bundle, device="cpu", threads=1)
    expected = {name: clf.logits(frame, rgb=rgb) for name, (frame, rgb) in FRAMES.items()}
    batch = np.stack([FRAMES["bgr"][0]] * 3)
    expected_batch = clf.logits(batch)
    monkeypatch.setattr(image, "cv2", None)
    clf = load(bundle, device="cpu", threads=1)
    for name, (frame, rgb) in FRAMES.items():
        np.testing.assert_array_equal(clf.logits(frame, rgb=rgb), expected[name], err_msg=name)
    np.testing.assert_array_equal(clf.logits(batch), expected_batch)


def test_encoded_images_without_opencv_name_the_extra(tiny_cnn_bundle, tmp_path, without_opencv):
    clf = load(tiny_cnn_bundle, device="cpu", threads=1)
    for item in (b"\x89PNG\r\n\x1a\n....", str(tmp_path / "poster.jpg"), tmp_path / "poster.jpg"):
        with pytest.raises(InputError, match=r"reelrt\[images\]"):
            clf.classify(item)


def test_cubic_without_opencv_is_refused_at_load(tiny_cnn_bundle, tmp_path, without_opencv):
    with pytest.raises(BackendUnavailableError, match=r"reelrt\[images\]"):
        load(_with_interpolation(tiny_cnn_bundle, tmp_path / "b", "cubic"), device="cpu")


def _with_interpolation(bundle, out, interpolation: str):
    """A copy of the bundle whose manifest asks for another interpolation (the manifest is not an artifact)."""
    import json
    import shutil
    shutil.copytree(bundle, out)
    doc = json.loads((out / "manifest.json").read_text())
    doc["preprocessing"]["interpolation"] = interpolation
    (out / "manifest.json").write_text(json.dumps(doc))
    return out
