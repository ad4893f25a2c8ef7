"""Bad invocations of the `reelrt` command: every one is one line on stderr and exit code 2,
never a traceback. Bad numbers, missing files, the same directory in and out, the wrong family,
options of another kind of bundle, conflicting options and the hostile corpus's bundles."""
from __future__ import annotations

import re
import shutil
import subprocess
import sys

import pytest

from conftest import make_tiny_bundle
from hostile_corpus import CASES, generate, publisher_key, signed_maker
from reelrt.cli import main

# {cnn}, {text}, {gpt2}: valid bundles; {missing}: a path that does not exist; {tmp}: a scratch directory
INVOCATIONS = [
    # numbers no option accepts
    "run {cnn} --image {png} --threads 0", "run {cnn} --image {png} --threads -2", "run {text} --text hi --threads x",
    "run {text} --text hi --top-k -1", "run {gpt2} --prompt hi --max-new-tokens 0", "run {gpt2} --prompt hi --temperature nan",
    "run {gpt2} --prompt hi --temperature -1", "run {gpt2} --prompt hi --temperature 0.5 --top-p 0",
    "run {gpt2} --prompt hi --temperature 0.5 --top-p 2", "run {gpt2} --prompt hi --temperature 500",
    "run {gpt2} --prompt hi --temperature 0.5 --seed -3", "run {gpt2} --prompt hi --max-new-tokens 100000",
    "bench {cnn} --iterations 0", "bench {cnn} --seconds -1", "bench {cnn} --peers nonsense",
    "quantize {gpt2} --precision int4 --block-size 7 --out {tmp}/q", "quantize {gpt2} --precision int4 --accuracy-level 9 --out {tmp}/q",
    "export lstm --vocab-size 0 --hidden 8 --out {tmp}/l", "export gpt2 --config tiny --max-context 1 --out {tmp}/g",
    "train lstm --csv {csv} --out {tmp}/m.pt --epochs 0",
    # missing or unusable files
    "run {missing} --text hi", "inspect {missing}", "verify {missing}", "compile {missing}",
    "quantize {missing} --precision int8 --out {tmp}/q", "bench {missing}", "run {cnn} --image {missing}",
    "run {cnn} --image {tmp}", "export lstm --checkpoint {missing} --out {tmp}/l", "export cnn --arch digits --checkpoint {missing} --out {tmp}/d",
    "train lstm --csv {missing} --out {tmp}/m.pt", "export gpt2 --checkpoint {missing} --out {tmp}/g", "run {png} --text hi",
    # files that are not checkpoints: torch's unpickler fails on each in its own way
    "export cnn --arch resnet18 --checkpoint {garbage} --out {tmp}/r",
    "export cnn --arch resnet18 --checkpoint {png} --out {tmp}/r",
    "export lstm --checkpoint {garbage} --out {tmp}/l", "export cnn --arch digits --checkpoint {csv} --out {tmp}/d",
    # the same directory in and out
    "quantize {text} --precision int8 --out {text}", "quantize {cnn} --precision fp16 --out {cnn}",
    # the wrong family or precision
    "quantize {cnn} --precision int4 --out {tmp}/q", "quantize {text} --precision int4 --out {tmp}/q",
    "run {cnn} --text hi", "run {text} --image {png}", "run {gpt2} --text hi", "run {gpt2} --image {png}",
    "run {cnn} --prompt hi", "run {text}", "run {gpt2}", "run {cnn}",
    # options of another kind of bundle, conflicting options
    "run {text} --text hi --temperature 0.7", "run {cnn} --image {png} --seed 1", "run {text} --text hi --max-new-tokens 3",
    "run {cnn} --image {png} --top-p 0.5", "run {gpt2} --prompt hi --top-p 0.5 --seed 1", "run {gpt2} --prompt hi --top-k 5",
    "run {gpt2} --prompt hi --seed 2", "export gpt2 --config tiny --checkpoint {tmp} --out {tmp}/g",
    "compile {cnn} --target gpu", "run {cnn} --image {png} --device tpu", "quantize {cnn} --out {tmp}/q",
    "", "nonsense", "export", "export cnn --arch alexnet --out {tmp}/x",
    # serve: refused before any socket is bound
    "serve {missing}", "serve {gpt2} --host 0.0.0.0", "serve {gpt2} --parallel 0", "serve a={gpt2} a={text}",
    "serve {gpt2} --timeout 0", "serve bad/name={gpt2}", "serve {gpt2} --prefill-chunk 0", "serve {gpt2} --spin=yes",
]


@pytest.fixture(scope="module")
def places(tmp_path_factory, tiny_text_bundle, gpt2_tiny_bundle):
    import cv2
    import numpy as np
    root = tmp_path_factory.mktemp("fuzz")
    png = root / "frame.png"
    cv2.imwrite(str(png), np.zeros((8, 8, 3), np.uint8))
    csv = root / "texts.csv"
    csv.write_text("text,label\nhello there,a\ngood night,b\n" * 4)
    garbage = root / "passwd"   # the shape of /etc/passwd, which ended in torch's IndexError
    garbage.write_text("root:x:0:0:root:/root:/bin/bash\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n")
    copies = {name: shutil.copytree(src, root / name) for name, src in (("text", tiny_text_bundle), ("gpt2", gpt2_tiny_bundle))}
    return {"cnn": make_tiny_bundle(root / "cnn"), **copies, "missing": root / "missing", "tmp": root / "scratch",
            "png": png, "csv": csv, "garbage": garbage}


def one_line_exit_2(argv: list[str], capsys) -> str:
    """Run the command in this process (an exception escaping main would be the traceback) and
    return its one line of stderr."""
    try:
        code = main(argv)
    except SystemExit as e:  # argparse's usage errors
        code = e.code
    err = capsys.readouterr().err
    assert code == 2, f"exit {code} for {argv}: {err}"
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    return err


@pytest.mark.parametrize("template", INVOCATIONS)
def test_bad_invocation_is_one_line_and_exit_2(template, places, capsys):
    (places["tmp"]).mkdir(exist_ok=True)
    argv = [word.format(**places) for word in template.split()]
    err = one_line_exit_2(argv, capsys)
    assert err.startswith("reelrt"), err


@pytest.fixture(scope="module")
def hostile(tmp_path_factory, tiny_text_bundle, gpt2_tiny_bundle):
    def copier(source):
        return lambda out: shutil.copytree(source, out)
    root = tmp_path_factory.mktemp("hostile-cli")
    return root, generate(root, {"image": make_tiny_bundle, "text": copier(tiny_text_bundle),
                                 "generator": copier(gpt2_tiny_bundle), "signed": signed_maker(make_tiny_bundle, root)})


@pytest.mark.parametrize("name", sorted(CASES))
def test_hostile_bundles_are_one_line_and_exit_2(name, hostile, places, capsys):
    root, cases = hostile
    path, expected = cases[name]
    option = {"image": ["--image", str(places["png"])], "text": ["--text", "hi"], "generator": ["--prompt", "hi"],
              "signed": ["--image", str(places["png"]), "--key", str(publisher_key(root))]}
    err = one_line_exit_2(["run", str(path), *option[CASES[name][2]]], capsys)
    assert re.search(expected, err, re.IGNORECASE), err


@pytest.mark.parametrize("argv", [["run", "{cnn}", "--image", "{png}", "--threads", "0"],
                                  ["quantize", "{text}", "--precision", "int8", "--out", "{text}"],
                                  ["run", "{gpt2}", "--prompt", "a", "--top-p", "0.5", "--seed", "1"]])
def test_the_real_command_prints_no_traceback(argv, places):
    run = subprocess.run([sys.executable, "-m", "reelrt", *(a.format(**places) for a in argv)],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 2 and len(run.stderr.strip().splitlines()) == 1 and "Traceback" not in run.stderr, run.stderr
