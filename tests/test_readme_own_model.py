"""README "Your own model": its model file, its Python example and its commands run as written."""
from __future__ import annotations

import re
import shlex
import sys
from pathlib import Path

from reelrt.cli import main

README = Path(__file__).parent.parent / "README.md"


def section_blocks(title: str) -> list[tuple[str, str]]:
    """(language, code) of each fenced block in the README section `title`."""
    text = README.read_text()
    start = text.index(f"## {title}\n")
    end = text.find("\n## ", start + 1)
    return re.findall(r"```(\w+)\n(.*?)```", text[start:end if end > 0 else None], re.S)


def test_your_own_model_examples_run(tmp_path, monkeypatch, capsys):
    blocks = section_blocks("Your own model")
    model_file, example, commands = blocks
    assert model_file[1].startswith("# sentiment.py") and example[0] == "python" and commands[0] == "bash"
    (tmp_path / "sentiment.py").write_text(model_file[1])
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    exec(compile(example[1], "README.md", "exec"), {"__name__": "readme"})
    printed = capsys.readouterr().out
    assert "('positive', " in printed and "('negative', " in printed   # both labels, with probabilities
    for line in commands[1].strip().splitlines():
        argv = shlex.split(line)
        assert argv[0] == "reelrt" and main(argv[1:]) == 0, line
    assert "head        kind=sigmoid, threshold=0.5" in capsys.readouterr().out
    sys.modules.pop("sentiment", None)
