"""LSTM export: one LSTM op per layer, dynamic shapes, and padding that never changes an answer."""
from __future__ import annotations

import argparse

import numpy as np
import onnx
import pytest
import torch

from reelrt.export import lstm as export_lstm
from reelrt.export.lstm import build_onnx, export_bundle, onnx_logits
from reelrt.runtime.validation import ValidationError
from reelrt.models.lstm import Checkpoint, LSTMClassifier, LSTMConfig, train_tokenizer
from reelrt.runtime.bundle import open_bundle

CONFIGS = {"forward": dict(layers=1, bidirectional=False), "bidirectional": dict(layers=1, bidirectional=True),
           "forward-2-layers": dict(layers=2, bidirectional=False), "bidirectional-2-layers": dict(layers=2, bidirectional=True)}
VOCAB = 97


def tiny_model(layers: int, bidirectional: bool, seed: int = 0) -> LSTMClassifier:
    torch.manual_seed(seed)
    config = LSTMConfig(VOCAB, 4, embed_dim=8, hidden=12, layers=layers, bidirectional=bidirectional)
    return LSTMClassifier(config).eval()


def padded_batch(lengths: list[int], width: int, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Rows of random ids; the padding after each row's length is random ids too, not zeros,
    so that a graph reading past a row's length cannot go unnoticed."""
    rng = np.random.default_rng(seed)
    return rng.integers(1, VOCAB, (len(lengths), width)).astype(np.int64), np.array(lengths, np.int32)


def alone_in_pytorch(model: LSTMClassifier, ids: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Ground truth: each text run by itself, with no padding at all."""
    with torch.no_grad():
        return np.concatenate([model(torch.from_numpy(ids[i:i + 1, :n])).numpy() for i, n in enumerate(lengths)])


@pytest.fixture(params=sorted(CONFIGS))
def exported(request, tmp_path):
    model = tiny_model(**CONFIGS[request.param])
    path = tmp_path / "model.onnx"
    build_onnx(model, path)
    return model, path


def test_one_lstm_op_per_layer_with_sequence_lengths(exported):
    model, path = exported
    graph = onnx.load(str(path)).graph
    lstms = [n for n in graph.node if n.op_type == "LSTM"]
    assert len(lstms) == model.config.layers
    assert all(n.input[4] == "lengths" for n in lstms)
    directions = {a.s.decode() for n in lstms for a in n.attribute if a.name == "direction"}
    assert directions == {"bidirectional" if model.config.bidirectional else "forward"}
    assert not {"Loop", "Scan", "Sigmoid", "Tanh"} & {n.op_type for n in graph.node}  # never unrolled
    dims = [[d.dim_param or d.dim_value for d in i.type.tensor_type.shape.dim] for i in graph.input]
    assert dims == [["batch", "sequence"], ["batch"]]


def test_padded_batch_equals_each_text_alone(exported):
    model, path = exported
    ids, lengths = padded_batch([1, 7, 3, 12, 12, 5], width=16)   # wider than any text: trailing padding
    batch = onnx_logits(path, ids, lengths)
    alone = np.concatenate([onnx_logits(path, ids[i:i + 1, :n], lengths[i:i + 1]) for i, n in enumerate(lengths)])
    np.testing.assert_allclose(batch, alone, atol=1e-5)
    np.testing.assert_allclose(batch, alone_in_pytorch(model, ids, lengths), atol=1e-5)


def test_pytorch_forward_with_lengths_ignores_padding(exported):
    model, _ = exported
    ids, lengths = padded_batch([4, 9, 2, 9], width=11)
    alone = alone_in_pytorch(model, ids, lengths)
    for packed in (False, True):
        with torch.no_grad():
            padded = model(torch.from_numpy(ids), torch.from_numpy(lengths.astype(np.int64)), packed=packed).numpy()
        np.testing.assert_allclose(padded, alone, atol=1e-5)


@pytest.mark.parametrize("shape", [(1, 1), (1, 40), (5, 3)])
def test_dynamic_batch_and_sequence(shape, tmp_path):
    model = tiny_model(layers=1, bidirectional=True)
    build_onnx(model, tmp_path / "m.onnx")
    ids, lengths = padded_batch([shape[1]] * shape[0], shape[1])
    assert onnx_logits(tmp_path / "m.onnx", ids, lengths).shape == (shape[0], 4)


def small_checkpoint(bidirectional: bool = False) -> Checkpoint:
    texts = ["the cat sat on the mat", "dogs chase cats", "the ship warped away", "captain on the bridge"] * 5
    tokenizer = train_tokenizer(texts, VOCAB)
    torch.manual_seed(0)
    config = LSTMConfig(VOCAB, 2, embed_dim=8, hidden=12, bidirectional=bidirectional)
    rows = [(t, "pets" if "cat" in t or "dog" in t else "ships") for t in texts[:4]]
    return Checkpoint(LSTMClassifier(config).eval(), tokenizer, ["pets", "ships"], 16, heldout=rows)


def test_export_bundle_records_tokenizer_labels_and_validation(tmp_path):
    out = export_bundle(small_checkpoint(bidirectional=True), tmp_path / "b", "tests")
    m = open_bundle(out).manifest
    assert m.family == "lstm" and m.precision == "fp32" and m.labels == ["pets", "ships"]
    assert m.tokenizer["path"] == "tokenizer.json" and m.tokenizer["max_length"] == 16 and m.tokenizer["pad_id"] == 0
    assert m.validation["pytorch"]["relative_diff"] <= 1e-4
    assert m.validation["padded_vs_single"]["max_abs_diff"] <= 1e-5
    assert 0.0 <= m.validation["heldout_accuracy"] <= 1.0 and m.extra["heldout"] in m.artifacts
    assert m.extra["bidirectional"] is True and m.extra["hidden"] == 12


def test_export_fails_loudly_and_writes_nothing_when_the_graph_is_wrong(tmp_path, monkeypatch):
    def gates_not_reordered(lstm, layer, suffix):  # PyTorch's gate order fed to ONNX as is: a classic bug
        w, r, b = (getattr(lstm, f"{k}_l{layer}{suffix}").detach().numpy() for k in ("weight_ih", "weight_hh", "bias_ih"))
        return w, r, np.concatenate([b, getattr(lstm, f"bias_hh_l{layer}{suffix}").detach().numpy()])
    monkeypatch.setattr(export_lstm, "lstm_weights", gates_not_reordered)
    with pytest.raises(ValidationError, match="PyTorch"):
        export_bundle(small_checkpoint(), tmp_path / "bad", "tests")
    assert not (tmp_path / "bad").exists()


def test_export_command_with_random_weights(tmp_path, capsys):
    from reelrt.cli import main
    assert main(["export", "lstm", "--vocab-size", "300", "--hidden", "16", "--out", str(tmp_path / "r")]) == 0
    assert "padded vs single" in capsys.readouterr().out
    m = open_bundle(tmp_path / "r").manifest
    assert m.extra["vocab_size"] == 300 and m.extra["hidden"] == 16
    assert m.tokenizer["vocab_size"] <= 300


def test_export_refuses_a_file_that_is_not_a_checkpoint(tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    from reelrt.runtime.errors import InputError
    with pytest.raises(InputError):
        export_lstm.main(argparse.Namespace(checkpoint=str(bad), vocab_size=0, hidden=0, out=str(tmp_path / "o")))
