"""`reelrt compile`, `run`, `inspect`, `verify`, `keygen` and `sign`: the runtime's own subcommands."""
from __future__ import annotations

import argparse
import sys

from reelrt.parsing import command, non_negative_float, non_negative_int, positive_float, positive_int


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


# the options of each kind of bundle, as (attribute, flag); a run refuses the other kind's
SAMPLING = (("temperature", "--temperature"), ("top_k", "--top-k"), ("top_p", "--top-p"), ("seed", "--seed"))
GENERATION = (("prompt", "--prompt"), ("max_new_tokens", "--max-new-tokens"), ("stop", "--stop"),
              ("repetition_penalty", "--repetition-penalty"), ("truncate", "--truncate"), *SAMPLING)
INPUTS = {"image-classification": ("image", "--image", "images: pass --image FILE", 5),
          "text-classification": ("text", "--text", 'texts: pass --text "..."', 3)}


def run(args: argparse.Namespace) -> int:
    from reelrt.runtime import open_bundle, open_task
    from reelrt.runtime.backends.session import ThreadPolicy
    bundle = open_bundle(args.bundle, trusted_keys=args.key)
    task = bundle.manifest.task
    threads = ThreadPolicy(args.threads, args.spin)
    if task == "text-generation":
        _refuse(args, [(a, f) for a, f, *_ in INPUTS.values()], "not for this bundle, which generates text (pass --prompt)")
        _refuse_sampling_under_greedy(args, bundle.manifest.generation)
        return _generate(open_task(bundle, args.device, threads), args)
    attr, flag, hint, top_k = INPUTS[task]
    other_input = [(a, f) for a, f, *_ in INPUTS.values() if a != attr]
    generation_only = [option for option in GENERATION if option[0] != "top_k"]  # --top-k counts classes here
    _refuse(args, [*generation_only, *other_input], f"not for this bundle, which classifies {hint}")
    items = getattr(args, attr)
    if not items:
        from reelrt.runtime.errors import InputError
        raise InputError(f"this bundle classifies {hint}")
    model = open_task(bundle, args.device, threads)
    for item, result in zip(items, model.classify(items, top_k=args.top_k or top_k)):
        print(item)
        for label, prob in result:
            print(f"  {prob:7.2%}  {label}")
    return 0


def _generate(model, args: argparse.Namespace) -> int:
    """Stream the continuation of each --prompt, one line each, what is not printable escaped."""
    from reelrt.runtime.errors import InputError
    if not args.prompt:
        raise InputError('this bundle generates text: pass --prompt "..."')
    options = {attr: getattr(args, attr) for attr in ("max_new_tokens", "temperature", "top_k", "top_p", "seed",
                                                       "repetition_penalty", "truncate")}
    for prompt in args.prompt:
        _check_room(model, prompt, args)
        pieces = model.stream(prompt, stop=args.stop or (), **options)  # refuses bad options before any output
        sys.stdout.write(printable(prompt))
        for piece in pieces:
            sys.stdout.write(printable(piece))
            sys.stdout.flush()
        sys.stdout.write("\n")
    return 0


def _check_room(model, prompt: str, args: argparse.Namespace) -> None:
    """A prompt that does not fit the context with its new tokens, told in this command's options."""
    from reelrt.runtime.errors import InputError
    context = model.config.max_context
    new = args.max_new_tokens or model.defaults["max_new_tokens"]
    if new >= context:
        raise InputError(f"--max-new-tokens {new} leaves no room for a prompt in the model's {context}-token context:"
                         f" pass 1 to {context - 1}")
    tokens = len(model.encode(prompt)) if prompt else 0
    if tokens + new > context and not args.truncate:
        fewer = f"--max-new-tokens {context - tokens} or less, or " if tokens < context else ""
        raise InputError(f"the prompt's {tokens} tokens and {new} new tokens exceed the model's {context}-token"
                         f" context: pass {fewer}--truncate (keeps the prompt's end)")


def printable(text: str) -> str:
    """`text` with every character a terminal would not print as itself (control characters,
    a random model's stray bytes) written as a Python escape; newlines and tabs stay."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() or c in "\n\t" else c.encode("unicode_escape").decode("ascii") for c in text)


def _refuse(args: argparse.Namespace, options, why: str) -> None:
    from reelrt.runtime.errors import InputError
    given = [flag for attr, flag in options if getattr(args, attr) is not None]
    if given:
        raise InputError(f"{', '.join(given)}: {why}")


def _refuse_sampling_under_greedy(args: argparse.Namespace, defaults: dict) -> None:
    """Sampling options change nothing when decoding is greedy: say so rather than ignore them."""
    temperature = args.temperature if args.temperature is not None else defaults.get("temperature", 0.0)
    if temperature == 0:
        _refuse(args, SAMPLING[1:], "sampling options, but decoding is greedy (temperature 0): pass --temperature"
                " above 0, or leave them out")


def add_parsers(sub) -> None:
    """`reelrt compile`, `run`, `inspect`, `verify`."""
    p = command(sub, "compile", "reelrt.runtime.compile:main", "pick and record the fastest backend for this device",
                "Measure the builds available on this machine (ONNX Runtime, OpenVINO when installed; TensorRT on"
                " an NVIDIA GPU, UNVERIFIED) on the bundle's reference inputs, and record the fastest one within the"
                " bundle's accuracy budget in the bundle.")
    p.add_argument("bundle")
    p.add_argument("--target", choices=["cpu", "tensorrt"], default="cpu",
                   help="tensorrt: UNVERIFIED, written against the TensorRT 10 API and never run on a GPU")
    p.add_argument("--out", help="write the compiled bundle here instead of updating BUNDLE in place")
    p.add_argument("--prefer", choices=["latency", "startup"], default="latency",
                   help="cpu: fastest steady state (default), or ONNX Runtime only for the quickest first answer")

    p = command(sub, "run", "reelrt.runtime.command:run", "run a bundle on an image, a text or a prompt")
    p.add_argument("bundle")
    p.add_argument("--image", action="append", help="image file (repeatable; image classifiers)")
    p.add_argument("--text", action="append", help="text to classify (repeatable; text classifiers)")
    p.add_argument("--prompt", action="append", help="prompt to continue, streamed to stdout (repeatable; generators)")
    p.add_argument("--top-k", type=non_negative_int, default=None,
                   help="classes to show, or top-k sampling for --prompt (0 = off)")
    p.add_argument("--max-new-tokens", type=positive_int, default=None, help="generators: default from the bundle")
    p.add_argument("--temperature", type=non_negative_float, default=None,
                   help="generators: 0 = greedy (the bundle's default); sampling options need it above 0")
    p.add_argument("--top-p", type=positive_float, default=None, help="generators: nucleus sampling, in (0, 1]")
    p.add_argument("--seed", type=non_negative_int, default=None, help="generators: makes sampling reproducible")
    p.add_argument("--stop", action="append", help="generators: end the text before this string (repeatable)")
    p.add_argument("--repetition-penalty", type=positive_float, default=None,
                   help="generators: above 1 makes repeating a token less likely (default from the bundle)")
    p.add_argument("--truncate", action="store_const", const=True, default=None,
                   help="generators: drop the start of a prompt too long for the model's context")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto",
                   help="cuda: UNVERIFIED, never run on a GPU")
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

