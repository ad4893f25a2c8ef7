"""Starting a server from the command line: uvicorn on one machine, or Ray Serve."""
from __future__ import annotations

import argparse
import ipaddress
import os

from reelrt.runtime.errors import InputError
from reelrt.serve.models import Options, parse_targets


def options_from(args: argparse.Namespace) -> Options:
    api_key = args.api_key or os.environ.get("REELRT_API_KEY") or None
    if not _loopback(args.host) and not api_key:
        raise InputError(f"--host {args.host} is reachable from other machines: pass --api-key (or set REELRT_API_KEY)")
    for name in ("parallel", "prefill_chunk", "max_waiting", "max_tokens", "max_body_bytes", "max_image_pixels"):
        if getattr(args, name) < 1:
            raise InputError(f"--{name.replace('_', '-')} must be at least 1")
    if args.timeout <= 0:
        raise InputError("--timeout must be positive")
    return Options(parallel=args.parallel, prefill_chunk=args.prefill_chunk, threads=args.threads, spin=args.spin,
                   max_waiting=args.max_waiting, max_body_bytes=args.max_body_bytes, max_prompt_tokens=args.max_prompt_tokens,
                   max_tokens=args.max_tokens, max_image_pixels=args.max_image_pixels, timeout_s=args.timeout,
                   api_key=api_key)


def serve(args: argparse.Namespace) -> int:
    targets = parse_targets(args.bundles)
    options = options_from(args)
    for name, path in targets.items():  # a bad bundle is one line at start-up, not a failed server
        from reelrt.runtime import open_bundle
        open_bundle(path)
    if args.ray:
        from reelrt.serve.ray_app import run_on_ray
        return run_on_ray(targets, options, host=args.host, port=args.port, replicas=args.replicas)
    import uvicorn
    from reelrt.serve.app import build_app
    uvicorn.run(build_app(targets, options), host=args.host, port=args.port, log_level="warning",
                timeout_graceful_shutdown=5)
    return 0


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
