"""`reelrt compile`, `reelrt run`, `reelrt inspect` and `reelrt verify`: the runtime's own subcommands."""
from __future__ import annotations

import argparse
import sys

from reelrt.parsing import command


def inspect(args: argparse.Namespace) -> int:
    from reelrt.runtime.bundle import open_bundle, verify_bundle
    bundle = open_bundle(args.bundle, verify="never")
    try:
        verify_bundle(args.bundle)
        state = "ok (every artifact matches its size and sha256)"
    except Exception as e:
        state = f"FAILED: {e}"
    print(summarize(bundle, state))
    return 0 if state.startswith("ok") else 1


def summarize(bundle, checksums: str) -> str:
    m = bundle.manifest
    lines = [f"bundle      {bundle.root}",
             f"family      {m.family} ({m.task}), precision {m.precision}, format v{m.format_version}",
             f"target      {_target(m.target)}"]
    for kind, specs in (("input", m.inputs), ("output", m.outputs)):
        for s in specs:
            lines.append(f"{kind:<11} {s.name}: {s.dtype}[{', '.join(str(d) for d in s.shape)}]")
    if m.preprocessing:
        lines.append("preprocess  " + ", ".join(f"{k}={v}" for k, v in m.preprocessing.items()))
    if m.labels:
        shown = ", ".join(m.labels[:8]) + (f", ... ({len(m.labels)} in all)" if len(m.labels) > 8 else "")
        lines.append(f"labels      {shown}")
    if m.generation:
        lines.append("generation  " + ", ".join(f"{k}={v}" for k, v in m.generation.items()))
    if m.head:
        lines.append("head        " + ", ".join(f"{k}={v}" for k, v in m.head.items()))
    if m.validation:
        lines.append("validation  " + ", ".join(f"{k}={v}" for k, v in m.validation.items() if not isinstance(v, (dict, list))))
    gate = m.validation.get("quality_gate")
    if isinstance(gate, dict):
        failures = [f.get("message", str(f)) for f in gate.get("failures", []) if isinstance(f, dict)]
        lines.append("quality     " + ("passed its gate" if not failures else
                                       "FAILED its gate, written with --accept-quality-loss: " + "; ".join(failures)))
    if m.provenance.get("random_weights"):
        lines.append("weights     random (untrained): top-1 agreement is not judged")
    prov = m.provenance
    if prov:
        lines.append("provenance  " + ", ".join(f"{k}={v}" for k, v in prov.items() if not isinstance(v, (dict, list))))
    total = sum(a.size for a in m.artifacts.values())
    lines.append(f"artifacts   {len(m.artifacts)} files, {total / 1e6:.1f} MB")
    for a in sorted(m.artifacts.values(), key=lambda a: a.path):
        lines.append(f"  {a.path:<32} {a.size / 1e6:>9.2f} MB  sha256 {a.sha256[:16]}…")
    lines.append(f"checksums   {checksums}")
    return "\n".join(lines)


def _target(target: dict) -> str:
    if not target:
        return "not compiled (ONNX Runtime on the bundle's model)"
    parts = [f"{target.get('backend', 'onnxruntime')}"]
    for key in ("precision", "path", "latency_ms", "device"):
        if key in target:
            parts.append(f"{key}={target[key]}")
    return ", ".join(parts)


def verify(args: argparse.Namespace) -> int:
    from reelrt.runtime.bundle import verify_bundle
    bundle = verify_bundle(args.bundle)
    m = bundle.manifest
    print(f"ok: {bundle.root} ({m.family}/{m.precision}, {len(m.artifacts)} artifacts verified)")
    return 0


def run(args: argparse.Namespace) -> int:
    from reelrt.runtime import load
    from reelrt.runtime.errors import InputError
    model = load(args.bundle, device=args.device, threads=args.threads)
    task = model.manifest.task
    if task == "text-generation":
        if args.prompt is None:
            raise InputError("this bundle generates text: pass --prompt \"...\"")
        sys.stdout.write(args.prompt)
        for piece in model.stream(args.prompt, max_new_tokens=args.max_new_tokens, temperature=args.temperature,
                                  top_k=args.top_k, top_p=args.top_p, seed=args.seed):
            sys.stdout.write(piece)
            sys.stdout.flush()
        sys.stdout.write("\n")
        return 0
    # classifiers: (the option that feeds them, how to ask for it, default top-k)
    items, hint, top_k = ((args.image, "images: pass --image FILE", 5) if task == "image-classification"
                          else (args.text, 'text: pass --text "..."', 3))
    if not items:
        raise InputError(f"this bundle classifies {hint}")
    for item, result in zip(items, model.classify(items, top_k=args.top_k or top_k)):
        print(item)
        for label, prob in result:
            print(f"  {prob:7.2%}  {label}")
    return 0


def add_parsers(sub) -> None:
    """`reelrt compile`, `run`, `inspect`, `verify`."""
    p = command(sub, "compile", "reelrt.runtime.compile:main", "pick and record the fastest backend for this device",
                "Measure the builds available on this machine (ONNX Runtime, OpenVINO when installed; TensorRT on"
                " an NVIDIA GPU) and record the fastest one within the bundle's accuracy budget in the bundle.")
    p.add_argument("bundle")
    p.add_argument("--target", choices=["cpu", "tensorrt"], default="cpu")
    p.add_argument("--out", help="write the compiled bundle here instead of updating BUNDLE in place")
    p.add_argument("--prefer", choices=["latency", "startup"], default="latency",
                   help="cpu: fastest steady state (default), or ONNX Runtime only for the quickest first answer")

    p = command(sub, "run", "reelrt.runtime.command:run", "run a bundle on an image, a text or a prompt")
    p.add_argument("bundle")
    p.add_argument("--image", action="append", help="image file (repeatable)")
    p.add_argument("--text", action="append", help="text to classify (repeatable)")
    p.add_argument("--prompt", help="prompt to continue (streams to stdout)")
    p.add_argument("--top-k", type=int, default=None, help="classes to show, or top-k sampling for --prompt")
    p.add_argument("--max-new-tokens", type=int, default=64)
    p.add_argument("--temperature", type=float, default=0.0, help="0 = greedy")
    p.add_argument("--top-p", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    p.add_argument("--threads", type=int, default=None)

    p = command(sub, "inspect", "reelrt.runtime.command:inspect", "summarise what a bundle holds")
    p.add_argument("bundle")
    p = command(sub, "verify", "reelrt.runtime.command:verify", "fully check a bundle's integrity (hash every artifact)")
    p.add_argument("bundle")
