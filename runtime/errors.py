"""The runtime's typed errors: one base class, one subclass per thing that can be wrong.

A client embeds the runtime in a game loop and needs to tell "this file is bad, ship a
new one" from "the caller passed a bad frame" from "this device lacks the backend".
"""
from __future__ import annotations


class ReelrtError(Exception):
    """Base class of every error the runtime raises on purpose."""


class BundleError(ReelrtError):
    """The bundle is malformed, corrupt, incomplete or hostile: re-export or re-download it."""


class InputError(ReelrtError, ValueError):
    """The caller's input (image, text, ids, parameters) cannot be used as given."""


class BackendUnavailableError(ReelrtError):
    """The requested backend or device is not installed or not present on this machine."""


class ValidationError(ReelrtError):
    """An exported, quantized or compiled graph disagrees with its reference beyond tolerance."""


class DeviceCheckError(ValidationError):
    """The bundle's reference set, run on this device, is out of tolerance: this CPU computes the
    graph wrongly (say, int8 kernels that saturate). Compile the bundle here or ship another precision."""
