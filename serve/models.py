"""The bundles a server hosts: loaded once, named after their directory unless given a name."""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reelrt.runtime import load
from reelrt.runtime.errors import InputError
from reelrt.runtime.tasks.generation.slots import PREFILL_CHUNK, SlotGenerator

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


@dataclass
class Options:
    """How a server runs its bundles and what it accepts from a request."""
    parallel: int = 4                  # generation slots per generation bundle
    prefill_chunk: int = PREFILL_CHUNK  # prompt tokens run per decode step while other slots decode
    threads: int | None = None         # intra-op threads per bundle (None: the runtime's default)
    spin: bool = False                 # idle worker threads busy-wait between runs (a core of their own)
    max_waiting: int = 64              # requests waiting for a slot (per bundle) before 429
    max_body_bytes: int = 8 << 20      # a request body (an encoded image is the largest)
    max_prompt_tokens: int | None = None  # None: the model's context less max_tokens
    max_tokens: int = 1024             # new tokens per completion
    max_image_pixels: int = 4096 * 4096
    max_batch: int = 64                # prompts per completion, images or texts per classify
    timeout_s: float = 120.0           # a request's whole life, queue included
    api_key: str | None = None         # Bearer token required on every route but health


@dataclass
class Hosted:
    """One bundle being served."""
    name: str
    path: Path
    model: Any                         # TextGenerator, ImageClassifier or TextClassifier
    slots: SlotGenerator | None = None
    busy: int = field(default=0)       # classify requests in flight

    @property
    def task(self) -> str:
        return self.model.manifest.task


def parse_targets(targets: list[str]) -> dict[str, Path]:
    """BUNDLE or NAME=BUNDLE arguments -> {name: path}; a name is the directory's unless given."""
    out: dict[str, Path] = {}
    for target in targets:
        name, sep, path = target.partition("=")
        if not sep:
            name, path = Path(target).resolve().name, target
        if not _NAME.match(name):
            raise InputError(f"model name {name!r} must be letters, digits, '.', '_' or '-' (1-128 of them)")
        if name in out:
            raise InputError(f"two bundles are named {name!r}: give one NAME=PATH")
        out[name] = Path(path)
    if not out:
        raise InputError("name at least one bundle to serve")
    return out


def load_all(targets: dict[str, os.PathLike], options: Options) -> dict[str, Hosted]:
    """Load every bundle; generation bundles get their slots (and worker thread) here."""
    hosted: dict[str, Hosted] = {}
    try:
        for name, path in targets.items():
            model = load(path, threads=options.threads, spin=options.spin)
            h = Hosted(name, Path(path), model)
            if h.task == "text-generation":
                h.slots = SlotGenerator(model, slots=options.parallel, max_waiting=options.max_waiting,
                                        prefill_chunk=options.prefill_chunk)
            hosted[name] = h
    except BaseException:
        close_all(hosted)
        raise
    return hosted


def close_all(hosted: dict[str, Hosted]) -> None:
    for h in hosted.values():
        if h.slots is not None:
            h.slots.close()
