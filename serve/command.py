"""`reelrt serve`: the serving stage's subcommand."""
from __future__ import annotations

import argparse

from reelrt.parsing import command


def add_parsers(sub) -> None:
    p = command(sub, "serve", "reelrt.serve.run:serve", "serve bundles over HTTP (OpenAI completions, Open Inference"
                " Protocol v2, /v1/classify, /metrics)",
                description="Serve bundles over HTTP. Each BUNDLE is named after its directory, or NAME=BUNDLE.")
    p.add_argument("bundles", nargs="+", metavar="BUNDLE", help="bundle directory, or NAME=BUNDLE")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default loopback; elsewhere needs --api-key)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--parallel", "-np", type=int, default=4, metavar="N", help="generation slots per GPT-2 bundle")
    p.add_argument("--prefill-chunk", type=int, default=16, metavar="TOKENS",
                   help="prompt tokens prefilled per decode step while other slots decode: smaller keeps their"
                        " inter-token latency even, larger gives a new request its first token sooner (default 16)")
    p.add_argument("--threads", type=int, default=None, help="intra-op threads per bundle (default: one per core)")
    p.add_argument("--spin", action=argparse.BooleanOptionalAction, default=False,
                   help="let idle worker threads busy-wait between decode steps: lower latency on a machine"
                        " whose cores are the server's own (default: off, they sleep and leave the CPU to others)")
    p.add_argument("--api-key", default=None, help="require Authorization: Bearer KEY (default: $REELRT_API_KEY)")
    p.add_argument("--max-waiting", type=int, default=64, help="requests queued per bundle before 429")
    p.add_argument("--max-tokens", type=int, default=1024, help="the most new tokens one completion may ask for")
    p.add_argument("--max-prompt-tokens", type=int, default=None, help="the longest prompt accepted")
    p.add_argument("--max-body-bytes", type=int, default=8 << 20)
    p.add_argument("--max-image-pixels", type=int, default=4096 * 4096)
    p.add_argument("--timeout", type=float, default=120.0, help="seconds a request may take, queue included")
    p.add_argument("--ray", action="store_true", help="deploy on Ray Serve (a running cluster, or a local one)")
    p.add_argument("--replicas", type=int, default=1, help="with --ray: replicas of the app")
