"""`reelrt serve`: the serving stage's subcommand; its options are serve/options.py's fields."""
from __future__ import annotations

from reelrt.parsing import command
from reelrt.serve.options import add_arguments


def add_parsers(sub) -> None:
    p = command(sub, "serve", "reelrt.serve.run:serve", "serve bundles over HTTP (OpenAI completions and chat, Open"
                " Inference Protocol v2, /v1/classify, /metrics)",
                description="Serve bundles over HTTP. Each BUNDLE is named after its directory, or NAME=BUNDLE."
                            " Needs the serve extra: pip install 'reelrt[serve]'.")
    p.add_argument("bundles", nargs="+", metavar="BUNDLE", help="bundle directory, or NAME=BUNDLE")
    add_arguments(p)
    p.add_argument("--ray", action="store_true", help="deploy on Ray Serve (a running cluster, or a local one)")
    p.add_argument("--replicas", type=int, default=1, help="with --ray: replicas of the app (default: %(default)s)")
