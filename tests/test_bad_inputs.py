"""Bad input at every public entry point gets InputError (never another exception, never a crash).

Property-based: hypothesis draws frames of any dtype and shape, arbitrary bytes, paths, texts
and mixed batches; each is either a valid input, which must get an answer, or an invalid one,
which must get InputError naming the cause.
"""
from __future__ import annotations

import struct
import zlib

import cv2
import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from reelrt.runtime import InputError, load
from reelrt.runtime.tasks.image import MAX_FRAME_PIXELS

PROPS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                         HealthCheck.function_scoped_fixture])


@pytest.fixture(scope="module")
def image_clf(tiny_cnn_bundle):
    return load(tiny_cnn_bundle, device="cpu")


@pytest.fixture(scope="module")
def text_clf(tiny_text_bundle):
    return load(tiny_text_bundle, device="cpu")


def answers_or_refuses(call, valid: bool):
    """Run call(); a valid input must be answered, an invalid one refused with InputError."""
    if valid:
        return call()
    with pytest.raises(InputError):
        call()


# -- images ---------------------------------------------------------------------------------

def is_valid_frame(a: np.ndarray) -> bool:
    return (a.dtype == np.uint8 and a.ndim in (2, 3) and a.size > 0 and (a.ndim == 2 or a.shape[2] in (1, 3, 4))
            and a.shape[0] * a.shape[1] <= MAX_FRAME_PIXELS)


frames = hnp.arrays(
    dtype=st.sampled_from([np.uint8, np.int8, np.uint16, np.float32, np.float64, np.bool_, np.int64, np.complex64]),
    shape=hnp.array_shapes(min_dims=0, max_dims=5, min_side=0, max_side=12))


@PROPS
@given(frames)
def test_any_array_is_classified_or_refused(image_clf, frame):
    result = answers_or_refuses(lambda: image_clf.classify(frame, top_k=2), is_valid_frame(frame) or
                                (frame.ndim == 4 and frame.shape[0] > 0 and all(is_valid_frame(f) for f in frame)))
    if result is not None and frame.ndim != 4:
        assert len(result) == 2 and all(0.0 <= p <= 1.0 for _, p in result)


@PROPS
@given(st.binary(max_size=300))
def test_arbitrary_bytes_are_decoded_or_refused(image_clf, data):
    try:
        image_clf.classify(data)
    except InputError as e:
        assert "empty" in str(e) or "decoded" in str(e)


def png(width: int, height: int, rows: bytes = b"") -> bytes:
    """A PNG written field by field: the header declares width x height; the data may be short."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


REAL_PNG = cv2.imencode(".png", np.random.default_rng(0).integers(0, 256, (20, 30, 3), np.uint8))[1].tobytes()


@PROPS
@given(st.integers(0, len(REAL_PNG) - 1), st.integers(0, 255), st.integers(1, len(REAL_PNG)))
def test_corrupt_and_truncated_image_bytes(image_clf, at, value, keep):
    damaged = bytearray(REAL_PNG)
    damaged[at] = value
    for data in (bytes(damaged), REAL_PNG[:keep]):
        try:
            assert len(image_clf.classify(data)) == 4
        except InputError as e:
            assert "decoded" in str(e) or "empty" in str(e)


@pytest.mark.parametrize("width, height", [(20000, 20000), (1 << 16, 1 << 15), (MAX_FRAME_PIXELS, 2)])
def test_image_declaring_too_many_pixels_is_refused(image_clf, width, height):
    with pytest.raises(InputError, match="decoded"):
        image_clf.classify(png(width, height, b"\0" * 64))


BOMB_PROBE = """
import sys
from reelrt.runtime.errors import InputError
from reelrt.runtime.tasks.image import load_frame
try:
    load_frame(open(sys.argv[1], "rb").read(), 3)
    print("decoded")
except InputError as e:
    print("refused:", e)
from reelrt.bench.machine import peak_rss_bytes
print(peak_rss_bytes() >> 20)
"""


def test_decompression_bomb_costs_no_memory(tmp_path):
    """A 0.4 MB PNG that decodes to a 12000x12000 frame (432 MB): refused from its header, in a
    fresh process whose peak memory shows OpenCV never allocated the frame."""
    import subprocess
    import sys
    side = 12000
    packer = zlib.compressobj(1)
    row = b"\0" * (1 + 3 * side)  # filter byte + RGB
    rows = b"".join(packer.compress(row) for _ in range(side)) + packer.flush()
    bomb = png(side, side)
    bomb = bomb[:33] + struct.pack(">I", len(rows)) + b"IDAT" + rows + struct.pack(">I", zlib.crc32(b"IDAT" + rows)) + bomb[-12:]
    (tmp_path / "bomb.png").write_bytes(bomb)
    out = subprocess.run([sys.executable, "-c", BOMB_PROBE, str(tmp_path / "bomb.png")], capture_output=True,
                         text=True, check=True).stdout.split("\n")
    assert out[0].startswith("refused:") and "decoded" in out[0]
    assert int(out[1]) < 300, f"peak RSS {out[1]} MB: the frame was allocated"


@pytest.mark.parametrize("shape", [(MAX_FRAME_PIXELS // 1000 + 1, 1000, 3), (1 << 20, 1 << 20), (100_000, 100_000, 4)])
def test_huge_frame_is_refused_before_any_work(image_clf, shape):
    huge = np.broadcast_to(np.uint8(7), shape)  # no memory behind it: the check must come before any copy
    with pytest.raises(InputError, match="over the limit"):
        image_clf.classify(huge)


def test_largest_allowed_frame_is_classified(image_clf):
    assert len(image_clf.classify(np.broadcast_to(np.uint8(9), (8192, 8192, 3)))) == 4


path_text = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=40)


@PROPS
@given(path_text)
def test_missing_or_odd_paths_are_refused(image_clf, tmp_path_factory, name):
    base = tmp_path_factory.getbasetemp()
    with pytest.raises(InputError, match="image file|directory"):
        image_clf.classify(str(base / "no-such-dir" / name))


def test_directory_and_non_image_file(image_clf, tmp_path):
    (tmp_path / "notes.jpg").write_text("hello")
    with pytest.raises(InputError, match="directory"):
        image_clf.classify(str(tmp_path))
    with pytest.raises(InputError, match="decoded"):
        image_clf.classify(tmp_path / "notes.jpg")
    with pytest.raises(InputError, match="image file"):
        image_clf.classify("bad\0path.png")


GOOD = np.random.default_rng(2).integers(0, 256, (24, 32, 3), np.uint8)
BAD_ITEMS = [np.zeros((0, 5, 3), np.uint8), np.zeros((5, 5, 3), np.float32), np.zeros((5, 5, 2), np.uint8), b"",
             b"junk", "/no/such/file.png", 42, None, [[1, 2], [3, 4]], np.zeros((2, 2, 2, 2, 3), np.uint8)]


@PROPS
@given(st.lists(st.sampled_from(["good", "png", *range(len(BAD_ITEMS))]), min_size=1, max_size=6))
def test_batch_mixes_are_refused_naming_the_bad_image(image_clf, picks):
    items = [GOOD if p == "good" else REAL_PNG if p == "png" else BAD_ITEMS[p] for p in picks]
    bad = [i for i, p in enumerate(picks) if not isinstance(p, str)]
    if not bad:
        assert len(image_clf.classify(items)) == len(items)
        return
    with pytest.raises(InputError) as e:
        image_clf.classify(items)
    if len(items) > 1:
        assert f"image {bad[0]} of {len(items)}" in str(e.value)


@pytest.mark.parametrize("images", [None, 3.5, object(), [], np.zeros((0, 8, 8, 3), np.uint8), {"a": 1}])
def test_things_that_are_not_images(image_clf, images):
    with pytest.raises(InputError):
        image_clf.classify(images)


@pytest.mark.parametrize("top_k", [0, -3, 2.0, "5", True, None])
def test_bad_image_top_k(image_clf, top_k):
    with pytest.raises(InputError, match="top_k"):
        image_clf.classify(GOOD, top_k=top_k)


@pytest.mark.parametrize("feeds", [None, [GOOD], {"pixels": GOOD}, {"nope": np.zeros((1, 3, 16, 16), np.float32)},
                                   {"pixels": np.zeros((1, 3, 16, 16), np.float64)}])
def test_run_with_bad_feeds(image_clf, feeds):
    with pytest.raises(InputError):
        image_clf.run(feeds)


# -- texts ----------------------------------------------------------------------------------

any_text = st.text(st.characters(codec=None, exclude_categories=()), max_size=300)  # surrogates, controls
items = st.one_of(any_text, st.binary(max_size=20), st.integers(), st.none(), st.floats(), st.lists(st.text(), max_size=2))


@PROPS
@given(any_text)
def test_any_string_is_classified_or_refused(text_clf, text):
    try:
        result = text_clf.classify(text)
    except InputError as e:
        assert "no token" in str(e) or "tokenize" in str(e)
        return
    assert len(result) == 3 and sum(p for _, p in result) == pytest.approx(1.0, abs=1e-5)


@PROPS
@given(st.lists(items, max_size=6))
def test_mixed_text_batches(text_clf, batch):
    non_str = [i for i, t in enumerate(batch) if not isinstance(t, str)]
    try:
        result = text_clf.classify(batch, top_k=1)
    except InputError as e:
        if non_str:
            assert f"text {non_str[0]} " in str(e)
        return
    assert not non_str and len(result) == len(batch)


@pytest.mark.parametrize("text", ["x" * 1_000_000, "the cat " * 200_000, "\x00\x01\x1b[31m\x7f cat", "\u202e\ufeff cat\u200b"])
def test_huge_and_control_character_texts_are_answered(text_clf, text):
    assert len(text_clf.classify(text)) == 3


def test_invalid_utf8_bytes_are_refused(text_clf):
    with pytest.raises(InputError, match="not a str"):
        text_clf.classify([b"\xff\xfe\xc3("])
    with pytest.raises(InputError, match="sequence of str"):
        text_clf.classify(b"\xff\xfe")


@PROPS
@given(hnp.arrays(st.sampled_from([np.int64, np.int32, np.float32]), hnp.array_shapes(min_dims=0, max_dims=3, max_side=5),
                  elements=st.integers(-3, 200)),
       hnp.arrays(st.sampled_from([np.int32, np.int64]), hnp.array_shapes(min_dims=0, max_dims=2, max_side=5),
                  elements=st.integers(-3, 10)))
def test_logits_on_any_ids_and_lengths(text_clf, ids, lengths):
    valid = (ids.dtype == np.int64 and lengths.dtype == np.int32 and ids.ndim == 2 and lengths.shape == ids.shape[:1]
             and (not lengths.size or (lengths.min() >= 1 and lengths.max() <= ids.shape[1]))
             and (not ids.size or (ids.min() >= 0 and ids.max() < text_clf.vocab_size)))
    assume(valid or ids.size < 20)
    out = answers_or_refuses(lambda: text_clf.logits(ids, lengths), valid)
    if valid:
        assert out.shape == (len(lengths), 3) and np.isfinite(out).all()


@pytest.mark.parametrize("ids, lengths", [([[1, 2]], [2]), (None, None), (np.ones((1, 2), np.int64), [2])])
def test_logits_on_non_arrays(text_clf, ids, lengths):
    with pytest.raises(InputError, match="numpy arrays"):
        text_clf.logits(ids, lengths)


# -- text generation ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def gen(gpt2_tiny_bundle):
    return load(gpt2_tiny_bundle, device="cpu")


def real(lo: float, hi: float, lo_open: bool = False):
    """(value, valid) pairs: numbers inside and outside [lo, hi], NaN, infinities and non-numbers."""
    inside = st.floats(lo, hi, exclude_min=lo_open).map(lambda x: (x, True))
    outside = st.sampled_from([lo - 1, hi + 1, -1e300, 1e300, float("nan"), float("inf"), -float("inf")]
                              + ([lo] if lo_open else [])).map(lambda x: (x, False))
    wrong_type = st.sampled_from(["0.5", None, True, [0.5], 1j]).map(lambda x: (x, x is None))
    return st.one_of(inside, outside, wrong_type)


def count(lo: int, hi: int, allow_none: bool = True):
    inside = st.integers(lo, hi).map(lambda n: (n, True))
    outside = st.sampled_from([lo - 1, -(2**63), 2.0, 1.5, "3", True, float("nan")]).map(lambda n: (n, False))
    return st.one_of(inside, outside, *([st.just((None, True))] if allow_none else []))


@PROPS
@given(temperature=real(0, 100), top_k=count(0, 2000), top_p=real(0, 1, lo_open=True),
       repetition_penalty=real(0, 100, lo_open=True), max_new_tokens=count(1, 4, allow_none=False),
       seed=st.one_of(st.just((None, True)), st.integers(0, 2**80).map(lambda s: (s, True)),
                      st.sampled_from([-1, 2.5, "7", True]).map(lambda s: (s, False))))
def test_generation_parameters_are_used_or_refused(gen, temperature, top_k, top_p, repetition_penalty,
                                                   max_new_tokens, seed):
    params = dict(temperature=temperature, top_k=top_k, top_p=top_p, repetition_penalty=repetition_penalty,
                  max_new_tokens=max_new_tokens, seed=seed)
    valid = all(ok for _, ok in params.values())
    kwargs = {k: v for k, (v, _) in params.items()}
    text = answers_or_refuses(lambda: gen.generate("The dragon", **kwargs), valid)
    ids = answers_or_refuses(lambda: gen.generate_ids([464, 10, 7], **kwargs), valid)
    pieces = answers_or_refuses(lambda: list(gen.stream("The dragon", **kwargs)), valid)
    if valid:
        assert isinstance(text, str)
        if kwargs["seed"] is not None or kwargs["temperature"] in (0, None):  # reproducible: stream equals generate
            assert "".join(pieces) == text
        assert len(ids) <= kwargs["max_new_tokens"] and all(0 <= t < gen.vocab_size for t in ids)


@PROPS
@given(any_text)
def test_any_prompt_is_continued_or_refused(gen, prompt):
    try:
        text = gen.generate(prompt, max_new_tokens=2)
    except InputError as e:
        assert "non-empty" in str(e) or "tokenize" in str(e) or "context" in str(e)
        return
    assert isinstance(text, str)


@pytest.mark.parametrize("extra", [0, 1, 1000])
def test_prompt_beyond_the_context(gen, extra):
    ids = [7] * (gen.max_context - 4 + extra)
    call = lambda **k: gen.generate_ids(ids, max_new_tokens=4, **k)
    if extra:
        with pytest.raises(InputError, match="context"):
            call()
        assert len(call(truncate=True, stop_token_ids=())) == 4
    else:
        assert len(call(stop_token_ids=())) == 4


@pytest.mark.parametrize("beyond", [0, 1, 10**12])
def test_max_new_tokens_beyond_the_context(gen, beyond):
    """A one-token prompt leaves max_context - 1 new tokens; more is refused, even with truncate."""
    assert len(gen.generate_ids([7], max_new_tokens=gen.max_context - 1, stop_token_ids=())) == gen.max_context - 1
    for truncate in (False, True):
        with pytest.raises(InputError, match="context"):
            gen.generate_ids([7], max_new_tokens=gen.max_context + beyond, truncate=truncate)


ids_items = st.one_of(st.integers(-5, 1005), st.floats(), st.text(max_size=2), st.none(),
                      st.lists(st.integers(-1, 1001), max_size=3))


@PROPS
@given(st.one_of(st.lists(ids_items, max_size=5), st.lists(st.lists(ids_items, max_size=4), max_size=3),
                 ids_items, hnp.arrays(st.sampled_from([np.int64, np.int32, np.float32]),
                                       hnp.array_shapes(min_dims=0, max_dims=3, max_side=4),
                                       elements=st.integers(-2, 1001))))
def test_any_ids_are_continued_or_refused(gen, ids):
    try:
        out = gen.generate_ids(ids, max_new_tokens=2)
    except InputError:
        return
    rows = [out] if out and isinstance(out[0], int) else out
    assert all(all(0 <= t < gen.vocab_size for t in row) for row in rows)


@pytest.mark.parametrize("prompt", [["ok", None], ("a", 3), [b"bytes"], {"a": 1}, np.array(["a"]), "", []])
def test_prompts_of_the_wrong_type(gen, prompt):
    with pytest.raises(InputError):
        gen.generate(prompt, max_new_tokens=2)
    with pytest.raises(InputError):
        list(gen.stream(prompt, max_new_tokens=2))


@pytest.mark.parametrize("params", [dict(temperature=1e-300), dict(temperature=5e-324, top_k=5),
                                    dict(temperature=0.7, repetition_penalty=5e-324),
                                    dict(temperature=100.0, top_p=5e-324), dict(temperature=1e-300, top_p=0.5)])
def test_extreme_but_valid_sampling_parameters(gen, params):
    """Valid limits of the ranges: a temperature or penalty that overflows the logits samples greedily."""
    out = gen.generate_ids([464, 10, 7], max_new_tokens=4, seed=1, stop_token_ids=(), **params)
    assert len(out) == 4 and all(0 <= t < gen.vocab_size for t in out)
