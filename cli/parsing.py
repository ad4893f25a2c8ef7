"""What every stage's command.py shares to declare its subcommands: the `command(...)` helper, a
parser whose errors are one line, and argument types that refuse impossible numbers."""
from __future__ import annotations

import argparse
import math


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors are one line and exit code 2, like every other error
    of the command line (`reelrt X --help` shows the usage)."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message}\n")


def command(sub, name: str, handler: str, help: str, description: str | None = None) -> argparse.ArgumentParser:
    """One subcommand whose handler ("module:function") is imported only when it runs."""
    p = sub.add_parser(name, help=help, description=description or help)
    p.set_defaults(handler=handler)
    return p


def _number(kind: type, low: float, inclusive: bool, what: str):
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}") from None
        if not math.isfinite(value) or value < low or (value == low and not inclusive):
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}")
        return value
    parse.__name__ = what  # argparse names the type in its messages
    return parse


positive_int = _number(int, 1, True, "a positive integer")
non_negative_int = _number(int, 0, True, "a non-negative integer")
positive_float = _number(float, 0, False, "a positive number")
non_negative_float = _number(float, 0, True, "a non-negative number")
