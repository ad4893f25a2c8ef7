"""Fuzz targets: functions of raw bytes that must either succeed or raise the runtime's
typed error, never anything else.

The tests drive them with hypothesis; for a longer coverage-guided run install atheris
and run `python tests/fuzz_targets.py manifest|onnx`.
"""
from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from reelrt.runtime.errors import BundleError
from reelrt.runtime.manifest import parse_manifest
from reelrt.runtime.onnx_scan import external_data_locations


def fuzz_manifest(data: bytes) -> None:
    try:
        manifest = parse_manifest(data)
    except BundleError:
        return
    # whatever parses must serialise and parse back to the same thing
    assert parse_manifest(manifest.dumps().encode()).to_json() == manifest.to_json()


def fuzz_onnx_scan(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as d:
        path = Path(d, "model.onnx")
        path.write_bytes(data)
        try:
            locations = external_data_locations(path)
        except BundleError:
            return
        assert all(isinstance(x, str) for x in locations)


TARGETS = {"manifest": fuzz_manifest, "onnx": fuzz_onnx_scan}

if __name__ == "__main__":
    import atheris  # optional: pip install atheris
    target = TARGETS[sys.argv.pop(1)]
    atheris.Setup(sys.argv, target)
    atheris.Fuzz()
