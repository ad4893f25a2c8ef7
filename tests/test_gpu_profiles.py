"""TensorRT optimisation profiles derived from CNN-, LSTM- and GPT-2-shaped manifests (CPU only)."""
from __future__ import annotations

import pytest

from reelrt.runtime import BundleError
from reelrt.runtime.backends.gpu.profiles import choose_profile, derive_profiles
from reelrt.runtime.bundle.manifest import Manifest, TensorSpec


def manifest(family: str, inputs: list[TensorSpec], extra: dict | None = None) -> Manifest:
    task = {"cnn": "image-classification", "lstm": "text-classification", "gpt2": "text-generation"}[family]
    return Manifest(family=family, task=task, precision="fp32", model="model.onnx", inputs=inputs,
                    outputs=[TensorSpec("logits", "float32", ("batch", 3))], artifacts={}, extra=extra or {})


CNN = [TensorSpec("pixels", "float32", ("batch", 3, 224, 224))]
LSTM = [TensorSpec("input_ids", "int64", ("batch", "sequence")), TensorSpec("lengths", "int64", ("batch",))]
GPT2 = [TensorSpec("input_ids", "int64", ("batch", "sequence")),
        TensorSpec("past_key_0", "float32", ("batch", 12, "past_sequence", 64)),
        TensorSpec("attention_mask", "int64", ("batch", "total_sequence"))]


def shapes(profile) -> dict:
    return {name: tuple(map(list, ranges)) for name, ranges in profile.shapes.items()}


def test_cnn_profiles_cover_batch_1_and_the_max_batch():
    p1, p32 = derive_profiles(manifest("cnn", CNN))
    assert (p1.name, p32.name) == ("batch1", "batch32")
    assert shapes(p1)["pixels"] == ([1, 3, 224, 224], [1, 3, 224, 224], [32, 3, 224, 224])
    assert shapes(p32)["pixels"] == ([1, 3, 224, 224], [32, 3, 224, 224], [32, 3, 224, 224])
    only = derive_profiles(manifest("cnn", CNN, {"max_batch": 1}))
    assert [p.name for p in only] == ["batch1"] and shapes(only[0])["pixels"][2] == [1, 3, 224, 224]


def test_lstm_sequence_range_follows_max_length():
    p1, p8 = derive_profiles(manifest("lstm", LSTM, {"max_length": 64, "max_batch": 8}))
    assert shapes(p1)["input_ids"] == ([1, 1], [1, 64], [8, 64])
    assert shapes(p1)["lengths"] == ([1], [1], [8])
    assert shapes(p8)["input_ids"] == ([1, 1], [8, 64], [8, 64])
    default = derive_profiles(manifest("lstm", LSTM))[0]
    assert shapes(default)["input_ids"] == ([1, 1], [1, 128], [32, 256])


def test_gpt2_gets_decode_and_prefill_profiles_from_max_context():
    decode, prefill = derive_profiles(manifest("gpt2", GPT2, {"max_context": 256}))
    assert (decode.name, prefill.name) == ("decode", "prefill")
    assert shapes(decode)["input_ids"] == ([1, 1], [1, 1], [1, 1])
    assert shapes(decode)["past_key_0"] == ([1, 12, 0, 64], [1, 12, 128, 64], [1, 12, 255, 64])
    assert shapes(decode)["attention_mask"] == ([1, 1], [1, 129], [1, 256])
    assert shapes(prefill)["input_ids"] == ([1, 1], [1, 32], [1, 256])
    assert shapes(prefill)["past_key_0"] == ([1, 12, 0, 64], [1, 12, 0, 64], [1, 12, 255, 64])


def test_a_fixed_size_cache_buffer_needs_no_past_profile():
    """GroupQueryAttention-style bundles keep a max-context buffer of fixed shape."""
    inputs = [TensorSpec("input_ids", "int64", (1, "sequence")), TensorSpec("past", "float32", (1, 4, 128, 16))]
    (only,) = derive_profiles(manifest("gpt2", inputs, {"max_context": 128}))
    assert shapes(only)["past"] == ([1, 4, 128, 16],) * 3
    assert shapes(only)["input_ids"] == ([1, 1], [1, 128], [1, 128])


def test_unknown_symbols_need_an_explicit_range():
    inputs = [TensorSpec("pixels", "float32", ("batch", 3, "height", "width"))]
    with pytest.raises(BundleError, match="'height' has no known role.*dim_ranges"):
        derive_profiles(manifest("cnn", inputs))
    ranges = {"height": [64, 224, 512], "width": [64, 224, 512]}
    p1 = derive_profiles(manifest("cnn", inputs, {"dim_ranges": ranges, "max_batch": 1}))[0]
    assert shapes(p1)["pixels"] == ([1, 3, 64, 64], [1, 3, 224, 224], [1, 3, 512, 512])


@pytest.mark.parametrize("extra", [{"max_batch": 0}, {"max_context": "1024"}, {"dim_ranges": {"batch": [4, 2, 8]}},
                                   {"dim_ranges": {"batch": [1, 2]}}, {"dim_ranges": []}])
def test_bad_hints_are_bundle_errors(extra):
    with pytest.raises(BundleError, match="manifest.extra"):
        derive_profiles(manifest("gpt2", GPT2, extra))


def test_choose_profile_takes_the_nearest_opt_that_holds_the_shapes():
    profiles = [{"x": ((1, 1), (1, 1), (1, 1)), "p": ((0,), (64,), (127,))},      # decode
                {"x": ((1, 1), (1, 32), (1, 128)), "p": ((0,), (0,), (127,))}]    # prefill
    assert choose_profile(profiles, {"x": (1, 1), "p": (70,)}) == 0
    assert choose_profile(profiles, {"x": (1, 1), "p": (0,)}) == 1     # both hold it: distance 31 beats 64
    assert choose_profile(profiles, {"x": (1, 20), "p": (0,)}) == 1
    with pytest.raises(ValueError, match="outside every optimisation profile"):
        choose_profile(profiles, {"x": (1, 200), "p": (0,)})
    with pytest.raises(ValueError):
        choose_profile(profiles, {"x": (1, 2, 3), "p": (0,)})
