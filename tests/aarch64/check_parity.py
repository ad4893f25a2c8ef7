"""The parity check, run on aarch64 by tests/aarch64/run.sh: every family's answers here equal
the answers x86 recorded beside the bundles (REELRT_TEST_BUNDLES), within the precision's
tolerance, token ids exactly. Named check_* so that the x86 suite does not collect it."""
from __future__ import annotations

import os
import platform
from pathlib import Path

import numpy as np

from parity import answers, compare, precisions


def test_every_family_answers_as_on_x86(capsys):
    assert platform.machine() == "aarch64", f"this check is for aarch64, not {platform.machine()}"
    folder = Path(os.environ["REELRT_TEST_BUNDLES"])
    with np.load(folder / "x86.npz", allow_pickle=False) as recorded:
        x86 = {key: recorded[key] for key in recorded.files}
    rows = compare(x86, answers(folder), precisions(folder))
    with capsys.disabled():  # the table shows in the run's output, passed or failed
        print(f"\n{f'{platform.machine()} vs x86':<32} {'prec':<5} {'difference':<10} (ids: mismatches; numbers: of the range)")
        for row in rows:
            print(row.line())
    assert all(row.ok for row in rows), "\n".join(row.line() for row in rows if not row.ok)
