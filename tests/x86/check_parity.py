"""The parity check on an AVX2-only x86 (no VNNI, no AVX-512: consoles' Zen 2), emulated by
tests/x86/run.sh: every family at every precision answers here as on the machine that built the
bundles, within the precision's tolerance and token ids exactly; and a graph whose integer kernels
saturate on such a CPU is caught, by this check and by load()'s own device check. Named check_* so
that the suite on the build machine does not collect it."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "aarch64"))
from parity import answers, compare, precisions  # noqa: E402

from reelrt.runtime import DeviceCheckError, load, open_bundle  # noqa: E402
from reelrt.runtime.reference import reference_feeds, source_outputs  # noqa: E402
from reelrt.runtime.system import cpu_features  # noqa: E402
from reelrt.runtime.validation import compare as compare_outputs, tolerance_for  # noqa: E402

FOLDER = Path(os.environ["REELRT_TEST_BUNDLES"])  # set by tests/x86/run.sh
SATURATING = "digits-int8-saturating"             # tests/aarch64/build.py


def test_this_is_an_avx2_cpu_without_vnni():
    features = set(cpu_features())
    assert "AVX2" in features and not features & {"AVX512F", "AVX512VNNI", "AVXVNNI"}, sorted(features)


def test_every_family_answers_as_on_the_build_machine(capsys):
    with np.load(FOLDER / "x86.npz", allow_pickle=False) as recorded:
        built = {key: recorded[key] for key in recorded.files}
    rows = compare(built, answers(FOLDER), precisions(FOLDER))
    with capsys.disabled():
        print(f"\n{'AVX2 vs the build machine':<32} {'prec':<5} {'difference':<10} (ids: mismatches; numbers: of the range)")
        for row in rows:
            print(row.line())
    assert all(row.ok for row in rows), "\n".join(row.line() for row in rows if not row.ok)


def source_gap(name: str) -> float:
    """The relative difference between this CPU's answers and the source model's, for a bundle's reference set."""
    model = load(FOLDER / name, device="cpu", threads=1, device_check=False)
    outputs = dict(zip(model.backend.output_names, model.backend.run(reference_feeds(model.bundle))))
    (name_, want), = source_outputs(model.bundle).items()
    return compare_outputs(want, outputs[name_]).relative_diff


def test_full_range_int8_weights_saturate_here_and_7_bit_ones_do_not(capsys):
    limit = tolerance_for("int8").max_relative_diff
    saturating, seven_bit = source_gap(SATURATING), source_gap("digits-int8")
    with capsys.disabled():
        print(f"\ndigits int8 vs the fp32 source here: full-range weights {saturating:.3f} of the range,"
              f" 7-bit weights {seven_bit:.3f} (int8 tolerance {limit})")
    assert saturating > limit >= seven_bit


def test_load_refuses_the_saturating_bundle_and_serves_the_right_one(tmp_path, monkeypatch):
    monkeypatch.setenv("REELRT_CACHE_DIR", str(tmp_path))
    with pytest.raises(DeviceCheckError, match="reelrt compile"):
        load(FOLDER / SATURATING, device="cpu", threads=1)
    load(FOLDER / "digits-int8", device="cpu", threads=1)
    assert open_bundle(FOLDER / "digits-int8").manifest.provenance["quantized_from"]["settings"][
        "integer_kernels_exact"] == "every CPU"
