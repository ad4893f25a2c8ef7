"""What structured output costs per token, and how many model runs a JSON answer takes.

    python -m reelrt.bench.structured BUNDLE [--requests 12] [--threads 2] [--json F]

Request by request, on one SlotGenerator with one slot, two sides alternate with the same seed:
- json: an NPC's answer under a JSON schema (nested object, enum, array; temperature 1);
- free: unconstrained sampled text (end-of-text ignored) of as many tokens as that JSON answer.
The constraint's own time is what the scheduler's thread spends in it per token (waiting for
the mask, which llguidance computes on a worker thread while the model runs, accepting the
token, asking for forced tokens); it is set against the free side's decode step. Model runs per
token count the decode steps and the prefill-like steps that feed forced tokens (jump-forward)
with the sampled one; the free side needs one decode step per token.
"""
from __future__ import annotations

import argparse
import json
import statistics
import threading
import time
from pathlib import Path

from reelrt.runtime import load
from reelrt.runtime.tasks.generation.grammar import ConstraintSpec
from reelrt.runtime.tasks.generation.request import Finish
from reelrt.runtime.tasks.generation.slots import SlotGenerator

PROMPT = "The blacksmith looks up from the anvil and answers:"
SCHEMA = {"type": "object", "additionalProperties": False, "required": ["mood", "line", "stats", "items"],
          "properties": {"mood": {"enum": ["angry", "calm", "sly", "weary"]},
                         "line": {"type": "string", "maxLength": 48},
                         "stats": {"type": "object", "additionalProperties": False, "required": ["hp", "gold"],
                                   "properties": {"hp": {"type": "integer", "minimum": 0, "maximum": 999},
                                                  "gold": {"type": "integer", "minimum": 0, "maximum": 99}}},
                         "items": {"type": "array", "maxItems": 3,
                                   "items": {"enum": ["sword", "shield", "horseshoe", "nail"]}}}}


class Timed:
    """A constraint whose calls on the scheduler's thread are timed (the mask's background
    computation is not: it overlaps the model run)."""

    def __init__(self, inner, spent: list[float]):
        self.inner, self.spent = inner, spent

    def __getattr__(self, name):
        method = getattr(self.inner, name)

        def timed(*args):
            start = time.perf_counter()
            try:
                return method(*args)
            finally:
                self.spent[0] += time.perf_counter() - start
        return timed


def run(slots: SlotGenerator, req) -> tuple[list[int], float, int, int]:
    """(tokens, seconds, decode steps, prefills) of one request on an idle scheduler."""
    events: list = []
    scheduler = slots.scheduler
    steps, prefills = scheduler.steps, scheduler.prefills
    start = time.perf_counter()
    done = threading.Event()
    slots.submit(req, lambda e: (events.append(e), isinstance(e, Finish) and done.set()))
    done.wait()
    seconds = time.perf_counter() - start
    return ([e.token for e in events if not isinstance(e, Finish)], seconds, scheduler.steps - steps,
            scheduler.prefills - prefills)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("bundle")
    p.add_argument("--requests", type=int, default=12)
    p.add_argument("--max-tokens", type=int, default=160)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--json", help="write the results here")
    args = p.parse_args(argv)
    gen = load(args.bundle, threads=args.threads, spin=True)
    make = gen.constraint(ConstraintSpec("json_schema", json.dumps(SCHEMA)))
    spent = [0.0]
    ids = gen.encode(PROMPT)
    rows = []
    with SlotGenerator(gen, slots=1) as slots:
        for seed in range(-1, args.requests):   # seed -1: a warm-up pair, not counted
            s = max(seed, 0)
            spent[0] = 0.0
            constrained = gen.request(ids, args.max_tokens, temperature=1.0, seed=s,
                                      constraint=lambda: Timed(make(), spent))
            tokens, seconds, steps, prefills = run(slots, constrained)
            constraint_s = spent[0]
            text = gen.tokenizer.decode(tokens)
            free = gen.request(ids, len(tokens), temperature=1.0, seed=s, stop_token_ids=())
            free_tokens, free_s, free_steps, _ = run(slots, free)
            if seed >= 0:
                json.loads(text)   # a JSON answer, or the benchmark is void
                rows.append({"tokens": len(tokens), "json_s": seconds, "runs": steps + prefills - 1,
                             "constraint_s": constraint_s, "free_s": free_s, "free_steps": free_steps})
    tokens = sum(r["tokens"] for r in rows)
    step_ms = 1e3 * statistics.median((r["free_s"] / r["tokens"]) for r in rows)   # one decode step per token
    overhead_ms = 1e3 * sum(r["constraint_s"] for r in rows) / tokens
    report = {"bundle": str(Path(args.bundle).resolve()), "requests": len(rows), "tokens": tokens,
              "threads": args.threads, "schema": SCHEMA,
              "free_ms_per_token": round(step_ms, 3),
              "json_ms_per_token": round(1e3 * statistics.median(r["json_s"] / r["tokens"] for r in rows), 3),
              "constraint_ms_per_token": round(overhead_ms, 3),
              "constraint_share_of_a_decode_step": round(overhead_ms / step_ms, 4),
              "model_runs_per_token": round(sum(r["runs"] for r in rows) / tokens, 4),
              "rows": rows}
    print(f"{len(rows)} JSON answers, {tokens} tokens, {args.threads} threads")
    print("| side | ms/token (median of requests) | model runs per token |")
    print("| --- | ---: | ---: |")
    print(f"| free | {report['free_ms_per_token']:.2f} | 1.00 |")
    print(f"| json | {report['json_ms_per_token']:.2f} | {report['model_runs_per_token']:.2f} |")
    print(f"constraint on the scheduler's thread: {overhead_ms:.3f} ms per token,"
          f" {100 * overhead_ms / step_ms:.1f}% of a decode step (goal: under 10%)")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
