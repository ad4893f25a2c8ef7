"""The LSTM family end to end on real labelled text: train -> export -> int8 -> TextClassifier -> bench rows."""
from __future__ import annotations

import csv

import numpy as np
import onnx
import pytest

from reelrt.cli import main
from reelrt.models.lstm import FORTUNES_CSV, Checkpoint, read_labeled_csv
from reelrt.models.lstm_train import TrainSettings, train
from reelrt.runtime import load, open_bundle
from reelrt.runtime.errors import InputError

SETTINGS = TrainSettings(epochs=6, hidden=32, embed_dim=32, vocab_size=1000, max_length=64)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("lstm-pipeline")


@pytest.fixture(scope="module")
def checkpoint(workdir) -> Checkpoint:
    trained = train(*read_labeled_csv(FORTUNES_CSV), SETTINGS, progress=False)
    trained.save(workdir / "fortunes.pt")
    return trained


@pytest.fixture(scope="module")
def bundles(workdir, checkpoint):
    """fp32 and int8 bundles made with the command line, as a user would."""
    fp32, int8 = workdir / "fp32", workdir / "int8"
    assert main(["export", "lstm", "--checkpoint", str(workdir / "fortunes.pt"), "--out", str(fp32)]) == 0
    assert main(["quantize", str(fp32), "--precision", "int8", "--out", str(int8)]) == 0
    return fp32, int8


def test_training_learns_well_above_chance(checkpoint):
    m = checkpoint.metrics
    assert m["heldout_rows"] >= 150 and m["train_rows"] + m["heldout_rows"] == len(read_labeled_csv(FORTUNES_CSV)[0])
    # five classes, the largest a third of the rows: accuracy well above the majority guess
    assert m["heldout_accuracy"] >= m["majority_baseline"] + 0.15, m


def test_heldout_rows_were_never_trained_on(checkpoint):
    texts, _ = read_labeled_csv(FORTUNES_CSV)
    heldout = {text for text, _ in checkpoint.heldout}
    assert len(heldout) == checkpoint.metrics["heldout_rows"] and heldout <= set(texts)


def test_checkpoint_round_trip(workdir, checkpoint, tmp_path):
    import torch
    loaded = Checkpoint.load(workdir / "fortunes.pt")
    assert loaded.labels == checkpoint.labels and loaded.heldout == checkpoint.heldout
    assert loaded.tokenizer.to_str() == checkpoint.tokenizer.to_str()
    doc = torch.load(workdir / "fortunes.pt", weights_only=True)
    doc["config"]["hidden"] += 1                       # weights no longer fit the architecture
    torch.save(doc, tmp_path / "damaged.pt")
    with pytest.raises(InputError, match="damaged"):
        Checkpoint.load(tmp_path / "damaged.pt")
    torch.save({"weights": torch.zeros(2)}, tmp_path / "other.pt")
    with pytest.raises(InputError, match="not an LSTM checkpoint"):
        Checkpoint.load(tmp_path / "other.pt")


def test_export_reports_the_trained_accuracy(bundles, checkpoint):
    v = open_bundle(bundles[0]).manifest.validation
    assert v["heldout_accuracy"] == pytest.approx(checkpoint.metrics["heldout_accuracy"], abs=0.011)


def test_int8_uses_the_quantized_lstm_and_keeps_accuracy(bundles):
    fp32, int8 = (open_bundle(b) for b in bundles)
    graph = onnx.load(str(int8.model_path)).graph
    assert "LSTM" not in {n.op_type for n in graph.node}
    (lstm,) = [n for n in graph.node if n.op_type == "DynamicQuantizeLSTM"]
    dtypes = {i.name: i.data_type for i in graph.initializer}
    assert dtypes[lstm.input[1]] == dtypes[lstm.input[2]] == onnx.TensorProto.INT8   # W and R
    v = int8.manifest.validation
    assert abs(v["heldout_accuracy"] - v["heldout_accuracy_fp32"]) <= 0.03
    assert v["fp32_source_heldout"]["top1_agreement"] >= 0.95
    # gated on the real texts the bundle carries; random ids only reported
    ids = np.load(int8.path("reference/inputs.npz"))["input_ids"]
    assert v["fp32_source_reference"]["samples"] == len(ids) and v["fp32_source_reference"]["top1_agreement"] >= 0.95
    assert "relative_diff" in v["fp32_source_random_ids"]
    assert int8.manifest.tokenizer == fp32.manifest.tokenizer and int8.manifest.labels == fp32.manifest.labels


def test_int8_parity_with_fp32_through_the_runtime(bundles, checkpoint):
    texts = [text for text, _ in checkpoint.heldout[:40]]
    p32, p8 = (load(b).probabilities(texts) for b in bundles)
    assert np.abs(p32 - p8).max() < 0.15
    assert (p32.argmax(-1) == p8.argmax(-1)).mean() >= 0.95


def test_classifier_matches_pytorch(bundles, checkpoint):
    import torch
    texts = [text for text, _ in checkpoint.heldout[:24]]
    clf = load(bundles[0])
    encodings = clf.tokenizer.encode_batch(texts, add_special_tokens=False)
    with torch.no_grad():   # each text alone, without the padding (the tokenizer cuts to the bundle's max length)
        reference = np.concatenate([torch.softmax(checkpoint.model(torch.tensor([e.ids[:sum(e.attention_mask)]])), -1).numpy()
                                    for e in encodings])
    np.testing.assert_allclose(clf.probabilities(texts), reference, atol=1e-5)


def test_run_command_classifies_text(bundles, capsys):
    assert main(["run", str(bundles[1]), "--text", "Captain, the warp core is failing", "--text", "pizza"]) == 0
    out = capsys.readouterr().out
    assert "Captain, the warp core is failing" in out and "%" in out
    assert main(["run", str(bundles[1]), "--text", "   "]) == 2


def test_quantize_refuses_an_int8_source(bundles, tmp_path):
    assert main(["quantize", str(bundles[1]), "--precision", "int8", "--out", str(tmp_path / "x")]) == 2


def test_bench_rows_share_workloads_and_run(bundles):
    from reelrt.bench.lstm import systems
    rows, skipped = systems([open_bundle(b) for b in bundles], {"pytorch", "ort-naive", "optimum"}, threads=1)
    assert "optimum" in skipped and "openvino" not in skipped
    workloads = {r.workload for r in rows}
    assert workloads == {"lstm h32 bi batch 1 seq 128", "lstm h32 bi batch 16 seq 128"}
    for workload in workloads:
        names = sorted(r.name for r in rows if r.workload == workload)
        assert names == ["onnxruntime naive export", "pytorch eager", "reelrt fp32", "reelrt int8"]
    for row in rows:
        if "batch 1 " in row.workload:
            assert row.build()() is None
    rows, skipped = systems([open_bundle(bundles[1])], {"openvino"}, threads=1)
    assert "openvino" in skipped and [r.name for r in rows] == ["reelrt int8", "reelrt int8"]


def test_demo_reuses_built_bundles_and_shows_answers(bundles, workdir, monkeypatch):
    from reelrt.bench.demo import build_lstm, show_lstm
    demo_dir = workdir / "demo"
    demo_dir.mkdir()
    for source, name in zip(bundles, ("lstm-fortunes", "lstm-fortunes-int8")):
        (demo_dir / name).symlink_to(source)
    monkeypatch.setattr("reelrt.models.lstm_train.train", lambda *a, **k: pytest.fail("demo retrained"))
    built = build_lstm(demo_dir)
    assert [b.name for b in built] == ["lstm-fortunes", "lstm-fortunes-int8"]
    shown = show_lstm(built[1]).splitlines()
    assert "held-out accuracy" in shown[0] and len(shown) == 1 + len(open_bundle(built[1]).manifest.labels)
    assert all("(right)" in line or "(wrong: " in line for line in shown[1:])


def test_train_command_writes_a_checkpoint(tmp_path, capsys):
    from reelrt.cli import build_parser
    from reelrt.models.lstm_train import main as train_main
    small = tmp_path / "small.csv"
    with open(FORTUNES_CSV, newline="") as src, open(small, "w", newline="") as dst:
        csv.writer(dst).writerows(list(csv.reader(src))[:121])
    args = build_parser().parse_args(["train", "lstm", "--csv", str(small), "--out", str(tmp_path / "s.pt"),
                                      "--epochs", "1", "--hidden", "8", "--bidirectional", "--max-length", "16"])
    assert train_main(args) == 0
    loaded = Checkpoint.load(tmp_path / "s.pt")
    assert loaded.model.config.bidirectional and loaded.model.config.hidden == 8 and loaded.max_length == 16
    assert "held-out accuracy" in capsys.readouterr().out
    args.epochs = 0
    with pytest.raises(InputError, match="--epochs"):
        train_main(args)


def test_training_csv_errors(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("sentence,category\nhello,a\n")
    with pytest.raises(InputError, match="text and label"):
        read_labeled_csv(bad)
    with open(bad, "w", newline="") as f:
        csv.writer(f).writerows([["text", "label"], ["hello", "a"], ["world", "a"]])
    with pytest.raises(InputError, match="two labels"):
        read_labeled_csv(bad)
