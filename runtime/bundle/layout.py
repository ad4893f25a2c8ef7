"""The artifacts of a bundle by name: every stage and client reads and writes these paths.

    manifest.json            what the bundle is (bundle/manifest.py)
    model.onnx (+ .data)     the graph, external weights beside it when large
    tokenizer.json           text families
    reference/inputs.npz     real inputs the bundle carries (never pickle)
    reference/outputs.npz    the source model's answers to them (PyTorch at export)
    engines/index.json       TensorRT plans keyed by GPU, TensorRT version and precision
"""
from __future__ import annotations

MANIFEST = "manifest.json"
MODEL = "model.onnx"
TOKENIZER = "tokenizer.json"
REFERENCE_INPUTS = "reference/inputs.npz"
REFERENCE_OUTPUTS = "reference/outputs.npz"
ENGINES_INDEX = "engines/index.json"
