"""The bundle's tokenizer.json, read with the `tokenizers` package (no transformers).

`tokenizers` is the `text` extra (`pip install 'reelrt[text]'`): it brings huggingface_hub and
an HTTP client stack with it, which a client that only classifies frames does not ship.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from reelrt.runtime.bundle import Bundle
from reelrt.runtime.errors import BackendUnavailableError, BundleError

if TYPE_CHECKING:
    from tokenizers import Tokenizer


def read_tokenizer(bundle: Bundle) -> Tokenizer:
    """The tokenizer that manifest.tokenizer.path names; BundleError when it is absent or unreadable."""
    path = bundle.manifest.tokenizer.get("path")
    if path is None:
        raise BundleError(f"a {bundle.manifest.task} bundle needs manifest.tokenizer.path (its tokenizer.json)")
    try:
        from tokenizers import Tokenizer
    except ImportError:
        raise BackendUnavailableError(f"a {bundle.manifest.task} bundle needs the tokenizers package:"
                                      " pip install 'reelrt[text]'") from None
    try:
        return Tokenizer.from_file(str(bundle.path(path)))
    except BundleError:
        raise
    except Exception as e:  # tokenizers raises a bare Exception for a malformed file
        raise BundleError(f"{path} is not a tokenizer.json the tokenizers package can read: {e}") from None
