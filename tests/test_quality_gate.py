"""The quality gate: a failed quantization says which figure and by how much, writes nothing, and
--accept-quality-loss writes it anyway with the failed gate in the manifest, shown by inspect;
untrained weights are declared or recognised so that meaningless top-1 agreement never gates."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from reelrt.cli import main
from reelrt.export import image_classifier
from reelrt.quantize.cnn import quantize_int8
from reelrt.runtime import ValidationError, load, open_bundle
from reelrt.runtime.validation import weights_are_random


def outlier_cnn() -> nn.Module:
    """A CNN whose int8 build is genuinely bad: one activation channel a thousand times larger than the
    others shares their per-tensor uint8 scale, so the small channels the head reads round to zero."""
    torch.manual_seed(0)
    conv = nn.Conv2d(3, 4, 1)
    head = nn.Linear(4, 3)
    with torch.no_grad():
        conv.weight[0] *= 1000.0
        conv.weight[0].abs_()
        head.weight[:, 0] = 0.0
    return nn.Sequential(conv, nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), head).eval()


@pytest.fixture(scope="module")
def fragile(tmp_path_factory):
    return image_classifier(tmp_path_factory.mktemp("gate") / "fragile", module=outlier_cnn(), labels=["a", "b", "c"],
                            preprocessing={"size": [16, 16], "mean": [0.5] * 3, "std": [0.25] * 3})


def test_a_failed_gate_says_which_figure_and_by_how_much_and_writes_nothing(fragile, tmp_path, capsys):
    assert main(["quantize", str(fragile), "--precision", "int8", "--out", str(tmp_path / "q")]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("reelrt")]  # not tqdm's bar
    assert len(err) == 1 and err[0].startswith("reelrt quantize: error: int8 vs fp32 on reference inputs")
    assert "of the output range, over the int8 tolerance 0.15 by" in err[0] and "--accept-quality-loss" in err[0]
    assert not (tmp_path / "q").exists()


def test_accepting_the_loss_writes_it_with_the_failed_gate_recorded_and_shown(fragile, tmp_path, capsys):
    assert main(["quantize", str(fragile), "--precision", "int8", "--accept-quality-loss", "--out", str(tmp_path / "q")]) == 0
    gate = open_bundle(tmp_path / "q").manifest.validation["quality_gate"]
    assert gate["passed"] is False and gate["accepted_quality_loss"] is True
    failure = gate["failures"][0]
    assert failure["figure"] == "relative_diff" and failure["limit"] == 0.15 and failure["value"] > 0.15
    capsys.readouterr()
    assert main(["inspect", str(tmp_path / "q")]) == 0
    shown = capsys.readouterr().out
    assert "FAILED its gate, written with --accept-quality-loss" in shown and "over the int8 tolerance" in shown
    assert load(tmp_path / "q").classify(np.zeros((16, 16, 3), np.uint8), top_k=1)  # usable, at its own risk


def test_the_typed_pass_takes_the_same_choice(fragile, tmp_path):
    with pytest.raises(ValidationError, match="over the int8 tolerance"):
        quantize_int8(open_bundle(fragile), tmp_path / "refused")
    out = quantize_int8(open_bundle(fragile), tmp_path / "accepted", accept_quality_loss=True)
    assert open_bundle(out).manifest.validation["quality_gate"]["failures"]
    assert main(["quantize", str(fragile), "--precision", "fp16", "--out", str(tmp_path / "h")]) == 0
    fp16 = json.loads((tmp_path / "h" / "manifest.json").read_text())
    assert fp16["validation"]["quality_gate"] == {"passed": True, "accepted_quality_loss": False, "failures": []}


def test_options_a_pass_does_not_take_are_refused(tiny_text_bundle, tmp_path, capsys):
    assert main(["quantize", str(tiny_text_bundle), "--precision", "int8", "--calibration", "x.npy",
                 "--out", str(tmp_path / "q")]) == 2
    assert "--calibration does not apply to lstm int8" in capsys.readouterr().err


def test_every_export_records_whether_its_weights_are_random(fragile, tiny_cnn_bundle, gpt2_tiny_bundle, tmp_path):
    assert main(["export", "lstm", "--vocab-size", "300", "--hidden", "16", "--out", str(tmp_path / "r")]) == 0
    declared = image_classifier(tmp_path / "d", module=outlier_cnn(), preprocessing={"size": [16, 16]},
                                random_weights=True)
    for bundle, random in ((fragile, False), (tiny_cnn_bundle, True), (gpt2_tiny_bundle, True),
                           (tmp_path / "r", True), (declared, True)):
        manifest = open_bundle(bundle).manifest
        assert manifest.provenance["random_weights"] is random and weights_are_random(manifest) is random


def test_an_untrained_gpt2_checkpoint_is_recognised_by_its_perplexity(tmp_path):
    """Nothing declares these weights random; their perplexity on held-out text gives them away, so
    int4's top-1 agreement (meaningless on near-tied logits) does not gate it."""
    from reelrt.export.gpt2 import export
    from reelrt.models import gpt2

    checkpoint = gpt2.save_checkpoint(gpt2.random_model("tiny"), gpt2.train_tokenizer(1000), tmp_path / "ckpt")
    fp32 = export(tmp_path / "fp32", checkpoint=checkpoint, max_context=64, threads=1)
    assert open_bundle(fp32).manifest.provenance["random_weights"] is False
    assert main(["quantize", str(fp32), "--precision", "int4", "--block-size", "16", "--out", str(tmp_path / "q")]) == 0
    quality = open_bundle(tmp_path / "q").manifest.validation["quality"]
    assert quality["meaningful"] is False and quality["random_weights"].startswith("recognised")
