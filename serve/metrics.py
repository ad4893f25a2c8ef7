"""The server's Prometheus metrics: one registry per app, so two apps in a process (tests, Ray
replicas) never mix their counts."""
from __future__ import annotations

import time
from collections import deque

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from reelrt.serve.models import Hosted

LATENCY = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
TOKEN_GAP = (0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.064, 0.128, 0.256, 0.512, 1)
WINDOW_S = 10.0


class Metrics:
    def __init__(self, hosted: dict[str, Hosted]):
        self.registry = r = CollectorRegistry()
        self.requests = Counter("reelrt_requests", "Requests answered, by model, route and status code",
                                ["model", "route", "code"], registry=r)
        self.latency = Histogram("reelrt_request_seconds", "Time from request to the end of its answer",
                                 ["model", "route"], buckets=LATENCY, registry=r)
        self.first_token = Histogram("reelrt_time_to_first_token_seconds", "Time from request to its first token",
                                     ["model"], buckets=LATENCY, registry=r)
        self.token_gap = Histogram("reelrt_inter_token_seconds", "Time between a stream's tokens",
                                   ["model"], buckets=TOKEN_GAP, registry=r)
        self.prompt_tokens = Counter("reelrt_prompt_tokens", "Prompt tokens received", ["model"], registry=r)
        self.cached_tokens = Counter("reelrt_prompt_cached_tokens", "Prompt tokens reused from a slot's cache",
                                     ["model"], registry=r)
        self.tokens = Counter("reelrt_generated_tokens", "Tokens generated", ["model"], registry=r)
        rate = Gauge("reelrt_tokens_per_second", f"Tokens generated per second over the last {WINDOW_S:g} s",
                     ["model"], registry=r)
        waiting = Gauge("reelrt_queue_depth", "Requests waiting for a generation slot or a classify turn",
                        ["model"], registry=r)
        active = Gauge("reelrt_active_slots", "Generation slots in use", ["model"], registry=r)
        finished = Gauge("reelrt_finished_generations", "Generations ended, by reason (stop, length, cancelled,"
                         " error)", ["model", "reason"], registry=r)
        self._recent: dict[str, deque[tuple[float, int]]] = {}
        for name, h in hosted.items():
            self._recent[name] = deque()
            rate.labels(name).set_function(lambda name=name: self._rate(name))
            waiting.labels(name).set_function(lambda h=h: h.waiting)
            if h.slots is not None:
                active.labels(name).set_function(lambda s=h.slots: s.active)
                for reason in ("stop", "length", "cancelled", "error"):
                    finished.labels(name, reason).set_function(lambda s=h.slots, r=reason: s.finished[r])

    def generated(self, model: str, n: int = 1) -> None:
        self.tokens.labels(model).inc(n)
        recent = self._recent[model]
        now = time.monotonic()
        recent.append((now, n))
        while recent and recent[0][0] < now - WINDOW_S:
            recent.popleft()

    def _rate(self, model: str) -> float:
        recent = self._recent[model]
        cutoff = time.monotonic() - WINDOW_S
        return sum(n for t, n in recent if t >= cutoff) / WINDOW_S

    def text(self) -> bytes:
        return generate_latest(self.registry)
