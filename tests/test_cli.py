"""The `reelrt` command: help at every level, inspect and verify on real bundles."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from reelrt.cli import build_parser, main

COMMANDS = ["export", "train", "quantize", "compile", "run", "bench", "demo", "inspect", "verify", "keygen", "sign"]


@pytest.mark.parametrize("argv", [[], *([c] for c in COMMANDS), ["export", "cnn"], ["export", "lstm"],
                                  ["export", "gpt2"], ["train", "digits"], ["train", "lstm"], ["train", "gpt2"]])
def test_help_everywhere(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        main([*argv, "--help"])
    assert exc.value.code == 0
    assert "usage: reelrt" in capsys.readouterr().out


def test_every_command_is_listed():
    text = build_parser().format_help()
    for c in COMMANDS:
        assert c in text


def test_inspect_prints_summary(tiny_bundle, capsys):
    assert main(["inspect", str(tiny_bundle)]) == 0
    out = capsys.readouterr().out
    assert "cnn (image-classification), precision fp32" in out
    assert "pixels: float32[batch, 3, 4, 4]" in out
    assert "model.onnx" in out and "ok" in out


def test_inspect_reports_bad_checksums(tiny_bundle, capsys):
    model = tiny_bundle / "model.onnx"
    data = bytearray(model.read_bytes())
    data[-1] ^= 1
    model.write_bytes(bytes(data))
    assert main(["inspect", str(tiny_bundle)]) == 1
    assert "FAILED" in capsys.readouterr().out


def test_verify_ok_and_refusal(tiny_bundle, capsys):
    assert main(["verify", str(tiny_bundle)]) == 0
    assert "ok:" in capsys.readouterr().out
    (tiny_bundle / "manifest.json").write_text(json.dumps({"format_version": 99}))
    assert main(["verify", str(tiny_bundle)]) == 2
    assert "format_version" in capsys.readouterr().err


def test_entry_point_runs_without_torch(tiny_bundle):
    probe = ("import sys; from reelrt.cli import main; rc = main(['inspect', sys.argv[1]]);"
             "assert 'torch' not in sys.modules; sys.exit(rc)")
    subprocess.run([sys.executable, "-c", probe, str(tiny_bundle)], check=True, capture_output=True)
