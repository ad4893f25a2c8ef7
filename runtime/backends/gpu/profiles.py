"""TensorRT optimisation profiles derived from a bundle's manifest.

A TensorRT engine accepts dynamic shapes only inside the (min, opt, max) ranges it was
built for, and tunes its kernels for `opt`. The manifest names every dynamic axis with a
symbol ("batch", "sequence", "past_sequence", ...); this module gives each symbol a range
and builds one profile per operating point the family cares about:

| family | profiles (opt point) |
| --- | --- |
| cnn, lstm | "batch1" (opt batch 1) and "batchN" (opt batch = max_batch) |
| gpt2 with a past axis | "decode" (sequence 1, past max_context/2) and "prefill" (sequence min(32, max), past 0) |

Symbol roles are recognised by name (case-insensitive); their ranges come from hints in
`manifest.extra`, else from the defaults below:

| role | symbol names | min | max |
| --- | --- | --- | --- |
| batch | batch, batch_size, n | 1 | extra.max_batch, default 32 (gpt2: 1) |
| sequence | sequence, sequence_length, seq, seq_len, tokens | 1 | extra.max_length / max_context, default 256 (gpt2: 1024) |
| past | past, past_length, past_sequence, past_sequence_length | 0 | max_context - 1 |
| total | total, total_length, total_sequence, total_sequence_length | 1 | max_context |

`manifest.extra["dim_ranges"] = {"symbol": [min, opt, max]}` overrides any symbol, and is
required for a symbol of no known role (an image's height, say). The derivation is part
of the engine key, so a bundle whose hints change gets a new plan, never a stale one.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from reelrt.runtime.errors import BundleError
from reelrt.runtime.bundle.manifest import Manifest

DEFAULT_MAX_BATCH = 32
DEFAULT_MAX_SEQUENCE = 256
DEFAULT_MAX_CONTEXT = 1024
PREFILL_OPT_TOKENS = 32   # the prompt length the benchmarks use

_ROLES = {
    "batch": {"batch", "batch_size", "n"},
    "sequence": {"sequence", "sequence_length", "seq", "seq_len", "tokens"},
    "past": {"past", "past_length", "past_sequence", "past_sequence_length", "past_len"},
    "total": {"total", "total_length", "total_sequence", "total_sequence_length"},
}

Range = tuple[int, int, int]   # (min, opt, max)
Shape = tuple[int, ...]


@dataclass(frozen=True)
class Profile:
    """One optimisation profile: for every input, its min, opt and max shapes."""
    name: str
    shapes: dict[str, tuple[Shape, Shape, Shape]]

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name,
                "inputs": {k: {"min": list(a), "opt": list(b), "max": list(c)} for k, (a, b, c) in sorted(self.shapes.items())}}


def role_of(symbol: str) -> str | None:
    lowered = symbol.lower()
    return next((role for role, names in _ROLES.items() if lowered in names), None)


def derive_profiles(manifest: Manifest) -> list[Profile]:
    """The profiles a plan for this bundle is built with, most specific first."""
    symbols = {d for spec in manifest.inputs for d in spec.shape if isinstance(d, str)}
    roles = {s: role_of(s) for s in symbols}
    limits = _limits(manifest)
    points = _operating_points(manifest.family, set(roles.values()), limits)
    overrides = _overrides(manifest.extra.get("dim_ranges", {}))
    profiles = []
    for name, opt, pinned in points:
        ranges: dict[str, Range] = {}
        for symbol, role in sorted(roles.items()):
            if symbol in overrides:
                ranges[symbol] = overrides[symbol]
            elif role is None:
                raise BundleError(f"symbolic dimension {symbol!r} has no known role, so no TensorRT profile range;"
                                  f" add manifest.extra['dim_ranges'] = {{{symbol!r}: [min, opt, max]}}")
            else:
                ranges[symbol] = pinned.get(role) or _range(role, opt.get(role), limits)
        profiles.append(Profile(name, {spec.name: _shapes(spec.shape, ranges) for spec in manifest.inputs}))
    return profiles


def choose_profile(profiles: Sequence[Mapping[str, tuple[Sequence[int], Sequence[int], Sequence[int]]]],
                   shapes: Mapping[str, Sequence[int]]) -> int:
    """Index of the profile that holds these input shapes and whose opt shapes are nearest.

    `profiles` maps input names to (min, opt, max) per profile, as TensorRT reports them.
    Raises ValueError naming the ranges when no profile holds the shapes.
    """
    best, best_distance = -1, None
    for index, profile in enumerate(profiles):
        distance = 0
        for name, shape in shapes.items():
            low, opt, high = profile[name]
            if len(shape) != len(low) or any(not lo <= s <= hi for s, lo, hi in zip(shape, low, high)):
                break
            distance += sum(abs(s - o) for s, o in zip(shape, opt))
        else:
            if best_distance is None or distance < best_distance:
                best, best_distance = index, distance
    if best < 0:
        wanted = {name: list(shape) for name, shape in shapes.items()}
        held = [{name: [list(r) for r in ranges] for name, ranges in p.items()} for p in profiles]
        raise ValueError(f"input shapes {wanted} lie outside every optimisation profile (min, opt, max): {held}")
    return best


def _limits(manifest: Manifest) -> dict[str, int]:
    extra = manifest.extra
    gpt2 = manifest.family == "gpt2"
    context = _positive(extra, "max_context", DEFAULT_MAX_CONTEXT)
    sequence = context if gpt2 else _positive(extra, "max_length", DEFAULT_MAX_SEQUENCE)
    return {"batch": _positive(extra, "max_batch", 1 if gpt2 else DEFAULT_MAX_BATCH),
            "sequence": sequence, "context": context}


def _operating_points(family: str, roles: set[str | None],
                      limits: dict[str, int]) -> list[tuple[str, dict[str, int], dict[str, Range]]]:
    """(profile name, opt value per role, roles pinned to a fixed range) for each profile to build."""
    if family == "gpt2" and "past" in roles:
        context = limits["context"]
        decode = {"batch": 1, "past": context // 2, "total": context // 2 + 1}   # sequence pinned to 1
        prompt = min(PREFILL_OPT_TOKENS, limits["sequence"])
        prefill = {"batch": 1, "sequence": prompt, "past": 0, "total": prompt}
        return [("decode", decode, {"sequence": (1, 1, 1)}), ("prefill", prefill, {})]
    sequence = min(128, limits["sequence"])
    points = [("batch1", {"batch": 1, "sequence": sequence}, {})]
    if "batch" in roles and limits["batch"] > 1:
        points.append((f"batch{limits['batch']}", {"batch": limits["batch"], "sequence": sequence}, {}))
    return points


def _range(role: str, opt: int | None, limits: dict[str, int]) -> Range:
    context = limits["context"]
    low, high = {"batch": (1, limits["batch"]), "sequence": (1, limits["sequence"]),
                 "past": (0, context - 1), "total": (1, context)}[role]
    return (low, low if opt is None else min(max(opt, low), high), high)


def _shapes(shape: Sequence[int | str], ranges: dict[str, Range]) -> tuple[Shape, Shape, Shape]:
    picked = [[d if isinstance(d, int) else ranges[d][i] for d in shape] for i in range(3)]
    return tuple(picked[0]), tuple(picked[1]), tuple(picked[2])


def _positive(extra: dict, key: str, default: int) -> int:
    value = extra.get(key, default)
    if type(value) is not int or value < 1:
        raise BundleError(f"manifest.extra[{key!r}] must be a positive integer, got {value!r}")
    return value


def _overrides(raw: Any) -> dict[str, Range]:
    if not isinstance(raw, dict):
        raise BundleError("manifest.extra['dim_ranges'] must map symbols to [min, opt, max]")
    ranges = {}
    for symbol, value in raw.items():
        if (not isinstance(value, list) or len(value) != 3 or any(type(v) is not int for v in value)
                or not 0 <= value[0] <= value[1] <= value[2]):
            raise BundleError(f"manifest.extra['dim_ranges'][{symbol!r}] must be [min, opt, max] with"
                              f" 0 <= min <= opt <= max, got {value!r}")
        ranges[symbol] = tuple(value)
    return ranges
