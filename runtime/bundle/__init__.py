"""The bundle format: the manifest, the artifact layout, reading with verification and trust
records, atomic writing, the ONNX external-data scan and the user's cache.

Everything a stage needs to read or write a bundle lives here, below every stage."""
from __future__ import annotations

from reelrt.runtime.bundle.reader import Bundle, Verify, open_bundle, sha256_file, verify_bundle
from reelrt.runtime.bundle.writer import BundleWriter

__all__ = ["Bundle", "BundleWriter", "Verify", "open_bundle", "sha256_file", "verify_bundle"]
