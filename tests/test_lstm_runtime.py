"""TextClassifier: strings in, labels with probabilities out; bad inputs get typed errors, never a crash."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest

from conftest import make_tiny_text_bundle
from reelrt.runtime import load, open_bundle
from reelrt.runtime.bundle import BundleWriter
from reelrt.runtime.errors import BundleError, InputError
from reelrt.runtime.tasks.text import TextClassifier

TEXTS = ["the cat sat on the mat", "dogs chase cats around the garden all day long", "the ship warped away",
         "captain on the bridge", "a quiet evening with a good book and tea"] * 4
MAX_LENGTH = 8


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    """A random-weight bidirectional classifier whose max length (8 tokens) is shorter than some texts."""
    return make_tiny_text_bundle(tmp_path_factory.mktemp("text") / "b", bidirectional=True)


@pytest.fixture(scope="module")
def clf(bundle) -> TextClassifier:
    return load(bundle, device="cpu")


def test_one_string_gives_every_label_with_probabilities(clf):
    result = clf.classify("the cat sat on the mat")
    assert sorted(label for label, _ in result) == ["books", "pets", "ships"]
    probs = [p for _, p in result]
    assert probs == sorted(probs, reverse=True) and sum(probs) == pytest.approx(1.0, abs=1e-5)
    assert clf.classify("the cat sat on the mat", top_k=1) == result[:1]


def test_a_list_gives_one_answer_per_text_in_order(clf):
    texts = TEXTS[:5]
    batch = clf.classify(texts, top_k=2)
    assert len(batch) == 5 and all(len(r) == 2 for r in batch)
    assert batch == [clf.classify(t, top_k=2) for t in texts]
    assert clf.classify([]) == []


def test_length_buckets_and_small_batches_change_no_answer(bundle, clf):
    texts = ["cat", *TEXTS[:9], "ship"]
    one_by_one = np.concatenate([clf.probabilities([t]) for t in texts])
    tiny_batches = TextClassifier(open_bundle(bundle), device="cpu", batch_size=3)
    np.testing.assert_allclose(clf.probabilities(texts), one_by_one, atol=1e-6)
    np.testing.assert_allclose(tiny_batches.probabilities(texts), one_by_one, atol=1e-6)


def test_texts_are_cut_to_the_manifest_max_length(clf):
    long = "dogs chase cats around the garden all day long and then sleep by the fire"
    ids = clf.tokenizer.encode(long, add_special_tokens=False).ids
    assert len(ids) > MAX_LENGTH
    head = np.array([ids[:MAX_LENGTH]], np.int64)
    expected = clf.logits(head, np.array([MAX_LENGTH], np.int32))
    np.testing.assert_allclose(clf.probabilities([long]), np.exp(expected) / np.exp(expected).sum(), atol=1e-6)


@pytest.mark.parametrize("bad, reason", [
    ("", "no token"), ("   \n\t", "no token"), ([""], "no token"), (None, "sequence of str"),
    (b"bytes", "sequence of str"), (["ok", 3], "not a str"), ([None], "not a str"), (42, "sequence of str"),
])
def test_bad_texts_raise_input_error(clf, bad, reason):
    with pytest.raises(InputError, match=reason):
        clf.classify(bad)


def test_odd_but_valid_text_gets_an_answer(clf):
    for text in ["ünïcödé 🚀 ship", "\x00cat\x00", "x" * 100_000, "猫が好き"]:
        assert len(clf.classify(text)) == 3


def test_lone_surrogate_is_an_input_error_or_an_answer(clf):
    """Not valid UTF-8: the tokenizer may refuse it (InputError) or replace it; it must not crash."""
    try:
        assert len(clf.classify("cat \ud800 dog")) == 3
    except InputError as e:
        assert "tokenize" in str(e)


@pytest.mark.parametrize("top_k", [0, -1, 1.5, "2"])
def test_bad_top_k(clf, top_k):
    with pytest.raises(InputError, match="top_k"):
        clf.classify("cat", top_k=top_k)


def test_logits_checks_ids_and_lengths(clf):
    ids = np.ones((2, 4), np.int64)
    with pytest.raises(InputError, match="lengths"):
        clf.logits(ids, np.array([0, 4], np.int32))
    with pytest.raises(InputError, match="lengths"):
        clf.logits(ids, np.array([5, 4], np.int32))
    with pytest.raises(InputError, match="token ids"):
        clf.logits(ids * clf.vocab_size, np.array([4, 4], np.int32))
    with pytest.raises(InputError, match="dtype"):
        clf.logits(ids.astype(np.int32), np.array([4, 4], np.int32))


def rewrite(bundle, out, tokenizer_bytes: bytes | None = None, **manifest_changes):
    """A copy of the bundle with another tokenizer.json and/or manifest fields, properly hashed."""
    src = open_bundle(bundle)
    with BundleWriter(out) as w:
        shutil.copy(src.model_path, w.dir / "model.onnx")
        (w.dir / "tokenizer.json").write_bytes(tokenizer_bytes or src.path("tokenizer.json").read_bytes())
        manifest = src.manifest
        for key, value in manifest_changes.items():
            setattr(manifest, key, value)
        return w.commit(manifest)


@pytest.mark.parametrize("content", [b"not json at all", b"{}", json.dumps({"model": {"type": "Nope"}}).encode()])
def test_a_tokenizer_json_that_is_not_one_is_a_bundle_error(bundle, tmp_path, content):
    with pytest.raises(BundleError, match="tokenizer"):
        load(rewrite(bundle, tmp_path / "bad", content), device="cpu")


@pytest.mark.parametrize("field, value, reason", [
    ("tokenizer", {"path": "tokenizer.json", "max_length": 0, "pad_id": 0}, "max_length"),
    ("tokenizer", {"path": "tokenizer.json", "max_length": 8}, "pad_id"),
    ("labels", ["a", "b"], "labels"),
    ("extra", {}, "vocab_size"),
])
def test_manifest_facts_the_classifier_needs(bundle, tmp_path, field, value, reason):
    with pytest.raises(BundleError, match=reason):
        load(rewrite(bundle, tmp_path / "bad", **{field: value}), device="cpu")


def test_text_runtime_imports_no_training_packages(bundle):
    probe = ("import sys, json; from reelrt.runtime import load; c = load(sys.argv[1], device='cpu');"
             "c.classify(['a cat', 'the ship']);"
             "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'onnx', 'transformers'))))")
    out = subprocess.run([sys.executable, "-c", probe, str(bundle)], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []
