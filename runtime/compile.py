"""`reelrt compile`: measure the builds this device offers and record the fastest one allowed.

`--target cpu` (here): the candidates are ONNX Runtime on the bundle's graph, and, when
OpenVINO is installed, OpenVINO at f32 and (on CPUs with bf16 units) with a bf16
inference-precision hint. On an int8 (QDQ) bundle every candidate runs the int8 graph;
the hint then governs only what is left in float. A GPT-2 bundle is timed on what a client
waits for, one decode step on the cache after the reference prompt, and only ONNX Runtime
can serve it: the generation loop binds the cache as ONNX Runtime buffers, so OpenVINO is
reported unavailable. `--target tensorrt` (UNVERIFIED: never run on a GPU) is served by
reelrt.runtime.backends.gpu.tensorrt.

Inputs: the bundle's reference set (runtime/reference.py), real inputs written at export.

Accuracy: every candidate's answers to the reference inputs are held to the source model's
answers (reference/outputs.npz, PyTorch's, written at export) under the shared validation policy
(runtime/validation.py) at the precision the candidate computes in (an fp32 graph under
OpenVINO's bf16 hint is held to bf16's tolerance); top-1 agreement is not asked of random
weights. A bundle without source answers (older exports) falls back to ONNX Runtime's answers
as the reference. A candidate out of tolerance is skipped with the reason printed: on x86 CPUs
without VNNI, ONNX Runtime's integer kernels can saturate on int8 graphs made with full-range
weights, and then OpenVINO's int8 build, or ONNX Runtime with the Q/DQ pairs left in float
(graph optimisation "basic", a candidate for QDQ graphs), is the one that is right here.
Compile fails only when no candidate is right. Only candidates within tolerance compete on speed.
ONNX Runtime is the runtime's own dependency, already imported; another backend costs
start-up time (OpenVINO: about 0.2 s to import and 0.1-0.3 s to load a cached network
here), so it must beat ONNX Runtime by MIN_GAIN, beyond the noise of a shared device, to
be chosen; with `--prefer startup` ONNX Runtime is chosen whatever the others measured
(apps whose first answer matters more than the steady state). The winner goes into
manifest.target with every candidate's figures; the bundle is
rewritten through BundleWriter (in place, or to --out), so the swap is atomic.
"""
from __future__ import annotations

import argparse
import importlib
import statistics
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from reelrt.runtime.backends import Backend, opener
from reelrt.runtime.backends.session import ThreadPolicy, physical_cores
from reelrt.runtime.bundle import Bundle, BundleWriter, open_bundle
from reelrt.runtime.errors import BackendUnavailableError, ValidationError
from reelrt.runtime.reference import reference_feeds, reference_prompt, source_outputs
from reelrt.runtime.system import cpu_name, cpu_signature
from reelrt.runtime.validation import compare, tolerance_for, weights_are_random

TENSORRT = "reelrt.runtime.backends.gpu.tensorrt:compile_bundle"
MIN_GAIN = 0.10   # a backend other than ONNX Runtime must be this much faster to be chosen


@dataclass
class Candidate:
    backend: str
    inference_precision: str
    graph_optimization: str = "all"   # ONNX Runtime's level: "basic" keeps Q/DQ in float
    latency_ms: float | None = None
    relative_diff: float | None = None
    top1_agreement: float | None = None
    within_budget: bool = False
    tolerance_precision: str = ""
    note: str = ""
    times: list[float] = field(default_factory=list, repr=False)

    def label(self, precision: str) -> str:
        """'onnxruntime int8', 'openvino fp32 as bf16', 'openvino int8 (float parts bf16)'."""
        if self.backend == "onnxruntime":
            return f"onnxruntime {precision}" + (" (Q/DQ in float)" if self.graph_optimization == "basic" else "")
        if precision in ("fp32", "fp16"):
            return f"openvino {precision} as {self.inference_precision}"
        return f"openvino {precision} (float parts {self.inference_precision})"


def main(args: argparse.Namespace) -> int:
    if args.target == "tensorrt":
        module, func = TENSORRT.split(":")
        return getattr(importlib.import_module(module), func)(args.bundle, out=args.out) or 0
    out = compile_cpu(args.bundle, out=args.out, prefer=args.prefer)
    print(f"wrote {out}")
    return 0


def compile_cpu(path: str | Path, out: str | Path | None = None, threads: int | None = None,
                seconds: float = 3.0, verbose: bool = True, prefer: str = "latency") -> Path:
    """Measure every CPU candidate on this machine; write the bundle with the winner as its target."""
    if prefer not in ("latency", "startup"):
        raise ValueError(f"prefer must be 'latency' or 'startup', not {prefer!r}")
    bundle = open_bundle(path)
    threads = threads or physical_cores()
    feeds = reference_feeds(bundle)
    manifest = bundle.manifest
    precision = manifest.precision
    top1 = not weights_are_random(manifest)
    source = source_outputs(bundle)
    candidates, steps = [], []
    reference = None
    for cand in cpu_candidates(bundle):
        candidates.append(cand)
        try:
            if manifest.task == "text-generation" and cand.backend != "onnxruntime":
                raise BackendUnavailableError("text generation binds its key/value cache as ONNX Runtime buffers")
            # spinning on, as in every benchmark: candidates are timed back to back
            backend = opener(cand.backend)(bundle, manifest.model, "cpu", ThreadPolicy(threads, spin=True),
                                           {"inference_precision": cand.inference_precision,
                                            "graph_optimization": cand.graph_optimization})
            step = timed_step(bundle, backend, feeds)
        except BackendUnavailableError as e:
            cand.note = str(e)
            continue
        output = backend.run(feeds)[0]
        if reference is None:  # the source's answers; without them, the first candidate's (ONNX Runtime)
            reference = source[backend.output_names[0]] if source else output
        cand.tolerance_precision = computing_precision(precision, cand.inference_precision)
        try:
            cmp = compare(reference, output)
        except ValidationError as e:
            cand.note, cand.relative_diff, cand.top1_agreement = str(e), float("inf"), 0.0
        else:
            cand.relative_diff, cand.top1_agreement = cmp.relative_diff, cmp.top1_agreement
            cand.within_budget = cmp.within(tolerance_for(cand.tolerance_precision), top1)
            if not cand.within_budget:
                cand.note = "answers out of tolerance on this CPU"
        steps.append((cand, step))
    _time_interleaved(steps, seconds)
    best = choose(candidates, prefer)
    if verbose:
        print(describe(candidates, best, precision, what_is_timed(bundle)))
    target = {"backend": best.backend, "path": manifest.model, "precision": precision,
              "inference_precision": best.inference_precision, "latency_ms": round(best.latency_ms, 3),
              "timed": what_is_timed(bundle), "device": cpu_name(), "threads": threads, "top1_checked": top1,
              "prefer": prefer, "budget": asdict(tolerance_for(best.tolerance_precision)),
              "against_source": {"reference": "the source model's answers (reference/outputs.npz)" if source
                                 else "ONNX Runtime's answers", "relative_diff": round(best.relative_diff, 6),
                                 "top1_agreement": round(best.top1_agreement, 6)},
              "cpu_signature": cpu_signature(), "graph_optimization": best.graph_optimization,
              "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
              "candidates": [{k: v for k, v in asdict(c).items() if k != "times"} for c in candidates]}
    return write_target(bundle, target, out)


def timed_step(bundle: Bundle, backend: Backend, feeds: dict[str, np.ndarray]) -> Callable[[], object]:
    """One timed call: a classifier's batch-1 run on its first reference input, or a generator's
    decode step at the reference prompt's length (rewound after each step, so every step sees the
    same context)."""
    if bundle.manifest.task != "text-generation":
        single = {k: v[:1] for k, v in feeds.items()}
        return lambda: backend.run(single)
    from reelrt.runtime.tasks.generation.decoder import KVDecoder
    session = getattr(backend, "session", None)
    if session is None:
        raise BackendUnavailableError(f"{backend.name} has no ONNX Runtime session to bind the cache to")
    decoder = KVDecoder.from_facts(session, bundle.manifest.extra)
    prompt = reference_prompt(bundle)
    decoder.start(1)
    decoder.prefill(0, prompt)
    token = prompt[-1:]

    def step() -> None:
        decoder.rewind(len(prompt))
        decoder.decode(token)
    return step


def what_is_timed(bundle: Bundle) -> str:
    if bundle.manifest.task == "text-generation":
        return f"decode step after the {len(reference_prompt(bundle))}-token reference prompt"
    return "batch-1 run on a reference input"


def choose(candidates: list[Candidate], prefer: str) -> Candidate:
    """The fastest candidate within budget; another backend than ONNX Runtime must win by MIN_GAIN."""
    handicap = 1.0 + MIN_GAIN if prefer == "latency" else float("inf")
    allowed = [c for c in candidates if c.within_budget and c.latency_ms is not None]
    if not allowed:
        reasons = "; ".join(f"{c.backend}/{c.inference_precision}/{c.graph_optimization}: {c.note or 'out of tolerance'}"
                            for c in candidates)
        raise ValidationError(f"no build of this bundle answers within tolerance on this CPU ({reasons});"
                              " ship another precision for it")
    return min(allowed, key=lambda c: c.latency_ms * (1.0 if c.backend == "onnxruntime" else handicap))


def describe(candidates: list[Candidate], best: Candidate, precision: str, timed: str) -> str:
    lines = [f"timed: {timed}"]
    for c in candidates:
        head = f"{'->' if c is best else '  '} {c.label(precision):<36}"
        if c.latency_ms is None:
            lines.append(f"{head} unavailable: {c.note}")
        else:
            lines.append(f"{head} {c.latency_ms:7.2f} ms  diff {c.relative_diff:.2%} of logit range, top-1"
                         f" {c.top1_agreement:.0%}{'' if c.within_budget else '  skipped: ' + c.note}")
    return "\n".join(lines)


def cpu_candidates(bundle: Bundle) -> list[Candidate]:
    """ONNX Runtime first, then (graphs with Q/DQ pairs) ONNX Runtime with Q/DQ in float, then OpenVINO's builds."""
    float_qdq = [Candidate("onnxruntime", "f32", "basic")] if has_qdq(bundle.path(bundle.manifest.model)) else []
    return [Candidate("onnxruntime", "f32"), *float_qdq, Candidate("openvino", "f32"), Candidate("openvino", "bf16")]


# A node whose op_type is "DequantizeLinear", as protobuf writes it in the graph: field 4, length 16
_DEQUANTIZE_NODE = b'"\x10DequantizeLinear'


def has_qdq(model: Path) -> bool:
    """Whether the ONNX graph holds DequantizeLinear nodes (read from its bytes: the runtime reads no
    ONNX with the onnx package), whoever quantized it."""
    with open(model, "rb") as f:
        return _DEQUANTIZE_NODE in f.read()


def computing_precision(precision: str, inference_precision: str) -> str:
    """The precision whose tolerance a candidate is held to: a float graph computed under a
    bf16 hint is a bf16 computation; a quantized graph keeps its own precision."""
    return "bf16" if precision in ("fp32", "fp16") and inference_precision == "bf16" else precision


def write_target(bundle: Bundle, target: dict, out: str | Path | None) -> Path:
    """Copy the bundle with manifest.target replaced, atomically, to `out` or over itself."""
    with BundleWriter(out or bundle.root) as w:
        w.copy_artifacts(bundle)
        manifest = bundle.manifest
        manifest.target = target
        return w.commit(manifest)


def _time_interleaved(steps: list, seconds: float, block: int = 10) -> None:
    """Batch-1 latency of each step, in blocks of `block` runs, A B C A B C..., for about `seconds`.

    Blocks rather than single runs: ONNX Runtime's pool spins for a while after each run,
    and on a 2-core device that tail would be charged to whichever build runs next. The
    first run of each block, which may pay for the previous block's tail, is dropped.
    """
    for _, step in steps:
        for _ in range(3):
            step()
    deadline = time.perf_counter() + seconds
    rounds = 0
    while rounds < 2 or (time.perf_counter() < deadline and rounds < 50):
        for cand, step in steps:
            for i in range(block):
                t0 = time.perf_counter()
                step()
                if i:
                    cand.times.append((time.perf_counter() - t0) * 1e3)
        rounds += 1
    for cand, _ in steps:
        cand.latency_ms = statistics.median(cand.times)
