"""The device checks itself: a bundle's reference set, run once on each CPU class it meets.

A bundle is built on one machine and runs on many. The same graph can answer differently on
another CPU: ONNX Runtime's uint8 x int8 kernels saturate on x86 CPUs without VNNI, a kernel
may take another path on ARM. So before a loaded bundle answers anyone, `load()` runs its
reference inputs through the backend that will serve them and holds the answers to the source
model's (reference/outputs.npz) under the bundle precision's tolerance, the check every stage
uses (a bundle written with an accepted quality loss may be as far off as it was where it was
made, plus that tolerance). A pass is remembered in the cache, keyed by the model file, the backend and its options,
the library version and the CPU's signature (runtime/system.py), so each CPU class pays for
it once; a failure is a DeviceCheckError that says what to do, never a wrong answer.
`load(..., device_check=False)` skips it: the host's explicit choice.
"""
from __future__ import annotations

import hashlib
import json
import time
from typing import Sequence

from reelrt.runtime.bundle import Bundle
from reelrt.runtime.bundle.cache import cache_dir, write_atomic
from reelrt.runtime.errors import DeviceCheckError, ValidationError
from reelrt.runtime.reference import check_against_source, has_source_answers, reference_feeds, source_outputs
from reelrt.runtime.system import cpu_features, cpu_name, cpu_signature
from reelrt.runtime.validation import compare, tolerance_for


def check_device(bundle: Bundle, backend) -> dict | None:
    """Run the bundle's reference set on `backend` here unless this CPU class already passed it;
    return the figures (None when the bundle carries no reference answers). DeviceCheckError
    when the answers are out of the precision's tolerance."""
    if not has_source_answers(bundle):
        return None
    path = _cache_path(bundle, backend.name)
    if path.is_file():
        return json.loads(path.read_text())
    t0 = time.perf_counter()
    outputs = dict(zip(backend.output_names, backend.run(reference_feeds(bundle))))
    what = f"{backend.name} on this CPU ({cpu_name()})"
    try:
        accepted = accepted_gaps(bundle)
        report = (check_accepted(bundle, outputs, accepted, what) if accepted is not None else
                  check_against_source(bundle, outputs, bundle.manifest.precision, what))
    except ValidationError as e:
        raise DeviceCheckError(f"{e}. This device computes the bundle's {bundle.manifest.precision} graph wrongly"
                               f" ({', '.join(_notable_features())}): run `reelrt compile {bundle.root} --target cpu`"
                               " here (it records a build that is right on this CPU), or ship another precision"
                               " (int8 made by this version of reelrt, fp16 or fp32)") from None
    report = {**report, "cpu": cpu_name(), "cpu_signature": cpu_signature(),
              "seconds": round(time.perf_counter() - t0, 4)}
    write_atomic(path, json.dumps(report).encode())
    return report


def accepted_gaps(bundle: Bundle) -> dict[str, float] | None:
    """For a bundle written with its quality gate failed and the loss accepted (--accept-quality-loss),
    how far each output was from the source's answers on the machine that made it; None otherwise."""
    validation = bundle.manifest.validation
    if not validation.get("quality_gate", {}).get("accepted_quality_loss"):
        return None
    recorded = validation.get("against_source_model") or {}
    return {name: float(figures["relative_diff"]) for name, figures in recorded.items()
            if isinstance(figures, dict) and "relative_diff" in figures}


def check_accepted(bundle: Bundle, outputs: dict, accepted: dict[str, float], what: str) -> dict:
    """The check for a bundle whose publisher accepted a quality loss: each output may be as far from
    the source as it was where it was made, plus the precision's tolerance (this device against that
    one); top-1 agreement is not asked, the loss was accepted."""
    tolerance = tolerance_for(bundle.manifest.precision).max_relative_diff
    report = {"reference": "the source model's answers, with the accepted loss"}
    for name, want in source_outputs(bundle).items():
        cmp = compare(want, outputs[name])
        limit = accepted.get(name, 0.0) + tolerance
        if cmp.relative_diff > limit:
            raise ValidationError(f"{what}: output {name!r} is {cmp.relative_diff:.3g} of the range from the source's"
                                  f" answers, over the {limit:.3g} accepted where the bundle was made")
        report[name] = cmp.to_json()
    return report


def _cache_path(bundle: Bundle, backend_name: str):
    """One file per (model, reference answers, backend and the compiled target, library version, CPU class)."""
    import onnxruntime as ort

    m = bundle.manifest
    facts = [m.artifacts[m.model].sha256, _reference_digest(bundle), backend_name,
             json.dumps(m.target, sort_keys=True, default=str), ort.__version__, cpu_signature()]
    return cache_dir("device-check", hashlib.sha256("|".join(facts).encode()).hexdigest()[:32] + ".json")


def _reference_digest(bundle: Bundle) -> str:
    arts = bundle.manifest.artifacts
    return ",".join(arts[name].sha256 for name in sorted(arts) if name.startswith("reference/"))


def _notable_features(names: Sequence[str] = ("AVX2", "AVX512F", "AVX512VNNI", "AVXVNNI", "ASIMDDP")) -> list[str]:
    """The extensions that decide ONNX Runtime's integer kernels, present or absent on this CPU."""
    have = set(cpu_features())
    return [f"{'+' if n in have else 'no '}{n}" for n in names]
