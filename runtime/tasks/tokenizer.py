"""The bundle's tokenizer.json, read with the `tokenizers` package (no transformers)."""
from __future__ import annotations

from tokenizers import Tokenizer

from reelrt.runtime.bundle import Bundle
from reelrt.runtime.errors import BundleError


def read_tokenizer(bundle: Bundle) -> Tokenizer:
    """The tokenizer that manifest.tokenizer.path names; BundleError when it is absent or unreadable."""
    path = bundle.manifest.tokenizer.get("path")
    if path is None:
        raise BundleError(f"a {bundle.manifest.task} bundle needs manifest.tokenizer.path (its tokenizer.json)")
    try:
        return Tokenizer.from_file(str(bundle.path(path)))
    except BundleError:
        raise
    except Exception as e:  # tokenizers raises a bare Exception for a malformed file
        raise BundleError(f"{path} is not a tokenizer.json the tokenizers package can read: {e}") from None
