"""What every stage's command.py shares to declare its subcommands."""
from __future__ import annotations

import argparse


def command(sub, name: str, handler: str, help: str, description: str | None = None) -> argparse.ArgumentParser:
    """One subcommand whose handler ("module:function") is imported only when it runs."""
    p = sub.add_parser(name, help=help, description=description or help)
    p.set_defaults(handler=handler)
    return p
