"""ImageClassifier: every input form it accepts, the preprocessing it applies, every bad input it refuses."""
from __future__ import annotations

import cv2
import numpy as np
import onnxruntime as ort
import pytest

from reelrt.runtime import InputError, load
from reelrt.runtime.tasks.image import Preprocessor

RNG = np.random.default_rng(7)
FRAME = RNG.integers(0, 256, (48, 64, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def clf(tiny_cnn_bundle):
    return load(tiny_cnn_bundle, device="cpu")


def _reference_logits(bundle, pixels):
    session = ort.InferenceSession(str(bundle / "model.onnx"), providers=["CPUExecutionProvider"])
    return session.run(None, {"pixels": pixels})[0]


def test_preprocessing_matches_a_plain_numpy_reference(clf):
    """Centre crop of the region the shorter side maps to, resize, BGR->RGB, (x/255 - mean)/std, CHW."""
    out = np.empty((3, 16, 16), np.float32)
    clf.preprocess(FRAME, False, out)
    side = round(16 * 48 / 18)                     # the crop that becomes 16x16 once 48 is scaled to 18
    y0, x0 = (48 - side) // 2, (64 - side) // 2
    crop = cv2.resize(FRAME[y0:y0 + side, x0:x0 + side], (16, 16), interpolation=cv2.INTER_AREA)
    expected = ((crop[:, :, ::-1].astype(np.float32) / 255 - 0.5) / 0.25).transpose(2, 0, 1)
    np.testing.assert_allclose(out, expected, atol=1e-5)


def test_classify_matches_onnxruntime_on_the_same_pixels(clf, tiny_cnn_bundle):
    logits = clf.logits(FRAME)
    pixels = Preprocessor(clf.manifest.preprocessing).batch([FRAME])
    np.testing.assert_allclose(logits, _reference_logits(tiny_cnn_bundle, pixels), rtol=1e-5, atol=1e-6)
    top = clf.classify(FRAME, top_k=2)
    assert [label for label, _ in top] == [clf.labels[i] for i in np.argsort(-logits[0])[:2]]
    probs = np.exp(logits[0] - logits[0].max()) / np.exp(logits[0] - logits[0].max()).sum()
    assert top[0][1] == pytest.approx(float(probs.max()), rel=1e-5)


def test_rgb_flag_grayscale_and_alpha(clf):
    bgr = clf.logits(FRAME)
    np.testing.assert_allclose(clf.logits(np.ascontiguousarray(FRAME[:, :, ::-1]), rgb=True), bgr, rtol=1e-6)
    bgra = np.dstack([FRAME, np.full(FRAME.shape[:2], 255, np.uint8)])
    np.testing.assert_allclose(clf.logits(bgra), bgr, rtol=1e-6)
    gray = cv2.cvtColor(FRAME, cv2.COLOR_BGR2GRAY)
    expected = clf.logits(cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR))
    np.testing.assert_allclose(clf.logits(gray), expected, rtol=1e-6)
    np.testing.assert_allclose(clf.logits(gray[:, :, None]), expected, rtol=1e-6)


def test_paths_bytes_and_batches(clf, tmp_path):
    ok, png = cv2.imencode(".png", FRAME)
    path = tmp_path / "frame.png"
    path.write_bytes(png.tobytes())
    expected = clf.logits(FRAME)
    np.testing.assert_allclose(clf.logits(str(path)), expected, rtol=1e-6)
    np.testing.assert_allclose(clf.logits(path), expected, rtol=1e-6)
    np.testing.assert_allclose(clf.logits(png.tobytes()), expected, rtol=1e-6)
    batch = clf.classify([FRAME, str(path), png.tobytes(), FRAME[:, :, ::-1]], top_k=3)
    assert len(batch) == 4 and all(len(r) == 3 for r in batch)
    assert batch[0] == batch[1] == batch[2]
    stacked = clf.logits(np.stack([FRAME, FRAME[::-1]]))
    np.testing.assert_allclose(stacked[0], expected[0], rtol=1e-6)
    assert stacked.shape == (2, 4)


def test_one_image_gives_one_list_and_top_k_is_clamped(clf):
    result = clf.classify(FRAME, top_k=10)
    assert len(result) == 4 and isinstance(result[0], tuple)
    probs = [p for _, p in result]
    assert probs == sorted(probs, reverse=True) and sum(probs) == pytest.approx(1.0)


def test_input_buffer_is_reused(clf):
    clf.classify([FRAME] * 3)
    buffer = clf._local.buffer
    clf.classify(FRAME)
    clf.classify([FRAME, FRAME])
    assert clf._local.buffer is buffer


def test_mixed_frame_sizes_in_one_batch(clf):
    small = cv2.resize(FRAME, (20, 15))
    results = clf.logits([FRAME, small, np.zeros((1080, 1920, 3), np.uint8)])
    np.testing.assert_allclose(results[1], clf.logits(small)[0], rtol=1e-6)


@pytest.mark.parametrize("bad, reason", [
    (FRAME.astype(np.float32), "uint8"),
    (np.zeros(10, np.uint8), "HxW"),
    (np.zeros((2, 2, 2, 2, 2), np.uint8), "HxW"),
    (np.zeros((8, 8, 2), np.uint8), "channels"),
    (np.zeros((0, 8, 3), np.uint8), "empty"),
    (np.zeros((0, 8, 8, 3), np.uint8), "empty"),
    (b"\x89PNG\r\n\x1a\n corrupt", "could not be decoded"),
    (b"", "empty"),
    ("/no/such/image.png", "does not exist"),
    ([], "empty list"),
    (42, "cannot classify"),
    ([FRAME, 3.5], "cannot read"),
])
def test_bad_input_raises_input_error_with_reason(clf, bad, reason):
    with pytest.raises(InputError, match=reason):
        clf.classify(bad)


def test_directory_truncated_file_and_bad_top_k(clf, tmp_path):
    with pytest.raises(InputError, match="directory"):
        clf.classify(str(tmp_path))
    ok, jpg = cv2.imencode(".jpg", FRAME)
    truncated = tmp_path / "cut.jpg"
    truncated.write_bytes(jpg.tobytes()[:40])
    with pytest.raises(InputError, match="could not be decoded"):
        clf.classify(truncated)
    for k in (0, -1, 1.5, True):
        with pytest.raises(InputError, match="top_k"):
            clf.classify(FRAME, top_k=k)


def test_grayscale_model_takes_colour_frames(tmp_path):
    from conftest import make_tiny_cnn_bundle

    gray_clf = load(make_tiny_cnn_bundle(tmp_path / "gray", channel_order="GRAY"), device="cpu")
    gray = cv2.cvtColor(FRAME, cv2.COLOR_BGR2GRAY)
    # resizing before the colour conversion rounds differently by at most a grey level
    np.testing.assert_allclose(gray_clf.logits(FRAME), gray_clf.logits(gray), atol=1e-3)
    ok, png = cv2.imencode(".png", gray)
    np.testing.assert_allclose(gray_clf.logits(png.tobytes()), gray_clf.logits(gray), rtol=1e-6)


def test_top_k_of_many_classes_matches_a_full_sort():
    from reelrt.runtime.tasks.ranking import best

    row = np.random.default_rng(3).standard_normal(1000)
    assert list(best(row, 5)) == list(np.argsort(-row)[:5])


def test_malformed_preprocessing_is_a_bundle_error():
    from reelrt.runtime import BundleError

    for policy in ({"size": [8, 8], "crop": "center"}, {"size": [8, 8], "channel_order": "YUV"},
                   {"size": [8, 8], "mean": [0.5, 0.5], "std": [1, 1]}, {"crop": "none"}):
        with pytest.raises(BundleError, match="preprocessing"):
            Preprocessor(policy)
