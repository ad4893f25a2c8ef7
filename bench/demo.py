"""`reelrt demo`: the product on a fresh machine, with no arguments.

For each family (CNN, LSTM, GPT-2) the demo builds default bundles from built-in models and
offline data (once; later runs reuse them), and each bundle shows itself answering:
- cnn: the digits CNN trained on scikit-learn's digits, and a random-weight MobileNetV2,
  both int8 and compiled for this CPU;
- lstm: the fortunes classifier trained here, fp32 and int8, its held-out accuracy beside a
  TF-IDF + logistic regression baseline fitted on the same split;
- gpt2: a small GPT-2 trained here on the fortunes' quotes, fp32 and int8, writing text.
Then the bundles are measured against PyTorch eager in a short interleaved run (the
family benchmark modules, bench/<family>.py) and the table is printed. A family that
fails is reported and the demo goes on with the others; the exit status says whether
every family made it.
"""
from __future__ import annotations

import argparse
import os
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from reelrt.runtime import open_bundle
from reelrt.runtime.backends.session import physical_cores
from reelrt.runtime.errors import BundleError

from .harness import one_line, pin_threads
from .report import markdown, to_json, write
from .runner import run_benchmark

DEFAULT_WORKDIR = "bundles/demo"


@dataclass(frozen=True)
class Demo:
    build: Callable[[Path], list[Path]]   # workdir -> its bundles (built once, reused when valid)
    show: Callable[[Path], str]           # bundle -> a few lines of it answering


def main(args: argparse.Namespace) -> int:
    threads = physical_cores()
    pin_threads(threads)
    workdir = Path(args.workdir or os.environ.get("REELRT_DEMO_DIR") or DEFAULT_WORKDIR)
    print(f"reelrt demo: default bundles for {', '.join(DEMOS)} under {workdir} "
          f"(built on the first run, reused after), {threads} threads", flush=True)
    failed: list[str] = []
    built: list[Path] = []
    for family, demo in DEMOS.items():
        print(f"\n== {family}: building the demo bundles", flush=True)
        start = time.perf_counter()
        try:
            paths = [Path(p) for p in demo.build(workdir)]
        except Exception as e:
            print(f"   {family} FAILED: {one_line(e)}", flush=True)
            failed.append(family)
            continue
        print(f"   {len(paths)} bundle(s) ready in {time.perf_counter() - start:.1f} s", flush=True)
        for path in paths:
            print(f"-- {path}", flush=True)
            try:
                print(textwrap.indent(demo.show(path).rstrip(), "   "), flush=True)
            except Exception as e:
                print(f"   {family} FAILED to answer: {one_line(e)}", flush=True)
                failed.append(family)
                continue
            built.append(path)

    if built:
        print(f"\n== benchmark against PyTorch eager ({args.seconds:g} s per system; "
              "`reelrt bench` measures memory, cold start and every peer)", flush=True)
        run, bench_failed = run_benchmark([open_bundle(p) for p in built], {"pytorch"}, threads, warmup=2,
                                          iterations=None, seconds=args.seconds, isolated=False,
                                          command="reelrt demo", bandwidth=False)
        failed += bench_failed
        print(markdown(to_json(run), header=False), flush=True)
        paths = write(run, Path(args.out))
        print(f"reports: {', '.join(str(p) for p in paths.values())}")
    if failed:
        print(f"\nreelrt demo: finished with failures in {', '.join(dict.fromkeys(failed))}")
        return 1
    print("\nreelrt demo: done")
    return 0


def _reusable(path: Path, family: str, compiled: bool = False) -> bool:
    """A bundle the demo built before: it opens, is of this family and (if asked) compiled."""
    try:
        m = open_bundle(path).manifest
    except BundleError:
        return False
    return m.family == family and (bool(m.target) or not compiled)


# ---- cnn: digits (trained) and MobileNetV2 (random weights), int8, compiled ----------------

def build_cnn(workdir: Path) -> list[Path]:
    return [workdir / f"{arch}-int8" if _reusable(workdir / f"{arch}-int8", "cnn", compiled=True)
            else _build_cnn_bundle(arch, workdir) for arch in ("digits", "mobilenetv2")]


def _build_cnn_bundle(arch: str, workdir: Path) -> Path:
    """export (digits: train first) -> int8 -> compile, under workdir."""
    from reelrt.export.cnn import export_cnn
    from reelrt.quantize.cnn import quantize_int8
    from reelrt.runtime.compile import compile_cpu

    checkpoint = None
    if arch == "digits":
        import torch

        from reelrt.models.digits import train
        checkpoint = workdir / "digits.pt"
        workdir.mkdir(parents=True, exist_ok=True)
        model, _ = train(quiet=True)
        torch.save({"state_dict": model.state_dict()}, checkpoint)
    fp32 = export_cnn(arch, workdir / f"{arch}-fp32", checkpoint)
    int8 = quantize_int8(open_bundle(fp32), workdir / f"{arch}-int8")
    return compile_cpu(int8, seconds=1.0)


def show_cnn(bundle: Path) -> str:
    """Held-out digits with their true labels, or a 1080p frame classified."""
    from reelrt.runtime import load

    from .cnn import hd_frame
    clf = load(bundle)
    lines = [f"{Path(bundle).name}: {clf!r}"]
    if clf.manifest.extra.get("heldout", {}).get("dataset") == "sklearn-digits":
        from reelrt.models.digits import digits_split

        _, _, frames, labels = digits_split()
        for label, top in zip(labels[:5], clf.classify(list(frames[:5]), top_k=1)):
            lines.append(f"  held-out digit {label}: {top[0][0]} ({top[0][1]:.1%})")
        return "\n".join(lines)
    frame = hd_frame()
    t0 = time.perf_counter()
    top = clf.classify(frame, top_k=3)
    ms = (time.perf_counter() - t0) * 1e3
    lines.append(f"  1080p frame -> {', '.join(f'{label} {p:.1%}' for label, p in top)} in {ms:.1f} ms"
                 + ("" if clf.manifest.extra.get("trained") else "  (random weights: labels are placeholders)"))
    return "\n".join(lines)


# ---- lstm: the fortunes classifier, fp32 and int8 -----------------------------------------

def build_lstm(workdir: Path) -> list[Path]:
    """Train on the fortunes CSV, export, quantize to int8; reuse bundles already built."""
    fp32, int8 = workdir / "lstm-fortunes", workdir / "lstm-fortunes-int8"
    if _reusable(fp32, "lstm") and _reusable(int8, "lstm"):
        return [fp32, int8]
    from reelrt.export.lstm import export_bundle
    from reelrt.models.lstm import FORTUNES_CSV, read_labeled_csv
    from reelrt.models.lstm_train import TrainSettings, train
    from reelrt.quantize.lstm import quantize_int8
    checkpoint = train(*read_labeled_csv(FORTUNES_CSV), TrainSettings())
    export_bundle(checkpoint, fp32, f"reelrt demo: trained on {FORTUNES_CSV.name}", random_weights=False)
    quantize_int8(open_bundle(fp32), int8)
    return [fp32, int8]


def show_lstm(bundle: Path) -> str:
    """Accuracy beside the baseline, then one held-out text per label with its true label."""
    from reelrt.quantize.lstm import read_heldout
    from reelrt.runtime import load
    classifier = load(bundle)
    m = classifier.manifest
    trained = m.provenance.get("train_metrics") or {}
    heldout = read_heldout(classifier.bundle)
    lines = [f"{bundle.name} ({m.precision}): held-out accuracy {m.validation.get('heldout_accuracy', float('nan')):.1%}"
             f" on {len(heldout)} texts; TF-IDF + logistic regression on the same split"
             f" {trained.get('tfidf_logreg_accuracy', float('nan')):.1%}; trained in"
             f" {trained.get('train_seconds', float('nan')):.1f} s"]
    rows = [next(row for row in heldout if row[1] == label) for label in m.labels if any(r[1] == label for r in heldout)]
    for (text, truth), result in zip(rows, classifier.classify([text for text, _ in rows], top_k=1)):
        label, prob = result[0]
        mark = "  (right)" if label == truth else f"  (wrong: {truth})"
        lines.append(f"  {label:>9} {prob:6.1%}{mark}  {text[:90]}")
    return "\n".join(lines)


# ---- gpt2: a small GPT-2 trained on the fortunes' quotes, fp32 and int8 --------------------

GPT2_PROMPTS = ("Love is", "The computer", "Captain, the")


def gpt2_recipe():
    """About a minute on two cores: a fixed number of steps, so every machine trains the same model."""
    from reelrt.models.gpt2_train import Recipe
    return Recipe(shape=dict(n_layer=2, n_head=4, n_embd=128, n_positions=128), vocab=512, block=64, batch=16,
                  learning_rate=3e-3, minutes=None, steps=600)


def fortunes_text() -> tuple[str, str]:
    """The fortunes' quotes, one document each (ended by the end-of-text token); every tenth held out."""
    from reelrt.models.gpt2 import EOS_TOKEN
    from reelrt.models.lstm import FORTUNES_CSV, read_labeled_csv
    quotes, _ = read_labeled_csv(FORTUNES_CSV)
    join = lambda keep: "".join(q + EOS_TOKEN for i, q in enumerate(quotes) if keep(i))
    return join(lambda i: i % 10 != 0), join(lambda i: i % 10 == 0)


def build_gpt2(workdir: Path) -> list[Path]:
    """Train (about a minute), export, quantize to int8; reuse what was built. Not int4: on a model
    this small int4 agrees with fp32 on under 90% of held-out next tokens, and the pass refuses it."""
    from reelrt.export.gpt2 import export
    from reelrt.quantize.gpt2 import quantize_int8
    checkpoint, fp32, int8 = workdir / "gpt2-fortunes.ckpt", workdir / "gpt2-fortunes", workdir / "gpt2-fortunes-int8"
    if not _reusable(fp32, "gpt2"):
        from reelrt.models.gpt2_train import read_record, train
        if not read_record(checkpoint):   # the record is written last: without it the checkpoint is partial
            train(checkpoint, *fortunes_text(), gpt2_recipe())
        export(fp32, checkpoint=checkpoint)
    if not _reusable(int8, "gpt2"):
        quantize_int8(open_bundle(fp32), int8)
    return [fp32, int8]


def show_gpt2(bundle: Path) -> str:
    """How it was trained, then a few prompts streamed (sampled, seeded: the same text every run)."""
    from reelrt.models.gpt2_train import read_record
    from reelrt.runtime import load
    gen = load(bundle)
    m = gen.manifest
    record = read_record(m.provenance.get("checkpoint") or "")
    lines = [f"{Path(bundle).name} ({m.precision}, {m.extra['n_layer']} layers x {m.extra['n_embd']}, vocabulary"
             f" {gen.text_vocab}): trained {record.get('steps', '?')} steps in {record.get('train_seconds', float('nan')):.0f} s"
             f" on {record.get('train_tokens', '?')} tokens, held-out perplexity {record.get('heldout_perplexity', float('nan')):.1f}"]
    for prompt in GPT2_PROMPTS:
        start = time.perf_counter()
        pieces = list(gen.stream(prompt, max_new_tokens=40, temperature=0.7, top_k=40, seed=1))
        elapsed = time.perf_counter() - start
        lines.append(f"  {prompt + ''.join(pieces)!r}  ({len(pieces)} pieces, {elapsed * 1e3:.0f} ms)")
    return "\n".join(lines)


DEMOS: dict[str, Demo] = {"cnn": Demo(build_cnn, show_cnn), "lstm": Demo(build_lstm, show_lstm),
                          "gpt2": Demo(build_gpt2, show_gpt2)}
