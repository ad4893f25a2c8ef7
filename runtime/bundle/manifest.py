"""Bundle format v1: the manifest schema and its validation.

The manifest is the only file the runtime trusts to describe a bundle, so it is parsed
defensively: bounded size and nesting, every field type-checked, every path confined to
the bundle. Validation is hand-written (no jsonschema) to keep the runtime's
dependencies to numpy and onnxruntime (and the optional tokenizers and OpenCV).
"""
from __future__ import annotations

import json
import os
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reelrt.runtime.errors import BundleError

FORMAT_VERSION = 1
MANIFEST_NAME = "manifest.json"
SIGNATURE_NAME = "manifest.sig"   # beside the manifest, never an artifact: it signs the manifest
MAX_MANIFEST_BYTES = 4 * 1024 * 1024
MAX_JSON_DEPTH = 32
MAX_DIM = 1 << 31            # no real tensor axis is longer than this
MAX_ELEMENTS = 1 << 34       # a fixed-shape input beyond this is absurd
MAX_ARTIFACT_BYTES = 64 * 1024**3

FAMILIES = {"cnn": {"image-classification"},
            "lstm": {"text-classification"},
            "gpt2": {"text-generation"}}
PRECISIONS = {"fp32", "fp16", "int8", "int4", "mixed"}
DTYPES = {"float32", "float16", "int64", "int32", "uint8", "int8", "bool"}
_SYMBOL = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")


@dataclass(frozen=True)
class TensorSpec:
    """One graph input or output: a name, a dtype and a shape whose entries are ints or symbols."""
    name: str
    dtype: str
    shape: tuple[int | str, ...]

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "dtype": self.dtype, "shape": list(self.shape)}


@dataclass(frozen=True)
class Artifact:
    """A file of the bundle, with the size and digest it must have."""
    path: str
    size: int
    sha256: str

    def to_json(self) -> dict[str, Any]:
        return {"path": self.path, "size": self.size, "sha256": self.sha256}


@dataclass
class Manifest:
    """The parsed, validated manifest.json of a bundle.

    `model` names the ONNX artifact the runtime loads by default; `target` records what
    `reelrt compile` chose for the device (backend, the artifact as `path`, measured
    latency), or is empty when the bundle has not been compiled. `validation` holds what
    the writing stage measured against PyTorch; `extra` holds family-specific facts. `head` says
    how a classifier's logits become answers (runtime/tasks/ranking.py; empty means softmax).
    """
    family: str
    task: str
    precision: str
    model: str
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    artifacts: dict[str, Artifact]
    target: dict[str, Any] = field(default_factory=dict)
    preprocessing: dict[str, Any] = field(default_factory=dict)
    labels: list[str] = field(default_factory=list)
    head: dict[str, Any] = field(default_factory=dict)
    tokenizer: dict[str, Any] = field(default_factory=dict)
    generation: dict[str, Any] = field(default_factory=dict)
    provenance: dict[str, Any] = field(default_factory=dict)
    validation: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    format_version: int = FORMAT_VERSION

    def to_json(self) -> dict[str, Any]:
        return {
            "format_version": self.format_version,
            "family": self.family,
            "task": self.task,
            "precision": self.precision,
            "model": self.model,
            "target": self.target,
            "inputs": [t.to_json() for t in self.inputs],
            "outputs": [t.to_json() for t in self.outputs],
            "preprocessing": self.preprocessing,
            "labels": self.labels,
            "head": self.head,
            "tokenizer": self.tokenizer,
            "generation": self.generation,
            "provenance": self.provenance,
            "validation": self.validation,
            "extra": self.extra,
            "artifacts": [a.to_json() for a in sorted(self.artifacts.values(), key=lambda a: a.path)],
        }

    def dumps(self) -> str:
        return json.dumps(self.to_json(), indent=2, sort_keys=False) + "\n"


def parse_manifest(raw: bytes) -> Manifest:
    """Parse and validate manifest bytes; raise BundleError naming the first problem."""
    if len(raw) > MAX_MANIFEST_BYTES:
        raise BundleError(f"manifest.json is {len(raw)} bytes, over the {MAX_MANIFEST_BYTES}-byte limit")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise BundleError(f"manifest.json is not UTF-8: {e}") from None
    _check_depth(text)
    try:
        doc = json.loads(text, parse_constant=_reject_constant)
    except (json.JSONDecodeError, RecursionError) as e:
        raise BundleError(f"manifest.json is not valid JSON: {e}") from None
    return manifest_from_json(doc)


def manifest_from_json(doc: Any) -> Manifest:
    if not isinstance(doc, dict):
        raise BundleError("manifest.json must hold a JSON object")
    if "format_version" not in doc:
        raise BundleError("manifest.json has no format_version: not a reelrt bundle")
    version = doc["format_version"]
    if type(version) is not int or version != FORMAT_VERSION:
        raise BundleError(f"unknown bundle format_version {version!r}; this runtime reads version {FORMAT_VERSION}:"
                          " upgrade reelrt or re-export the bundle")
    family = _get(doc, "family", str)
    task = _get(doc, "task", str)
    if family not in FAMILIES:
        raise BundleError(f"unknown model family {family!r}; known: {sorted(FAMILIES)}")
    if task not in FAMILIES[family]:
        raise BundleError(f"family {family!r} cannot serve task {task!r}; it serves {sorted(FAMILIES[family])}")
    precision = _get(doc, "precision", str)
    if precision not in PRECISIONS:
        raise BundleError(f"unknown precision {precision!r}; known: {sorted(PRECISIONS)}")
    artifacts: dict[str, Artifact] = {}
    for i, a in enumerate(_get(doc, "artifacts", list)):
        art = _artifact(a, f"artifacts[{i}]")
        if art.path in artifacts:
            raise BundleError(f"artifact {art.path!r} is listed twice")
        if art.path in (MANIFEST_NAME, SIGNATURE_NAME):
            raise BundleError(f"{art.path!r} cannot be an artifact: the manifest cannot list itself or its signature")
        artifacts[art.path] = art
    model = check_relative_path(_get(doc, "model", str), "model")
    if model not in artifacts:
        raise BundleError(f"model {model!r} is not among the bundle's artifacts")
    manifest = Manifest(
        family=family, task=task, precision=precision, model=model,
        inputs=[_tensor(t, f"inputs[{i}]") for i, t in enumerate(_get(doc, "inputs", list))],
        outputs=[_tensor(t, f"outputs[{i}]") for i, t in enumerate(_get(doc, "outputs", list))],
        artifacts=artifacts,
        target=_get(doc, "target", dict, {}),
        preprocessing=_get(doc, "preprocessing", dict, {}),
        labels=_get(doc, "labels", list, []),
        head=_get(doc, "head", dict, {}),
        tokenizer=_get(doc, "tokenizer", dict, {}),
        generation=_get(doc, "generation", dict, {}),
        provenance=_get(doc, "provenance", dict, {}),
        validation=_get(doc, "validation", dict, {}),
        extra=_get(doc, "extra", dict, {}),
    )
    if not manifest.inputs or not manifest.outputs:
        raise BundleError("manifest.json must declare at least one input and one output")
    if not all(isinstance(label, str) for label in manifest.labels):
        raise BundleError("labels must be a list of strings")
    for where, section in (("tokenizer", manifest.tokenizer), ("target", manifest.target)):
        if "path" in section:
            path = check_relative_path(section["path"], f"{where}.path")
            if path not in artifacts:
                raise BundleError(f"{where}.path {path!r} is not among the bundle's artifacts")
    return manifest


def check_relative_path(path: Any, where: str) -> str:
    """A bundle path must be a plain relative POSIX path that stays inside the bundle."""
    if not isinstance(path, str) or not path or len(path) > 255:
        raise BundleError(f"{where}: path must be a non-empty string of at most 255 characters")
    if "\\" in path or "\x00" in path or path.startswith("/") or re.match(r"^[A-Za-z]:", path):
        raise BundleError(f"{where}: path {path!r} is absolute or not a plain POSIX path")
    parts = path.split("/")
    if any(p in ("", ".", "..") for p in parts):
        raise BundleError(f"{where}: path {path!r} escapes or is not normalised (no '..', '.', or empty parts)")
    return path


def _reject_constant(name: str) -> Any:
    raise BundleError(f"manifest.json holds {name}, which is not JSON")


def _check_depth(text: str) -> None:
    """Refuse deep nesting before json.loads recurses into it."""
    depth = 0
    in_string = escaped = False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            if depth > MAX_JSON_DEPTH:
                raise BundleError(f"manifest.json nests deeper than {MAX_JSON_DEPTH} levels")
        elif ch in "]}":
            depth -= 1


def _get(doc: dict, key: str, kind: type, default: Any = ...) -> Any:
    if key not in doc:
        if default is ...:
            raise BundleError(f"manifest.json lacks the field {key!r}")
        return default
    value = doc[key]
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise BundleError(f"manifest field {key!r} must be {kind.__name__}, got {type(value).__name__}")
    return value


def _artifact(a: Any, where: str) -> Artifact:
    if not isinstance(a, dict):
        raise BundleError(f"{where} must be an object")
    path = check_relative_path(a.get("path"), f"{where}.path")
    size, digest = a.get("size"), a.get("sha256")
    if type(size) is not int or not 0 <= size <= MAX_ARTIFACT_BYTES:
        raise BundleError(f"{where} ({path}): size must be an integer between 0 and {MAX_ARTIFACT_BYTES}")
    if not isinstance(digest, str) or not re.fullmatch(r"[0-9a-f]{64}", digest):
        raise BundleError(f"{where} ({path}): sha256 must be 64 lowercase hex digits")
    return Artifact(path, size, digest)


def _tensor(t: Any, where: str) -> TensorSpec:
    if not isinstance(t, dict):
        raise BundleError(f"{where} must be an object")
    name, dtype, shape = t.get("name"), t.get("dtype"), t.get("shape")
    if not isinstance(name, str) or not name or len(name) > 256:
        raise BundleError(f"{where}: name must be a non-empty string")
    if dtype not in DTYPES:
        raise BundleError(f"{where} ({name}): unknown dtype {dtype!r}; known: {sorted(DTYPES)}")
    if not isinstance(shape, list) or len(shape) > 8:
        raise BundleError(f"{where} ({name}): shape must be a list of at most 8 dimensions")
    fixed = 1
    for d in shape:
        if isinstance(d, str):
            if not _SYMBOL.match(d):
                raise BundleError(f"{where} ({name}): symbolic dimension {d!r} is not an identifier")
        elif type(d) is int:
            if not 0 < d <= MAX_DIM:
                raise BundleError(f"{where} ({name}): dimension {d} is outside 1..{MAX_DIM}")
            fixed *= d
        else:
            raise BundleError(f"{where} ({name}): dimension {d!r} is neither an int nor a symbol")
    if fixed > MAX_ELEMENTS:
        raise BundleError(f"{where} ({name}): fixed dimensions hold {fixed} elements (> {MAX_ELEMENTS}), an absurd shape")
    return TensorSpec(name, dtype, tuple(shape))


def read_bundle_file(path: Path, limit: int, missing: str) -> bytes:
    """The bytes of a small file of the bundle (the manifest, its signature); BundleError with
    `missing` when it is absent, and when it is a symlink or not a regular file, or over `limit`."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        raise BundleError(missing) from None
    if not stat.S_ISREG(st.st_mode):
        raise BundleError(f"{path.name} in {path.parent} is not a regular file (symlinks are refused)")
    if st.st_size > limit:
        raise BundleError(f"{path.name} is {st.st_size} bytes, over the {limit}-byte limit")
    with open(path, "rb") as f:
        return f.read(limit + 1)
