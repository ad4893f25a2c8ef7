"""The README's JavaScript example runs as written, on tiny bundles in place of the named ones
(tests/test_readme.py runs its bash and python blocks)."""
from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SECTION = "## Other languages"


def blocks(language: str) -> list[str]:
    text = ROOT.joinpath("README.md").read_text()
    section = text[text.index(SECTION):]
    section = section[:section.index("\n## ", 1)]
    return re.findall(rf"```{language}\n(.*?)```", section, re.S)


@pytest.mark.skipif(shutil.which("node") is None or not (ROOT / "clients/js/node_modules").is_dir(),
                    reason="needs Node and `npm ci` in clients/js")
def test_the_javascript_example(gpt2_tiny_bundle, tiny_cnn_bundle):
    (code,) = blocks("javascript")
    code = (code.replace("./clients/js/src/index.js", (ROOT / "clients/js/src/index.js").as_uri())
            .replace("bundles/gpt2-int4", str(gpt2_tiny_bundle)).replace("bundles/digits-int8", str(tiny_cnn_bundle)))
    code = "const rgbBytes = new Uint8Array(640 * 480 * 3).map((_, i) => i % 251);\n" + code
    run = subprocess.run(["node", "--input-type=module", "-e", code], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert "cat" in run.stdout or "dog" in run.stdout
