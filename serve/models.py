"""The bundles a server hosts: loaded once, named after their directory unless given a name."""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reelrt.runtime import load
from reelrt.runtime.errors import InputError
from reelrt.runtime.tasks.backpressure import Line
from reelrt.runtime.tasks.generation.slots import SlotGenerator
from reelrt.serve.options import Options

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


@dataclass
class Hosted:
    """One bundle being served."""
    name: str
    path: Path
    model: Any                         # TextGenerator, ImageClassifier or TextClassifier
    slots: SlotGenerator | None = None
    line: Line | None = None           # classify requests in flight (generation waits in its scheduler's line)

    @property
    def task(self) -> str:
        return self.model.manifest.task

    @property
    def waiting(self) -> int:
        """Requests in line: for a generation slot, or for a classify turn."""
        return self.slots.waiting if self.slots is not None else self.line.count


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
            else:
                h.line = Line(options.max_waiting, f"{h.task} requests for {name}")
            hosted[name] = h
    except BaseException:
        close_all(hosted)
        raise
    return hosted


def close_all(hosted: dict[str, Hosted]) -> None:
    for h in hosted.values():
        if h.slots is not None:
            h.slots.close()
