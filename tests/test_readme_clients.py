"""The README's examples for other languages run as written, on tiny bundles in place of the named ones."""
from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SECTION = "## Other languages"


def blocks(language: str) -> list[str]:
    text = ROOT.joinpath("README.md").read_text()
    section = text[text.index(SECTION):]
    section = section[:section.index("\n## ", 1)]
    return re.findall(rf"```{language}\n(.*?)```", section, re.S)


def test_the_onnxruntime_genai_example(gpt2_tiny_bundle):
    pytest.importorskip("onnxruntime_genai")
    (code,) = blocks("python")
    run = subprocess.run([sys.executable, "-c", code.replace("bundles/gpt2-int4", str(gpt2_tiny_bundle))],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith("The innkeeper says")


@pytest.mark.skipif(shutil.which("node") is None or not (ROOT / "clients/js/node_modules").is_dir(),
                    reason="needs Node and `npm ci` in clients/js")
def test_the_javascript_example(gpt2_tiny_bundle, tiny_cnn_bundle):
    (code,) = blocks("javascript")
    code = (code.replace("./clients/js/src/index.js", (ROOT / "clients/js/src/index.js").as_uri())
            .replace("bundles/gpt2-int4", str(gpt2_tiny_bundle)).replace("bundles/mobilenetv2", str(tiny_cnn_bundle)))
    code = "const rgbBytes = new Uint8Array(640 * 480 * 3).map((_, i) => i % 251);\n" + code
    run = subprocess.run(["node", "--input-type=module", "-e", code], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert "cat" in run.stdout or "dog" in run.stdout
