"""Soak: run classifications and generations for a long time and check that nothing grows.

    python -m reelrt.bench.soak --classifications 10000 --generations 500

A runtime inside a game loop runs for days; a leak of a few kilobytes per call is a crash
by the weekend. This loads one image classifier, one text classifier and (where the GPT-2
family is installed) one text generator, warms them up, then runs the workloads in
interleaved rounds, sampling the process's resident memory, open file descriptors and
thread count after every round. It prints a table and exits 1 when anonymous RSS grew by
more than --max-growth-mb after warm-up, or when file descriptors or threads grew at all.

Resident memory has two parts, and only one can leak. Anonymous memory (the heap, arenas,
buffers) is what a leak grows. File-backed memory is pages of memory-mapped files, the
model weights included: sampling feeds new tokens, whose embedding rows the kernel pages in
the first time they are read, so it grows towards the size of the embedding table. It is
bounded and the kernel reclaims it when memory runs short. The table shows both.

Bundles are taken from --image/--text/--generator, else built once under --workdir
(random-weight MobileNetV2, the 2000-word LSTM classifier and GPT-2 of --generator-config, by
default the 124M "gpt2"; needs the export extra).
"""
from __future__ import annotations

import argparse
import gc
import os
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import psutil

Step = Callable[[int], object]


@dataclass
class Workload:
    name: str
    count: int    # calls after warm-up
    step: Step    # step(i) makes call number i


@dataclass
class Sample:
    calls: int
    rss: int      # anonymous resident memory (all resident memory where the OS does not split it)
    file: int     # file-backed resident memory (memory-mapped weights), 0 where unknown
    fds: int
    threads: int


@dataclass
class Report:
    start: Sample                # before the first call (models loaded)
    warm: Sample                 # after warm-up
    end: Sample
    samples: list[Sample] = field(default_factory=list)
    max_growth: int = 4 << 20

    @property
    def growth(self) -> int:
        """RSS growth after warm-up: the end, or the highest later sample if higher."""
        return max(s.rss for s in [self.end, *self.samples]) - self.warm.rss

    @property
    def failures(self) -> list[str]:
        out = []
        if self.growth > self.max_growth:
            out.append(f"anonymous RSS grew {self.growth / 2**20:.1f} MB after warm-up (limit {self.max_growth / 2**20:.1f} MB)")
        if self.end.fds > self.warm.fds:
            out.append(f"open file descriptors grew from {self.warm.fds} to {self.end.fds}")
        if self.end.threads > self.warm.threads:
            out.append(f"threads grew from {self.warm.threads} to {self.end.threads}")
        return out

    def table(self) -> str:
        mb = lambda n: f"{n / 2**20:.1f}"
        rows = [("start (loaded)", self.start), ("after warm-up", self.warm), ("end", self.end)]
        lines = ["| point | calls | anonymous RSS MB | file-backed RSS MB | open fds | threads |",
                 "| --- | ---: | ---: | ---: | ---: | ---: |"]
        lines += [f"| {name} | {s.calls} | {mb(s.rss)} | {mb(s.file)} | {s.fds} | {s.threads} |" for name, s in rows]
        lines.append(f"| growth after warm-up (highest sample) | | {mb(self.growth)} | {mb(self.end.file - self.warm.file)} |"
                     f" {self.end.fds - self.warm.fds:+d} | {self.end.threads - self.warm.threads:+d} |")
        return "\n".join(lines)


def sample(calls: int) -> Sample:
    proc = psutil.Process()
    rss, file = resident()
    return Sample(calls, rss, file, proc.num_fds(), proc.num_threads())


def resident(pid: int | None = None) -> tuple[int, int]:
    """(anonymous, file-backed) resident bytes of a process (this one by default) from Linux's
    /proc/PID/status; elsewhere (all RSS, 0)."""
    try:
        with open(f"/proc/{pid or 'self'}/status") as f:
            kb = {line.split(":")[0]: int(line.split()[1]) for line in f if line.startswith(("RssAnon", "RssFile"))}
        return kb["RssAnon"] << 10, kb["RssFile"] << 10
    except (OSError, KeyError):
        return psutil.Process(pid).memory_info().rss, 0


def soak(workloads: list[Workload], warmup_fraction: float = 0.1, rounds: int = 50, max_growth_mb: float = 4.0,
         progress: bool = False) -> Report:
    """Warm up (warmup_fraction of each workload's count), then run `rounds` interleaved rounds,
    sampling after each one."""
    from tqdm import tqdm

    # the bar exists before the first sample: its monitor thread is not the runtime's
    bar = tqdm(total=rounds, desc="soak", unit="round", file=sys.stderr, disable=not progress)
    gc.collect()
    start = sample(0)
    calls = 0
    for w in workloads:
        for i in range(max(1, int(w.count * warmup_fraction))):
            w.step(i)
            calls += 1
    gc.collect()
    warm = sample(calls)
    samples = []
    done = {w.name: 0 for w in workloads}
    for r in range(rounds):
        for w in workloads:
            target = w.count * (r + 1) // rounds
            while done[w.name] < target:
                w.step(done[w.name])
                done[w.name] += 1
                calls += 1
        samples.append(sample(calls))
        bar.update()
    bar.close()
    gc.collect()
    return Report(start, warm, sample(calls), samples, int(max_growth_mb * 2**20))


# -- the workloads ------------------------------------------------------------------------

def image_workload(bundle: str | os.PathLike, count: int) -> Workload:
    """Classify frames of several sizes (a 1080p one among them), one at a time and in pairs."""
    from reelrt.runtime import load
    clf = load(bundle, device="cpu")
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 256, shape, np.uint8) for shape in [(1080, 1920, 3), (240, 320, 3), (64, 64, 3), (100, 80)]]
    return Workload("image classifications", count,
                    lambda i: clf.classify(frames[i % 4] if i % 5 else frames[:2], top_k=3))


def text_workload(bundle: str | os.PathLike, count: int) -> Workload:
    from reelrt.runtime import load
    clf = load(bundle, device="cpu")
    words = "the ship warped away captain on the bridge a quiet evening with a good book and tea".split()
    texts = [" ".join(words[j % len(words)] for j in range(i, i + 3 + i % 40)) for i in range(64)]
    return Workload("text classifications", count,
                    lambda i: clf.classify(texts[i % 64] if i % 7 else texts[i % 57:i % 57 + 8]))


def generation_workload(bundle: str | os.PathLike, count: int) -> Workload:
    """Whole generations, sampled and greedy, and streams abandoned after a few pieces."""
    from reelrt.runtime import load
    gen = load(bundle, device="cpu")
    prompts = ["The dragon said", "Once upon a time", "In the tavern the bard sang of", "Level up!"]

    def step(i: int) -> object:
        prompt = prompts[i % len(prompts)]
        if i % 3 == 2:  # a player who walks away mid-answer
            stream = gen.stream(prompt, max_new_tokens=32, temperature=0.8, top_p=0.9, seed=i)
            return [piece for _, piece in zip(range(3), stream)]
        return gen.generate(prompt, max_new_tokens=32, temperature=0.8 * (i % 2), top_k=40, seed=i)
    return Workload("generations", count, step)


def build_bundle(kind: str, out: Path, generator_config: str = "gpt2") -> Path:
    """The soak's default bundle of a kind, built once under out (random weights: memory, not
    accuracy, is what the soak tests)."""
    if (out / "manifest.json").exists():
        return out
    if kind == "image":
        from reelrt.export.cnn import export_cnn
        return export_cnn("mobilenetv2", out)
    if kind == "text":
        from reelrt.export.lstm import export_bundle
        from reelrt.models.lstm import random_checkpoint
        return export_bundle(random_checkpoint(2000, 128), out, "soak: random weights", random_weights=True)
    from reelrt.export.gpt2 import export
    return export(out, config=generator_config)


def _has_generator() -> bool:
    import importlib.util
    return importlib.util.find_spec("reelrt.runtime.tasks.generation.generator") is not None


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m reelrt.bench.soak", description=__doc__.split("\n\n")[0])
    p.add_argument("--classifications", type=int, default=10_000, help="image and text classifications, each")
    p.add_argument("--generations", type=int, default=500)
    p.add_argument("--image", help="image-classification bundle")
    p.add_argument("--text", help="text-classification bundle")
    p.add_argument("--generator", help="text-generation bundle")
    p.add_argument("--generator-config", default="gpt2", choices=["gpt2", "distilgpt2", "tiny"],
                   help="GPT-2 size built when --generator is not given")
    p.add_argument("--workdir", default="bundles/soak", help="where missing bundles are built")
    p.add_argument("--max-growth-mb", type=float, default=4.0, help="allowed RSS growth after warm-up")
    p.add_argument("--rounds", type=int, default=50, help="samples taken after warm-up")
    args = p.parse_args(argv)

    given = {"image": args.image, "text": args.text, "generator": args.generator}
    needed = ["image", "text"] + (["generator"] if args.generations and _has_generator() else [])
    default_names = {"image": "mobilenetv2", "text": "lstm", "generator": args.generator_config}
    bundles = {k: given[k] or build_bundle(k, Path(args.workdir) / default_names[k], args.generator_config)
               for k in needed}
    workloads = [image_workload(bundles["image"], args.classifications),
                 text_workload(bundles["text"], args.classifications)]
    if "generator" in bundles and args.generations:
        workloads.append(generation_workload(bundles["generator"], args.generations))
    report = soak(workloads, rounds=args.rounds, max_growth_mb=args.max_growth_mb, progress=True)

    print(f"soak: {', '.join(f'{w.count} {w.name}' for w in workloads)} after 10% warm-up;"
          f" python threads {threading.active_count()}")
    for name, path in bundles.items():
        print(f"  {name}: {path}")
    print(report.table())
    for failure in report.failures:
        print("FAIL:", failure)
    if not report.failures:
        print(f"OK: anonymous RSS within {args.max_growth_mb} MB after warm-up, no file descriptor or thread growth")
    return 1 if report.failures else 0


if __name__ == "__main__":
    sys.exit(main())
