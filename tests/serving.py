"""Start `reelrt serve` as a real process on a free loopback port, for the serve tests."""
from __future__ import annotations

import contextlib
import http.client
import json
import sys

from reelrt.bench.serving import free_port, server


@contextlib.contextmanager
def running_server(*args: str, timeout: float = 90.0):
    """`reelrt serve ARGS --port P`; yields the port once /v2/health/ready answers."""
    port = free_port()
    with server([sys.executable, "-m", "reelrt", "serve", *args, "--port", str(port)], port, "/v2/health/ready",
                timeout):
        yield port


def request(port: int, method: str, path: str, body: bytes | dict | None = None,
            headers: dict | None = None) -> tuple[int, dict, bytes]:
    """(status, headers, body) of one raw HTTP request."""
    if isinstance(body, dict):
        body = json.dumps(body).encode()
        headers = {"Content-Type": "application/json", **(headers or {})}
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        conn.close()


def metric(port: int, name: str, headers: dict | None = None, **labels: str) -> float:
    """One sample of the server's /metrics (0 when absent)."""
    for line in request(port, "GET", "/metrics", headers=headers)[2].decode().splitlines():
        sample, _, value = line.rpartition(" ")
        if sample.split("{")[0] == name and all(f'{k}="{v}"' in sample for k, v in labels.items()):
            return float(value)
    return 0.0
