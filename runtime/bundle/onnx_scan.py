"""Find every external-data location an ONNX file names, without the onnx package.

ONNX tensors may keep their bytes in side files named by a relative path; onnx itself
had path-traversal CVEs (CVE-2024-27318, CVE-2024-5187) through these names. The runtime
must check them before ONNX Runtime opens anything, and must not import onnx, so this
walks the protobuf wire format directly: only the messages that can hold tensors are
entered, everything else (raw weight bytes included) is skipped by length.
"""
from __future__ import annotations

import mmap
from pathlib import Path

from reelrt.runtime.errors import BundleError

_VARINT, _I64, _LEN, _I32 = 0, 1, 2, 5
_MAX_NESTING = 64

# message -> {field number: message kind} for the fields that can lead to a TensorProto
_CHILDREN = {
    "model": {7: "graph", 25: "function"},
    "graph": {1: "node", 5: "tensor", 15: "sparse"},
    "function": {7: "node", 11: "attribute"},
    "node": {5: "attribute"},
    "attribute": {5: "tensor", 6: "graph", 10: "tensor", 11: "graph", 22: "sparse", 23: "sparse"},
    "sparse": {1: "tensor", 2: "tensor"},
}
_TENSOR_EXTERNAL_DATA, _TENSOR_DATA_LOCATION, _EXTERNAL = 13, 14, 1


def external_data_locations(path: Path) -> set[str]:
    """Every `location` named by a tensor's external_data in the ONNX file at `path`."""
    with open(path, "rb") as f:
        if f.seek(0, 2) == 0:
            raise BundleError(f"{path.name} is empty: not an ONNX model")
        # Not closed explicitly: slices of it live in generator frames; it unmaps when collected.
        mapped = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    found: set[str] = set()
    _walk(memoryview(mapped), "model", found, 0, path.name)
    return found


def _walk(buf: memoryview, kind: str, found: set[str], depth: int, name: str) -> None:
    if depth > _MAX_NESTING:
        raise BundleError(f"{name}: ONNX graph nests deeper than {_MAX_NESTING} levels")
    children = _CHILDREN.get(kind, {})
    external = False
    location = None
    for number, wire, value in _fields(buf, name):
        if kind == "tensor":
            if number == _TENSOR_DATA_LOCATION and wire == _VARINT:
                external = value == _EXTERNAL
            elif number == _TENSOR_EXTERNAL_DATA and wire == _LEN:
                key, text = _entry(value, name)
                if key == "location":
                    location = text
        elif number in children and wire == _LEN:
            _walk(value, children[number], found, depth + 1, name)
    if kind == "tensor" and (external or location is not None):
        if location is None:
            raise BundleError(f"{name}: a tensor stores external data but names no location")
        found.add(location)


def _entry(buf: memoryview, name: str) -> tuple[str, str]:
    key = text = ""
    for number, wire, value in _fields(buf, name):
        if wire == _LEN and number in (1, 2):
            try:
                decoded = bytes(value).decode("utf-8")
            except UnicodeDecodeError:
                raise BundleError(f"{name}: external-data entry is not UTF-8") from None
            if number == 1:
                key = decoded
            else:
                text = decoded
    return key, text


def _fields(buf: memoryview, name: str):
    """Yield (field number, wire type, value); LEN values are memoryview slices."""
    pos, end = 0, len(buf)
    while pos < end:
        tag, pos = _varint(buf, pos, name)
        number, wire = tag >> 3, tag & 7
        if wire == _VARINT:
            value, pos = _varint(buf, pos, name)
        elif wire == _I64:
            value, pos = None, pos + 8
        elif wire == _I32:
            value, pos = None, pos + 4
        elif wire == _LEN:
            length, pos = _varint(buf, pos, name)
            if pos + length > end:
                raise BundleError(f"{name}: truncated or corrupt ONNX protobuf")
            value, pos = buf[pos:pos + length], pos + length
        else:
            raise BundleError(f"{name}: corrupt ONNX protobuf (wire type {wire})")
        if pos > end:
            raise BundleError(f"{name}: truncated or corrupt ONNX protobuf")
        yield number, wire, value


def _varint(buf: memoryview, pos: int, name: str) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(buf) or shift > 63:
            raise BundleError(f"{name}: truncated or corrupt ONNX protobuf")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7
