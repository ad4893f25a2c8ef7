"""TensorRT plans inside a bundle: their key, the engines/ index, lookup and storage.

A plan is valid only for the exact model, TensorRT version, GPU and build settings it was
made with, and TensorRT may crash or compute garbage on a plan that does not fit. So
every plan is stored under a key hashed from all of those facts:

    engines/index.json      {"format": 1, "engines": [entry, ...]}
    engines/<key>.plan      the serialized engine

An entry holds the key and the facts it was hashed from (model_sha256, tensorrt,
compute_capability, gpu, precision, profiles). Lookup recomputes the key from the
facts of *this* machine and *this* bundle and takes a plan only when the key and every
recorded fact agree, so a stale plan (the model was re-exported, TensorRT was upgraded,
the profile rules changed) or a foreign one (another GPU) is never loaded. The GPU's
name is part of the key beside its compute capability: TensorRT plans are specific to
the device model they were built on, not only to its architecture. Several plans (for
several GPUs) may live side by side; plans for another model hash are dropped when a new
plan is stored, since they can never match again. Index and plans are ordinary bundle
artifacts, so the bundle's sha256 checks cover them.
"""
from __future__ import annotations

import copy
import hashlib
import json
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reelrt.runtime.bundle import Bundle, BundleWriter
from reelrt.runtime.bundle.cache import cache_dir
from reelrt.runtime.errors import BundleError
from reelrt.runtime.backends.gpu.profiles import Profile, derive_profiles

INDEX = "engines/index.json"
INDEX_FORMAT = 1
KEY_FIELDS = ("model_sha256", "tensorrt", "compute_capability", "gpu", "precision", "profiles")


@dataclass(frozen=True)
class DeviceFacts:
    """What a plan depends on besides the bundle: the TensorRT build and the GPU."""
    tensorrt: str               # tensorrt.__version__, e.g. "10.13.0.35"
    gpu: str                    # the device's name, e.g. "NVIDIA H100 80GB HBM3"
    compute_capability: str     # "major.minor", e.g. "9.0"


def engine_fields(bundle: Bundle, facts: DeviceFacts, profiles: list[Profile] | None = None) -> dict[str, Any]:
    """Everything a plan for this bundle on this device depends on, as JSON values."""
    manifest = bundle.manifest
    return {"model_sha256": manifest.artifacts[manifest.model].sha256,
            "tensorrt": facts.tensorrt,
            "compute_capability": facts.compute_capability,
            "gpu": facts.gpu,
            "precision": manifest.precision,
            "profiles": [p.to_json() for p in (derive_profiles(manifest) if profiles is None else profiles)]}


def engine_key(fields: dict[str, Any]) -> str:
    """A short stable digest of the fields (canonical JSON), used as the plan's file name."""
    canonical = json.dumps({k: fields[k] for k in KEY_FIELDS}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:32]


def read_index(bundle: Bundle) -> list[dict[str, Any]]:
    """The bundle's engine entries; none when it holds no engines/ index or a malformed one."""
    if INDEX not in bundle.manifest.artifacts:
        return []
    try:
        doc = json.loads(bundle.path(INDEX).read_bytes())
    except (OSError, ValueError):
        return []
    if not isinstance(doc, dict) or doc.get("format") != INDEX_FORMAT or not isinstance(doc.get("engines"), list):
        return []
    return [e for e in doc["engines"] if isinstance(e, dict)]


def find_plan(bundle: Bundle, facts: DeviceFacts) -> tuple[Path | None, str]:
    """The plan built for this bundle on this device, or None and the reason there is none."""
    try:
        wanted = engine_fields(bundle, facts)
    except BundleError as e:
        return None, f"no TensorRT profile fits this bundle: {e}"
    key = engine_key(wanted)
    entries = read_index(bundle)
    for entry in entries:
        plan = entry.get("plan")
        if (entry.get("key") == key and all(entry.get(k) == wanted[k] for k in KEY_FIELDS)
                and plan == f"engines/{key}.plan" and plan in bundle.manifest.artifacts):
            return bundle.path(plan), f"plan {plan} matches"
    if not entries:
        return None, "the bundle holds no TensorRT plan (run `reelrt compile BUNDLE --target tensorrt` on this GPU)"
    return None, "no plan matches this machine: " + "; ".join(_mismatch(e, wanted) for e in entries)


def store_plan(bundle: Bundle, out: str | os.PathLike, fields: dict[str, Any], plan: bytes,
               build_seconds: float) -> Path:
    """Write the bundle to `out` (its own root to update in place) with the plan added to engines/
    and manifest.target naming TensorRT; returns the bundle's path."""
    key = engine_key(fields)
    plan_rel = f"engines/{key}.plan"
    entry = {"key": key, "plan": plan_rel, **{k: fields[k] for k in KEY_FIELDS},
             "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "build_seconds": round(build_seconds, 1)}
    kept = [e for e in read_index(bundle)
            if e.get("model_sha256") == fields["model_sha256"] and e.get("key") != key
            and e.get("plan") in bundle.manifest.artifacts]
    manifest = copy.deepcopy(bundle.manifest)
    manifest.target = {"backend": "tensorrt", "path": manifest.model, "engines": INDEX}
    dropped = {e.get("plan") for e in read_index(bundle)} - {e["plan"] for e in kept}
    with BundleWriter(out) as w:
        w.copy_artifacts(bundle, lambda rel: rel != INDEX and rel not in dropped)
        (w.dir / "engines").mkdir(exist_ok=True)
        (w.dir / plan_rel).write_bytes(plan)
        index = {"format": INDEX_FORMAT, "engines": kept + [entry]}
        (w.dir / INDEX).write_text(json.dumps(index, indent=2) + "\n")
        return w.commit(manifest)


def timing_cache_path(facts: DeviceFacts) -> Path:
    """One timing cache per TensorRT version and GPU, shared by every build on this machine:
    it holds measured kernel timings, which only that pair makes meaningful."""
    gpu = re.sub(r"[^A-Za-z0-9]+", "-", facts.gpu).strip("-").lower() or "gpu"
    return cache_dir("tensorrt", f"timing-{facts.tensorrt}-sm{facts.compute_capability}-{gpu}.cache")


def _mismatch(entry: dict[str, Any], wanted: dict[str, Any]) -> str:
    differing = [k for k in KEY_FIELDS if entry.get(k) != wanted[k]]
    if not differing:
        return f"{entry.get('plan')}: its key or file name is inconsistent with its facts"
    shown = ", ".join(f"{k} {entry.get(k)!r} != {wanted[k]!r}" if k != "profiles" else "profiles differ"
                      for k in differing)
    return f"{entry.get('plan')}: {shown}"
