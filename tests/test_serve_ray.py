"""The serve app on a local Ray cluster on loopback: two replicas answer, and killing one does
not fail requests beyond Ray's own retry."""
from __future__ import annotations

import json
import os
import time

import openai
import pytest

from reelrt.runtime import load
from tests.serving import free_port, request

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def ray_server(gpt2_tiny_bundle):
    ray = pytest.importorskip("ray")
    from ray import serve

    from reelrt.serve.options import Options
    from reelrt.serve.ray_app import deployment

    # a busy 2-core machine starts Ray's HTTP proxy slower than its default 5 s readiness check
    os.environ.setdefault("RAY_SERVE_PROXY_READY_CHECK_TIMEOUT_S", "120")
    os.environ.setdefault("RAY_SERVE_PROXY_HEALTH_CHECK_TIMEOUT_S", "60")
    ray.init(num_cpus=4, include_dashboard=False, _node_ip_address="127.0.0.1", log_to_driver=False)
    try:
        port = free_port()
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        serve.run(deployment({"npc": gpt2_tiny_bundle}, Options(parallel=2, threads=1), replicas=2),
                  name="reelrt", route_prefix="/")
        yield port
    finally:
        serve.shutdown()
        ray.shutdown()


def test_two_replicas_answer_and_one_killed_fails_nothing(ray_server, gpt2_tiny_bundle):
    import ray

    want = load(gpt2_tiny_bundle, threads=1).generate("The smith says", max_new_tokens=12)
    client = openai.OpenAI(base_url=f"http://127.0.0.1:{ray_server}/v1", api_key="unused", max_retries=0)
    pids = set()
    for _ in range(40):
        assert client.completions.create(model="npc", prompt="The smith says", max_tokens=12).choices[0].text == want
        pids.add(json.loads(request(ray_server, "GET", "/v2")[2])["parameters"]["replica"])
        if len(pids) == 2:
            break
    assert len(pids) == 2, "both replicas should have answered"

    replicas = [a for a in ray.util.list_named_actors(all_namespaces=True) if "SERVE_REPLICA" in a["name"]]
    assert len(replicas) == 2
    ray.kill(ray.get_actor(replicas[0]["name"], namespace=replicas[0]["namespace"]), no_restart=True)
    started = time.monotonic()
    answers = [client.completions.create(model="npc", prompt="The smith says", max_tokens=12).choices[0].text
               for _ in range(10)]
    assert answers == [want] * 10
    assert time.monotonic() - started < 60
