"""Write, on x86 with torch, what the emulated runs read (tests/aarch64/run.sh, tests/x86/run.sh):
`python tests/aarch64/build.py DIR`.

DIR gets every tiny bundle the tests export (conftest.EXPORTED, read through
REELRT_TEST_BUNDLES), the digits CNN trained here (random weights hide wrong integer
arithmetic behind near-constant logits; trained ones do not), quantized copies for the parity
check (int8 and fp16 CNN, int8 digits, int8 LSTM, int8 and int4 GPT-2), the digits int8 with
full-range weights (SATURATING: the representation that is wrong on x86 without VNNI, which the
emulated AVX2 check must catch), the encoded images, and x86.npz: this machine's answers
(parity.answers).
"""
from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/: the makers in conftest.py
from conftest import EXPORTED  # noqa: E402
from parity import answers, write_encoded  # noqa: E402

from reelrt.cli import main as reelrt  # noqa: E402

# name -> (source bundle, `reelrt quantize` options)
QUANTIZED = {
    "cnn-int8": ("tiny-cnn-rgb", ["--precision", "int8"]),
    "cnn-fp16": ("tiny-cnn-rgb", ["--precision", "fp16"]),
    "lstm-int8": ("tiny-text", ["--precision", "int8"]),
    "gpt2-int8": ("gpt2-tiny", ["--precision", "int8", "--block-size", "16", "--accuracy-level", "4"]),
    "gpt2-int4": ("gpt2-tiny", ["--precision", "int4", "--block-size", "16", "--accuracy-level", "4"]),
    "digits-int8": ("digits", ["--precision", "int8"]),
}
SATURATING = "digits-int8-saturating"


def trained_digits(folder: Path) -> None:
    """The digits CNN, trained (seconds) and exported, as `folder/digits`."""
    if reelrt(["train", "digits", "--out", str(folder / "digits.pt")]) != 0 or reelrt(
            ["export", "cnn", "--arch", "digits", "--checkpoint", str(folder / "digits.pt"), "--out", str(folder / "digits")]) != 0:
        raise SystemExit("training or exporting the digits CNN failed")
    (folder / "digits.pt").unlink()


def saturating_int8(folder: Path) -> None:
    """The digits int8 graph with full-range weights, as reelrt made them before 7-bit weights, in a
    bundle whose manifest is the 7-bit one's: what an older reelrt wrote on a workstation with VNNI,
    whatever CPU builds it here (on one without VNNI its own quantize gate would fail)."""
    from reelrt.quantize.cnn import calibration_inputs, quantize_static_qdq
    from reelrt.runtime.bundle import BundleWriter, open_bundle

    source, seven_bit = open_bundle(folder / "digits"), open_bundle(folder / "digits-int8")
    pixels, _ = calibration_inputs(source, None)
    with BundleWriter(folder / SATURATING) as w:
        w.copy_artifacts(seven_bit, lambda rel: rel != seven_bit.manifest.model)
        quantize_static_qdq(source.model_path, w.dir / seven_bit.manifest.model, pixels, "minmax",
                            source.manifest.inputs[0].name, reduce_range=False)
        manifest = seven_bit.manifest
        manifest.provenance["quantized_from"]["settings"].update(weights="int8 per-channel, full range",
                                                                 integer_kernels_exact="CPUs with VNNI")
        w.commit(manifest)


def build(out: Path) -> Path:
    """Write everything to a temporary folder, then put it at `out`: a killed build leaves none."""
    tmp = out.with_name(out.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for name, make in EXPORTED.items():
        make(tmp / name)
    trained_digits(tmp)
    for name, (source, options) in QUANTIZED.items():
        if reelrt(["quantize", str(tmp / source), *options, "--out", str(tmp / name)]) != 0:
            raise SystemExit(f"quantize {name} failed")
    saturating_int8(tmp)
    write_encoded(tmp)
    np.savez(tmp / "x86.npz", **answers(tmp))
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="folder to write (replaced)")
    print(f"wrote {build(parser.parse_args(argv).out)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
