"""PIL's filters in numpy (runtime/tasks/antialias.py) against PIL itself: every filter transformers can
name, shrinking and enlarging, any window of the resized image, with and without PIL's reducing_gap;
and the Preprocessor's PIL path (resize the whole frame, then crop) against transformers' own rounding."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from reelrt.runtime import BundleError
from reelrt.runtime.tasks import antialias
from reelrt.runtime.tasks.image import Preprocessor, cv2

RNG = np.random.default_rng(5)


def _photo_crop(h: int, w: int) -> np.ndarray:
    """Part of a real photograph (smooth areas and edges), tiled when larger than it."""
    from sklearn.datasets import load_sample_image

    photo = load_sample_image("flower.jpg")
    return np.ascontiguousarray(np.tile(photo, (h // 427 + 1, w // 640 + 1, 1))[:h, :w])


# (frame h, w) -> (resized H, W): large and small shrinks, fractional and whole factors, enlargements,
# one-pixel sides, a 1080p frame to ImageNet's 256 shorter side
SIZES = [((427, 640), (36, 53)), ((1080, 1920), (256, 455)), ((300, 401), (224, 298)), ((37, 53), (90, 70)),
         ((64, 64), (16, 16)), ((1, 9), (3, 4)), ((100, 3), (7, 1)), ((157, 137), (41, 36))]
SIZES += [(tuple(int(v) for v in RNG.integers(1, 300, 2)), tuple(int(v) for v in RNG.integers(1, 120, 2)))
          for _ in range(6)]


def _pil(frame: np.ndarray, size: tuple[int, int], number: int, gap: float | None = None) -> np.ndarray:
    return np.asarray(Image.fromarray(frame).resize(size, resample=number, reducing_gap=gap)).reshape(
        size[1], size[0], -1)


@pytest.mark.parametrize("src,dst", SIZES)
@pytest.mark.parametrize("number,name", sorted(antialias.PIL_NUMBERS.items()))
@pytest.mark.parametrize("gap", [None, 1.0, 2.5])
def test_every_pil_filter_is_pils_to_the_bit(src, dst, number, name, gap):
    """Pillow's algorithm runs the horizontal pass, rounds to uint8, then the vertical one; PIL itself,
    asked for each pass alone, gives that to the bit. The Pillow wheel in one call sometimes runs the
    vertical pass first (a choice of its own, on some sizes), which moves pixels by one level where the
    filter has no negative lobes."""
    frame = _photo_crop(*src)
    (h, w) = dst
    ours = antialias.resize_window(frame, (h, w), (0, 0, h, w), name, gap)
    one_call = _pil(frame, (w, h), number, gap)
    apart = np.abs(ours.astype(int) - one_call.reshape(ours.shape))
    # filters with negative lobes clip the intermediate to 0..255, so the order can move a pixel further
    assert apart.max() <= (1 if name in ("pil-nearest", "pil-box", "pil-bilinear", "pil-hamming") else 8)
    if gap is None:   # the passes one by one
        expected = _pil(_pil(frame, (w, src[0]), number), (w, h), number).reshape(ours.shape)
        np.testing.assert_array_equal(ours, expected)
    else:
        expected = one_call.reshape(ours.shape)
    # any window of it, from the same frame: what a centre crop reads
    top, left = RNG.integers(0, h), RNG.integers(0, w)
    height, width = RNG.integers(1, h - top + 1), RNG.integers(1, w - left + 1)
    window = antialias.resize_window(frame, (h, w), (int(top), int(left), int(height), int(width)), name, gap)
    np.testing.assert_array_equal(window, ours[top:top + height, left:left + width])


def test_pils_own_pass_order_is_one_of_the_two():
    """Where the one-call result differs from ours, it is the vertical-first composition, to the bit."""
    frame = _photo_crop(100, 3)
    ours = antialias.resize_window(frame, (7, 1), (0, 0, 7, 1), "pil-lanczos")
    vertical_first = _pil(_pil(frame, (3, 7), 1), (1, 7), 1)
    one_call = _pil(frame, (1, 7), 1)
    assert (ours != one_call).any()
    np.testing.assert_array_equal(one_call, vertical_first)


@pytest.mark.parametrize("channels", [1, 4])
def test_gray_and_alpha_frames_resample_each_channel_as_pil(channels):
    frame = RNG.integers(0, 256, (123, 77, channels) if channels > 1 else (123, 77), np.uint8)
    for band in range(channels):
        plane = frame if channels == 1 else frame[:, :, band]
        expected = np.asarray(Image.fromarray(np.ascontiguousarray(plane)).resize((20, 31), resample=3))
        ours = antialias.resize_window(frame, (31, 20), (0, 0, 31, 20), "pil-bicubic")
        np.testing.assert_array_equal(ours if channels == 1 else ours[:, :, band], expected)


@pytest.mark.skipif(cv2 is None, reason="OpenCV's area filter is the fast reduction where installed")
def test_opencvs_whole_cell_average_is_within_one_level_of_pils():
    frame = _photo_crop(1080, 1920)
    from reelrt.runtime.tasks.image import _box_reduce
    ours = antialias.resize_window(frame, (256, 455), (16, 115, 224, 224), "pil-bilinear", 1.0, reduce=_box_reduce)
    pil = antialias.resize_window(frame, (256, 455), (16, 115, 224, 224), "pil-bilinear", 1.0)
    assert np.abs(ours.astype(int) - pil.astype(int)).max() <= 1


@pytest.mark.parametrize("h,w", [(427, 640), (640, 427), (255, 256), (257, 1000), (37, 38), (301, 301)])
def test_the_frame_is_resized_then_cropped_as_transformers_computes_it(h, w):
    """Shorter side to `resize`, the longer truncated, the crop's offsets floored (transformers'
    get_resize_output_image_size and center_crop), pixel for pixel through the Preprocessor."""
    from transformers.image_transforms import center_crop, get_resize_output_image_size, resize

    policy = {"size": [32, 30], "resize": 37, "crop": "center", "interpolation": "pil-bilinear", "scale": 1.0}
    pre = Preprocessor(policy)
    frame = _photo_crop(h, w)
    size = get_resize_output_image_size(frame, size=37, default_to_square=False)
    expected = center_crop(resize(frame, size, resample=2), (32, 30))
    out = np.empty((3, 32, 30), np.float32)
    pre(frame, True, out)
    np.testing.assert_array_equal(out.transpose(1, 2, 0), expected.astype(np.float32))


def test_pil_policies_that_cannot_be_followed_are_refused():
    base = {"size": [32, 32], "crop": "center", "interpolation": "pil-bicubic"}
    with pytest.raises(BundleError, match="at least the size"):
        Preprocessor({**base, "resize": 30})
    with pytest.raises(BundleError, match="whole 'resize'"):
        Preprocessor({**base, "resize": 36.5})
    with pytest.raises(BundleError, match="reducing_gap must be a number of at least 1"):
        Preprocessor({**base, "resize": 36, "reducing_gap": 0.5})
