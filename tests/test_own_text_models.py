"""Bring your own recurrent text classifier: a user's LSTM with a one-logit head and a bidirectional
sequence-first GRU go export -> int8 and fp16 -> load(), answer as the user's own module does on
texts of different lengths (a padded batch as each text alone), under the head the manifest names;
a module of another shape is refused naming what was expected."""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers

from own_models import NormedLSTM, SentimentLSTM, SquashedLSTM, TopicGRU
from reelrt.cli import main
from reelrt.export import text_classifier
from reelrt.runtime import load, open_bundle
from reelrt.runtime.tasks.ranking import sigmoid, softmax
from reelrt.runtime.validation import check, compare

TESTS = Path(__file__).parent
WORDS = ("the a film plot actor was is great dull loved hated boring brilliant slow fast music ending story"
         " scene two hours never again best worst ever i it and but").split()
TEXTS = ["Loved it", "The plot was dull and the ending slow", "great", "Two hours I will never get back",
         "the best film ever but the music was boring and the story was slow and the actor was dull",
         "Brilliant scene", "worst", "the ending was great the music was great the story was great i loved it"]


def vocabulary(path: Path) -> Path:
    """A plain word list, one per line (its id the line number), as many LSTM tutorials keep it."""
    path.write_text("\n".join(["<pad>", "[UNK]", *WORDS]) + "\n")
    return path


def user_ids(text: str) -> list[int]:
    """How the user's own code tokenizes: lower-case, split at whitespace, unknown words to 1."""
    index = {w: i + 2 for i, w in enumerate(WORDS)}
    return [index.get(w, 1) for w in text.lower().split()]


def own_answers(module, texts, sequence_first: bool = False) -> np.ndarray:
    """The user's module on each text alone: the ground truth."""
    rows = []
    with torch.inference_mode():
        for text in texts:
            ids = torch.tensor([user_ids(text)])
            rows.append(module(ids.T if sequence_first else ids).numpy())
    return np.concatenate(rows)


def probabilities(clf, texts, precision: str) -> np.ndarray:
    """Both the padded batch and each text alone through the runtime; they must agree (exactly but for
    rounding in float; int8 within its tolerance: dynamic quantization scales activations per batch)."""
    batch = clf.probabilities(texts)
    alone = np.concatenate([clf.probabilities([t]) for t in texts])
    if precision == "int8":
        check(compare(alone, batch), "int8", "int8 padded batch vs each text alone", top1=False)
    else:
        np.testing.assert_allclose(batch, alone, atol=1e-5)
    return batch


def precisions(bundle: Path, tmp_path: Path) -> dict[str, Path]:
    out = {"fp32": bundle}
    for precision in ("int8", "fp16"):
        out[precision] = tmp_path / f"{bundle.name}-{precision}"
        assert main(["quantize", str(bundle), "--precision", precision, "--out", str(out[precision])]) == 0
    return out


@pytest.fixture(scope="module")
def sentiment(tmp_path_factory):
    """A user's LSTM sentiment model with one logit, exported from its file, state_dict and word list."""
    tmp = tmp_path_factory.mktemp("sentiment")
    torch.manual_seed(0)
    module = SentimentLSTM(vocab_size=len(WORDS) + 2).eval()
    torch.save(module.state_dict(), tmp / "sentiment.pt")
    (tmp / "texts.txt").write_text("\n".join(TEXTS))
    assert main(["export", "text-classifier", "--module", f"{TESTS / 'own_models.py'}:SentimentLSTM",
                 "--module-kwargs", f'{{"vocab_size": {len(WORDS) + 2}}}', "--checkpoint", str(tmp / "sentiment.pt"),
                 "--tokenizer", str(vocabulary(tmp / "vocab.txt")), "--lowercase", "--labels", "negative,positive",
                 "--threshold", "0.4", "--texts", str(tmp / "texts.txt"), "--max-length", "32",
                 "--random-weights", "--out", str(tmp / "sentiment")]) == 0
    return module, precisions(tmp / "sentiment", tmp)


def test_one_logit_lstm_is_a_sigmoid_head_with_its_threshold(sentiment):
    module, bundles = sentiment
    m = open_bundle(bundles["fp32"]).manifest
    assert m.head == {"kind": "sigmoid", "threshold": 0.4} and m.labels == ["negative", "positive"]
    assert m.outputs[0].shape == ("batch", 1) and m.extra["cell"] == "LSTM"
    assert m.validation["padded_vs_single"]["max_abs_diff"] <= 1e-5
    positive = sigmoid(own_answers(module, TEXTS))[:, 0]
    for precision, path in bundles.items():
        clf = load(path)
        assert open_bundle(path).manifest.head == m.head             # quantize keeps the head
        probs = probabilities(clf, TEXTS, precision)
        check(compare(positive, probs[:, 1]), precision, f"{precision} P(positive) vs the user's module", top1=False)
        for text, answer in zip(TEXTS, clf.classify(TEXTS)):
            p = clf.probabilities([text])[0, 1]
            assert answer[0][0] == ("positive" if p >= 0.4 else "negative") and len(answer) == 2


@pytest.fixture(scope="module")
def topics(tmp_path_factory):
    """A bidirectional 2-layer sequence-first GRU through the Python API, with a tokenizer.json."""
    tmp = tmp_path_factory.mktemp("topics")
    vocab = {"<pad>": 0, "[UNK]": 1, **{w: i + 2 for i, w in enumerate(WORDS)}}
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer.normalizer = normalizers.Lowercase()
    tokenizer.save(str(tmp / "tokenizer.json"))
    torch.manual_seed(1)
    module = TopicGRU(vocab_size=len(vocab), classes=3).eval()
    bundle = text_classifier(tmp / "topics", module, tmp / "tokenizer.json", labels=["plot", "music", "cast"],
                             texts=TEXTS, max_length=40, random_weights=True)
    return module, precisions(bundle, tmp)


def test_bidirectional_gru_matches_the_users_module(topics):
    module, bundles = topics
    m = open_bundle(bundles["fp32"]).manifest
    assert (m.extra["cell"], m.extra["layers"], m.extra["bidirectional"]) == ("GRU", 2, True)
    import onnx
    graph = onnx.load(str(bundles["fp32"] / "model.onnx")).graph
    grus = [n for n in graph.node if n.op_type == "GRU"]
    assert len(grus) == 2 and all(n.input[4] == "lengths" for n in grus)   # one op per layer, padding-exact
    expected = softmax(own_answers(module, TEXTS, sequence_first=True))
    for precision, path in bundles.items():
        check(compare(expected, probabilities(load(path), TEXTS, precision)), precision, f"{precision} GRU", top1=False)


def test_multi_label_head_returns_the_labels_over_the_threshold(tmp_path, topics):
    module, _ = topics
    bundle = text_classifier(tmp_path / "tags", module, vocabulary(tmp_path / "vocab.txt"), lowercase=True,
                             labels=["plot", "music", "cast"], head="multi-label", threshold=0.5, random_weights=True)
    clf = load(bundle)
    expected = sigmoid(own_answers(module, TEXTS, sequence_first=True))
    check(compare(expected, clf.probabilities(TEXTS)), "fp32", "multi-label", top1=False)
    for row, answer in zip(expected, clf.classify(TEXTS)):
        assert [label for label, _ in answer] == [["plot", "music", "cast"][i] for i in np.argsort(-row) if row[i] >= 0.5]


@pytest.mark.parametrize("module, kwargs, message", [
    (NormedLSTM(), {}, "other layers with weights (norm)"),
    (SquashedLSTM(), {}, "applies sigmoid"),
    (torch.nn.Sequential(torch.nn.Embedding(40, 8), torch.nn.Linear(8, 2)), {}, "found 0 nn.LSTM/nn.GRU"),
    (SentimentLSTM(vocab_size=10), {}, "the embedding only 10 rows"),
    (SentimentLSTM(vocab_size=40), {"labels": ["a", "b", "c"]}, "3 labels for a sigmoid head"),
    (SentimentLSTM(vocab_size=40), {"head": "softmax"}, "one logit is read as a sigmoid"),
    (SentimentLSTM(vocab_size=40), {"parts": {"rnn": "gru"}}, "no nn.LSTM/nn.GRU named 'gru'"),
])
def test_modules_of_another_shape_are_refused_naming_what_was_expected(tmp_path, module, kwargs, message):
    from reelrt.runtime import InputError

    with pytest.raises(InputError, match=re.escape(message)):
        text_classifier(tmp_path / "never", module, vocabulary(tmp_path / "vocab.txt"), **kwargs)
    assert not (tmp_path / "never").exists()


def test_bad_text_modules_on_the_command_line_are_one_line_and_exit_2(tmp_path, capsys):
    own = f"{TESTS / 'own_models.py'}"
    vocab = str(vocabulary(tmp_path / "vocab.txt"))
    (tmp_path / "bad.json").write_text("[1, 2]")
    torch.save(SentimentLSTM(vocab_size=40).state_dict(), tmp_path / "weights.pt")
    cases = {
        "state_dict without --module": (["--checkpoint", str(tmp_path / "weights.pt")],
                                        "but a state_dict; for your own model's state_dict, pass its class with"
                                        " --module"),
        "not a checkpoint": (["--checkpoint", vocab], "is not a readable checkpoint"),
        "other shape": (["--module", f"{own}:NormedLSTM", "--tokenizer", vocab], "expected Embedding -> nn.LSTM"),
        "missing tokenizer": (["--module", f"{own}:SentimentLSTM", "--tokenizer", str(tmp_path / "no.json")],
                              "does not exist"),
        "bad vocabulary": (["--module", f"{own}:SentimentLSTM", "--tokenizer", str(tmp_path / "bad.json")],
                           "maps tokens to integer ids"),
        "wrong kwargs": (["--module", f"{own}:SentimentLSTM", "--module-kwargs", '{"layers": 2}', "--tokenizer", vocab],
                         "cannot build SentimentLSTM"),
    }
    for name, (argv, message) in cases.items():
        capsys.readouterr()
        assert main(["export", "text-classifier", *argv, "--out", str(tmp_path / "never")]) == 2, name
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and message in err, (name, err)


@pytest.mark.parametrize("name", ["my-tokenizer.json", "tok.txt", "tokenizer-v2"])
def test_a_tokenizers_json_is_known_by_its_content_whatever_its_name(tmp_path, name):
    from reelrt.export.recurrent import read_user_tokenizer

    tokenizer = Tokenizer(models.WordLevel({"[UNK]": 0, "loved": 1, "it": 2, ",": 3, "film": 4}, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()   # splits "it," where a vocabulary would not
    tokenizer.normalizer = normalizers.Lowercase()
    tokenizer.save(str(tmp_path / name))
    read = read_user_tokenizer(tmp_path / name)
    assert read.to_str() == tokenizer.to_str()
    assert read.encode("Loved it, film").ids == tokenizer.encode("Loved it, film").ids == [1, 2, 3, 4]
