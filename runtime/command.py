"""`reelrt compile`, `run`, `inspect`, `verify`, `keygen` and `sign`: the runtime's own subcommands."""
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
    if m.validation:
        lines.append("validation  " + ", ".join(f"{k}={v}" for k, v in m.validation.items() if not isinstance(v, (dict, list))))
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
    from reelrt.runtime.bundle import open_bundle
    bundle = open_bundle(args.bundle, verify="always", trusted_keys=args.key)
    m = bundle.manifest
    signed = f", signature by a trusted key ({len(args.key)} given)" if args.key else ""
    print(f"ok: {bundle.root} ({m.family}/{m.precision}, {len(m.artifacts)} artifacts verified{signed})")
    return 0


def keygen(args: argparse.Namespace) -> int:
    from reelrt.runtime.bundle.signing import generate_key_pair
    private, public, kid = generate_key_pair(args.out)
    print(f"key {kid}: private {private} (mode 0600, keep it secret), public {public} (ship it with the client)")
    return 0


def sign(args: argparse.Namespace) -> int:
    from reelrt.runtime.bundle.signing import SIGNATURE_NAME, sign_bundle
    kid = sign_bundle(args.bundle, args.key)
    print(f"signed: {args.bundle}/{SIGNATURE_NAME} (key {kid})")
    return 0


def run(args: argparse.Namespace) -> int:
    from reelrt.runtime import load
    from reelrt.runtime.errors import InputError
    model = load(args.bundle, device=args.device, threads=args.threads, spin=args.spin, trusted_keys=args.key)
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
    p.add_argument("--threads", type=positive_int, default=None, help="intra-op threads (default: one per core)")
    p.add_argument("--spin", action=argparse.BooleanOptionalAction, default=False,
                   help="let idle worker threads busy-wait between runs (default: off, they sleep)")
    p.add_argument("--key", action="append", help="trusted public key: refuse the bundle unless signed by one (repeatable)")

    p = command(sub, "inspect", "reelrt.runtime.command:inspect", "summarise what a bundle holds")
    p.add_argument("bundle")
    p = command(sub, "verify", "reelrt.runtime.command:verify", "fully check a bundle's integrity (hash every artifact)")
    p.add_argument("bundle")
    p.add_argument("--key", action="append", help="trusted public key: also require a signature by one (repeatable)")

    p = command(sub, "keygen", "reelrt.runtime.command:keygen", "make an ed25519 key pair for signing bundles",
                "Write a private key to OUT (mode 0600) and its public key to OUT.pub. Needs reelrt[signing].")
    p.add_argument("--out", required=True, help="private key file (refuses to overwrite)")
    p = command(sub, "sign", "reelrt.runtime.command:sign", "sign a bundle's manifest with a private key",
                "Verify BUNDLE fully, then write manifest.sig beside its manifest.json: an ed25519 signature over the"
                " manifest, which holds every artifact's sha256. Rewriting the bundle (quantize, compile) drops it.")
    p.add_argument("bundle")
    p.add_argument("--key", required=True, help="private key file from reelrt keygen")


def positive_int(text: str) -> int:
    """argparse type: an int >= 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value
