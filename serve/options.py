"""Serve's options, their defaults and their help, written once: `reelrt serve` builds its flags
from these fields (serve/command.py), Ray's `serve run` target and tests build Options directly.
Imports nothing heavy, so `reelrt --help` stays quick."""
from __future__ import annotations

import argparse
import ipaddress
import logging
from dataclasses import dataclass, field, fields
from typing import Any

from reelrt.runtime.errors import InputError
from reelrt.runtime.tasks.generation.defaults import MAX_WAITING, PREFILL_CHUNK

LOG_LEVELS = ("debug", "info", "warning", "error")


def _flag(*names: str, help: str, **argparse_kwargs: Any) -> dict:
    return {"flags": names, "help": help, "argparse": argparse_kwargs}


@dataclass
class Options:
    """How a server runs its bundles and what it accepts from a request."""
    host: str = field(default="127.0.0.1", metadata=_flag(
        "--host", help="address to bind (loopback; any other address needs --api-key)"))
    port: int = field(default=8000, metadata=_flag("--port", help="port to listen on"))
    parallel: int = field(default=4, metadata=_flag(
        "--parallel", "-np", metavar="N", help="generation slots per GPT-2 bundle"))
    prefill_chunk: int = field(default=PREFILL_CHUNK, metadata=_flag(
        "--prefill-chunk", metavar="TOKENS", help="prompt tokens prefilled per decode step while other slots"
        " decode: smaller keeps their inter-token latency even, larger gives a new request its first token sooner"))
    threads: int | None = field(default=None, metadata=_flag(
        "--threads", help="intra-op threads per bundle (none given: one per physical core)"))
    spin: bool = field(default=False, metadata=_flag(
        "--spin", action=argparse.BooleanOptionalAction, help="let idle worker threads busy-wait between decode"
        " steps: lower latency on a machine whose cores are the server's own"))
    api_key: str | None = field(default=None, metadata=_flag(
        "--api-key", help="require Authorization: Bearer KEY on every route but health (none given:"
        " $REELRT_API_KEY)"))
    max_waiting: int = field(default=MAX_WAITING, metadata=_flag(
        "--max-waiting", help="requests waiting per bundle (for a slot, or a classify turn) before 429"))
    max_tokens: int = field(default=1024, metadata=_flag(
        "--max-tokens", help="the most new tokens one completion may ask for (the model's context also bounds it)"))
    max_prompt_tokens: int | None = field(default=None, metadata=_flag(
        "--max-prompt-tokens", help="the longest prompt accepted (none given: what the model's context holds)"))
    max_body_bytes: int = field(default=8 << 20, metadata=_flag("--max-body-bytes", help="the largest request body"))
    max_image_pixels: int = field(default=4096 * 4096, metadata=_flag(
        "--max-image-pixels", help="the largest image a classify request may send"))
    max_batch: int = 64                # prompts (or choices) per completion, images or texts per classify
    timeout_s: float = field(default=120.0, metadata=_flag(
        "--timeout", metavar="SECONDS", help="seconds a request may take, its wait in line included"))
    log_level: str = field(default="warning", metadata=_flag(
        "--log-level", choices=LOG_LEVELS, help="info: a start-up line and one access-log line per request"))

    def __post_init__(self):
        for name in ("port", "parallel", "prefill_chunk", "max_waiting", "max_tokens", "max_body_bytes",
                     "max_image_pixels", "max_batch"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InputError(f"{_flag_of(name)} must be a positive integer, not {value!r}")
        for name in ("threads", "max_prompt_tokens"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise InputError(f"{_flag_of(name)} must be a positive integer, not {value!r}")
        if not self.timeout_s > 0:
            raise InputError(f"--timeout must be positive, not {self.timeout_s!r}")
        if self.log_level not in LOG_LEVELS:
            raise InputError(f"--log-level must be one of {', '.join(LOG_LEVELS)}, not {self.log_level!r}")
        if not loopback(self.host) and not self.api_key:
            raise InputError(f"--host {self.host} is reachable from other machines: pass --api-key (or set"
                             " REELRT_API_KEY)")

    @property
    def logging_level(self) -> int:
        return getattr(logging, self.log_level.upper())


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """One flag per option, its default shown in --help."""
    for f in fields(Options):
        if "flags" not in f.metadata:
            continue
        kwargs = dict(f.metadata["argparse"])
        if "action" not in kwargs and f.type in ("int", "int | None"):
            kwargs["type"] = int
        elif "action" not in kwargs and f.type == "float":
            kwargs["type"] = float
        shown = "" if f.default is None else " (default: %(default)s)"
        parser.add_argument(*f.metadata["flags"], dest=f.name, default=f.default, help=f.metadata["help"] + shown,
                            **kwargs)


def from_arguments(args: argparse.Namespace, **given: Any) -> Options:
    """The Options that parsed flags (and `given` values) describe; InputError for a bad one."""
    values = {f.name: getattr(args, f.name) for f in fields(Options) if "flags" in f.metadata}
    return Options(**{**values, **given})


def from_strings(values: dict[str, str]) -> Options:
    """Options from NAME=VALUE strings (Ray's `serve run` arguments), each read as its field's type."""
    known = {f.name: f for f in fields(Options)}
    out: dict[str, Any] = {}
    for name, text in values.items():
        if name not in known:
            raise InputError(f"unknown option {name!r}; known: {', '.join(sorted(known))}")
        kind = known[name].type
        try:
            out[name] = (text.lower() in ("1", "true", "yes") if kind == "bool" else int(text) if "int" in kind
                         else float(text) if kind == "float" else text)
        except ValueError:
            raise InputError(f"option {name}={text!r} is not a {kind}") from None
    return Options(**out)


def loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _flag_of(name: str) -> str:
    f = next(f for f in fields(Options) if f.name == name)
    return f.metadata["flags"][0] if "flags" in f.metadata else name
