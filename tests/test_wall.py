"""The wall: the runtime a client ships never pulls in training-side packages."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

FORBIDDEN = ("torch", "onnx", "transformers", "optimum", "onnxscript")

PROBE = """
import json, sys
import numpy as np
from reelrt.runtime import open_bundle, Model, load
model = Model(open_bundle(sys.argv[1]), device="cpu")
out = model.run({"pixels": np.ones((1, 3, 4, 4), np.float32)})
assert out["logits"].shape == (1, 3)
clf = load(sys.argv[2], device="cpu")
top = clf.classify(np.zeros((1080, 1920, 3), np.uint8), top_k=2)
assert len(top) == 2 and all(label in clf.labels for label, _ in top)
print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in %r)))
""" % (FORBIDDEN,)


def test_runtime_imports_no_training_packages(tiny_bundle, tiny_cnn_bundle):
    """A fresh interpreter loads a bundle and a real exported CNN, classifies a frame, imports no torch."""
    result = subprocess.run([sys.executable, "-c", PROBE, str(tiny_bundle), str(tiny_cnn_bundle)],
                            capture_output=True, text=True, check=True)
    assert json.loads(result.stdout.strip().splitlines()[-1]) == []


def test_runtime_sources_import_no_training_packages():
    """A static check too, so a lazy import inside a function cannot slip through untested paths."""
    import re
    runtime = Path(__file__).resolve().parent.parent / "runtime"
    pattern = re.compile(r"^\s*(import|from)\s+(%s)(\s|\.|$)" % "|".join(FORBIDDEN), re.M)
    offenders = [str(p) for p in runtime.rglob("*.py") if pattern.search(p.read_text())]
    assert offenders == []


def test_serve_imports_no_torch():
    """serve/ runs on the runtime and its own extra: neither its sources nor the app import torch."""
    import re
    serve = Path(__file__).resolve().parent.parent / "serve"
    pattern = re.compile(r"^\s*(import|from)\s+(torch|transformers|optimum)(\s|\.|$)", re.M)
    assert [str(p) for p in serve.rglob("*.py") if pattern.search(p.read_text())] == []
    probe = ("import sys, json; import reelrt.serve.app, reelrt.serve.completions, reelrt.serve.inference;"
             " print(json.dumps([m for m in sys.modules if m.split('.')[0] in ('torch', 'transformers')]))")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert json.loads(result.stdout.strip().splitlines()[-1]) == []
