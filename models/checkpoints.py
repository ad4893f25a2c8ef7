"""Reading a user's .pt/.pth file: tensors and plain containers only, and one typed error for anything else.

torch.load's unpickler fails in many ways on a file that is not a checkpoint (IndexError,
KeyError, UnicodeDecodeError, a zip error, ...; /etc/passwd gives an IndexError), and the list
changes between torch releases, so every failure to read becomes one InputError here.
"""
from __future__ import annotations

import os
from typing import Any

from reelrt.runtime.errors import InputError


def read_checkpoint(path: str | os.PathLike, what: str, hint: str) -> Any:
    """torch.load(path, weights_only=True) on the CPU; InputError saying the file is not a readable `what`,
    then `hint` (how to save one), when torch cannot read it that way. A missing file stays FileNotFoundError."""
    import torch

    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as e:  # whatever the unpickler raises on a file that is not a checkpoint
        detail = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise InputError(f"{os.fspath(path)} is not a readable {what} ({type(e).__name__}: {detail[:200]});"
                         f" {hint}") from None
