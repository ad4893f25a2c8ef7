"""Starting a server from the command line: uvicorn on one machine, or Ray Serve."""
from __future__ import annotations

import argparse
import logging
import os

from reelrt.runtime.errors import BackendUnavailableError
from reelrt.serve.options import from_arguments
from reelrt.serve.models import parse_targets

SERVE_EXTRA = "reelrt serve needs the serve extra: pip install 'reelrt[serve]'"


def serve(args: argparse.Namespace) -> int:
    targets = parse_targets(args.bundles)
    options = from_arguments(args, api_key=args.api_key or os.environ.get("REELRT_API_KEY") or None)
    for name, path in targets.items():  # a bad bundle is one line at start-up, not a failed server
        from reelrt.runtime import open_bundle
        open_bundle(path)
    if args.ray:
        try:
            from reelrt.serve.ray_app import run_on_ray
        except ImportError as e:
            raise BackendUnavailableError(f"reelrt serve --ray needs the ray extra: pip install 'reelrt[ray]'"
                                          f" ({e})") from None
        return run_on_ray(targets, options, replicas=args.replicas)
    try:
        import uvicorn

        from reelrt.serve.app import build_app
    except ImportError as e:
        raise BackendUnavailableError(f"{SERVE_EXTRA} ({e})") from None
    logging.basicConfig(level=options.logging_level, format="%(levelname)s: %(message)s")
    uvicorn.run(build_app(targets, options), host=options.host, port=options.port, log_level=options.log_level,
                access_log=options.logging_level <= logging.INFO, timeout_graceful_shutdown=5)
    return 0
