"""The parity check, run on aarch64 by tests/aarch64/run.sh: every family's answers here equal
the answers x86 recorded beside the bundles (REELRT_TEST_BUNDLES), within the precision's
tolerance, token ids exactly; and raw frames classified without OpenCV (the lean install) equal
x86's OpenCV answers. Named check_* so that the x86 suite does not collect it."""
from __future__ import annotations

import os
import platform
import subprocess
import sys
from pathlib import Path

import numpy as np

from parity import IMAGE_BUNDLES, answers, compare, precisions

FOLDER = Path(os.environ["REELRT_TEST_BUNDLES"])  # set by tests/aarch64/run.sh

# In a fresh interpreter where `import cv2` fails, as in `pip install reelrt` without the images extra
_WITHOUT_OPENCV = """
import sys
sys.modules["cv2"] = None
sys.path.insert(0, sys.argv[1])
import numpy as np
from pathlib import Path
from parity import IMAGE_BUNDLES, answers
np.savez(sys.argv[3], **answers(Path(sys.argv[2]), IMAGE_BUNDLES, decode=False))
"""


def x86_answers() -> dict[str, np.ndarray]:
    with np.load(FOLDER / "x86.npz", allow_pickle=False) as recorded:
        return {key: recorded[key] for key in recorded.files}


def check(rows, capsys, title: str) -> None:
    with capsys.disabled():  # the table shows in the run's output, passed or failed
        print(f"\n{title:<32} {'prec':<5} {'difference':<10} (ids: mismatches; numbers: of the range)")
        for row in rows:
            print(row.line())
    assert all(row.ok for row in rows), "\n".join(row.line() for row in rows if not row.ok)


def test_every_family_answers_as_on_x86(capsys):
    assert platform.machine() == "aarch64", f"this check is for aarch64, not {platform.machine()}"
    check(compare(x86_answers(), answers(FOLDER), precisions(FOLDER)), capsys, f"{platform.machine()} vs x86")


def test_raw_frames_answer_as_on_x86_without_opencv(capsys, tmp_path):
    """The lean install's numpy resize and colour conversion on this CPU against x86's OpenCV path."""
    out = tmp_path / "answers.npz"
    subprocess.run([sys.executable, "-c", _WITHOUT_OPENCV, str(Path(__file__).parent), str(FOLDER), str(out)],
                   check=True)
    with np.load(out, allow_pickle=False) as z:
        got = {key: z[key] for key in z.files}
    x86 = {key: value for key, value in x86_answers().items()
           if key.split("/")[0] in IMAGE_BUNDLES and key.split("/")[1] not in ("png", "jpeg")}
    check(compare(x86, got, precisions(FOLDER)), capsys, f"{platform.machine()} no OpenCV vs x86")
