"""The same ASGI app on Ray Serve: replicas of it behind Ray's HTTP proxy, for a studio that
outgrows one box.

    reelrt serve bundles/gpt2-int4 --ray --replicas 2 --host 0.0.0.0 --api-key KEY
    # or, on a running cluster:  serve run reelrt.serve.ray_app:app bundles=gpt2=bundles/gpt2-int4 replicas=2

Each replica loads the bundles itself (paths must exist on every node) and keeps its own slots;
Ray routes each request to one replica and retries a request whose replica died before
answering.
"""
from __future__ import annotations

import os
import time

from ray import serve

from reelrt.serve.app import build_app
from reelrt.serve.models import parse_targets
from reelrt.serve.options import Options, from_strings


@serve.ingress()
class Reelrt:
    """One replica: the bundles loaded and the app built on the replica itself."""

    def __init__(self, targets: dict[str, str], options: Options):
        self.targets, self.options = targets, options

    def __serve_build_asgi_app__(self):
        return build_app(self.targets, self.options)

    def check_health(self) -> None:
        """Ray's periodic health check: every target is still on disk."""
        for path in self.targets.values():
            if not os.path.isdir(path):
                raise RuntimeError(f"bundle {path} is gone")


def deployment(targets: dict[str, str], options: Options, replicas: int = 1):
    """The bound Ray Serve application of these bundles."""
    cpus = float(options.threads or 1)
    return serve.deployment(Reelrt, name="reelrt", num_replicas=replicas,
                            ray_actor_options={"num_cpus": cpus},
                            max_ongoing_requests=options.parallel + options.max_waiting,
                            ).bind({k: str(v) for k, v in targets.items()}, options)


def app(args: dict[str, str]):
    """`serve run reelrt.serve.ray_app:app bundles=NAME=PATH,... replicas=N parallel=N prefill_chunk=N
    threads=N spin=1` (any field of Options, by name)."""
    targets = parse_targets([t for t in args.get("bundles", "").split(",") if t])
    options = from_strings({k: v for k, v in args.items() if k not in ("bundles", "replicas")})
    return deployment(targets, options, int(args.get("replicas", 1)))


def run_on_ray(targets: dict, options: Options, replicas: int) -> int:
    """Start (or join) a Ray cluster, deploy, and serve until interrupted."""
    import ray
    ray.init(address=os.environ.get("RAY_ADDRESS"), include_dashboard=False, ignore_reinit_error=True)
    host, port = options.host, options.port
    serve.start(http_options={"host": host, "port": port})
    serve.run(deployment(targets, options, replicas), name="reelrt", route_prefix="/")
    print(f"reelrt serving {', '.join(targets)} on Ray Serve at http://{host}:{port} ({replicas} replicas)")
    try:
        while True:
            time.sleep(3600)
    finally:
        serve.shutdown()
