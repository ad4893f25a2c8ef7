"""The OpenAI completions API over a bundle's generation slots.

POST /v1/completions takes `prompt` (a string, token ids, or a list of either), `max_tokens`,
`temperature`, `top_p`, `seed`, `stop`, `stream`, and as extensions `top_k`,
`repetition_penalty` and `ignore_eos`. Parameters left out take the bundle's generation
defaults (greedy unless the manifest says otherwise), so an answer is the one
`TextGenerator.generate` gives for the same arguments.

Each prompt becomes one job in the bundle's SlotGenerator; the worker thread hands its
events to this event loop, which turns tokens into text (stop strings cut there, and cancel
the job), and writes JSON or server-sent events. A client that goes away cancels its jobs at
once, which frees their slots before the next decode step.
"""
from __future__ import annotations

import asyncio
import json
import time
import uuid
from dataclasses import dataclass
from typing import Any, AsyncIterator

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from reelrt.runtime.tasks.generation.pieces import TextPieces, check_stops
from reelrt.runtime.tasks.generation.request import Finish
from reelrt.runtime.tasks.generation.scheduler import Job
from reelrt.serve.http import ApiError
from reelrt.serve.metrics import Metrics
from reelrt.serve.models import Hosted
from reelrt.serve.options import Options

# OpenAI parameters accepted with their no-op value only (anything else is refused, not ignored)
_NEUTRAL = {"n": 1, "best_of": 1, "echo": False, "logprobs": None, "presence_penalty": 0, "frequency_penalty": 0,
            "suffix": None, "logit_bias": None}
_KNOWN = {"model", "prompt", "max_tokens", "temperature", "top_p", "top_k", "seed", "stop", "stream",
          "stream_options", "repetition_penalty", "ignore_eos", "user", *_NEUTRAL}
_POLL_S = 0.25  # how often a quiet request looks for a client that went away or a deadline


@dataclass
class _Choice:
    index: int
    job: Job
    text: TextPieces
    finish: str | None = None
    tokens: int = 0
    cached: int = 0


def parse(body: dict[str, Any], hosted: Hosted, options: Options) -> tuple[list[list[int]], dict, list[str], bool]:
    """(prompts as ids, sampling arguments, stop strings, stream) from a completions body; ApiError(400) otherwise."""
    unknown = sorted(set(body) - _KNOWN)
    if unknown:
        raise ApiError(400, f"unknown parameters {unknown}")
    for key, neutral in _NEUTRAL.items():
        if body.get(key) is not None and body[key] != neutral:
            raise ApiError(400, f"{key}={body[key]!r} is not supported (only {neutral!r})")
    gen = hosted.model
    prompts = _prompts(body.get("prompt"), gen)
    if len(prompts) > options.max_batch:
        raise ApiError(400, f"{len(prompts)} prompts, over the limit of {options.max_batch} per request")
    limit = options.max_prompt_tokens
    for ids in prompts:
        if limit is not None and len(ids) > limit:
            raise ApiError(400, f"the prompt has {len(ids)} tokens, over the limit of {limit}")
    max_tokens = body.get("max_tokens")
    if max_tokens is not None and (not isinstance(max_tokens, int) or isinstance(max_tokens, bool)
                                   or not 1 <= max_tokens <= options.max_tokens):
        raise ApiError(400, f"max_tokens must be an int in [1, {options.max_tokens}], not {max_tokens!r}")
    stop = body.get("stop")
    try:
        stops = check_stops([] if stop is None else stop)
    except Exception as e:
        raise ApiError(400, str(e)) from None
    if len(stops) > 4:
        raise ApiError(400, "at most 4 stop strings")
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise ApiError(400, f"stream must be true or false, not {stream!r}")
    ignore_eos = body.get("ignore_eos", False)
    if not isinstance(ignore_eos, bool):
        raise ApiError(400, f"ignore_eos must be true or false, not {ignore_eos!r}")
    params = dict(max_new_tokens=max_tokens, temperature=body.get("temperature"), top_p=body.get("top_p"),
                  top_k=body.get("top_k"), repetition_penalty=body.get("repetition_penalty"), seed=body.get("seed"),
                  stop_token_ids=() if ignore_eos else None)
    return prompts, params, stops, stream


def _prompts(prompt: Any, gen) -> list[list[int]]:
    """A string, a list of token ids, or a list of strings or of id lists -> a list of id lists."""
    def one(p) -> list[int]:
        if isinstance(p, str):
            if not p:
                raise ApiError(400, "a prompt must not be empty")
            return gen.encode(p)
        if isinstance(p, list) and p and all(isinstance(t, int) and not isinstance(t, bool) for t in p):
            return p
        raise ApiError(400, "prompt must be a non-empty string, a list of token ids, or a list of these")
    if isinstance(prompt, list) and prompt and all(isinstance(p, (str, list)) for p in prompt):
        return [one(p) for p in prompt]
    return [one(prompt)]


async def completions(request: Request, body: dict, hosted: Hosted, options: Options, metrics: Metrics) -> Response:
    prompts, params, stops, stream = parse(body, hosted, options)
    slots = hosted.slots
    reqs = [slots.request(ids, **params) for ids in prompts]  # every prompt checked before any is queued
    loop = asyncio.get_running_loop()
    events: asyncio.Queue = asyncio.Queue()
    choices: list[_Choice] = []
    started = time.perf_counter()
    try:
        for i, req in enumerate(reqs):
            job = slots.submit(req, lambda e, i=i: loop.call_soon_threadsafe(events.put_nowait, (i, e)))
            choices.append(_Choice(i, job, TextPieces(hosted.model.tokenizer, stops)))
    except BaseException:
        for c in choices:
            c.job.cancel()
        raise
    for ids in prompts:
        metrics.prompt_tokens.labels(hosted.name).inc(len(ids))
    head = {"id": f"cmpl-{uuid.uuid4().hex}", "object": "text_completion", "created": int(time.time()),
            "model": hosted.name}
    pieces = _pieces(request, choices, events, started, options, hosted.name, metrics)
    if stream:
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        return StreamingResponse(_sse(pieces, choices, head, include_usage, metrics, hosted.name, started),
                                 media_type="text/event-stream", headers={"Cache-Control": "no-cache"})
    texts = [""] * len(choices)
    try:
        async for i, piece, _ in pieces:
            texts[i] += piece
    finally:
        await pieces.aclose()
    metrics.latency.labels(hosted.name, "completions").observe(time.perf_counter() - started)
    return JSONResponse({**head, "choices": [{"text": texts[c.index], "index": c.index, "logprobs": None,
                                              "finish_reason": c.finish} for c in choices],
                         "usage": _usage(choices)})


async def _pieces(request: Request, choices: list[_Choice], events: asyncio.Queue, started: float,
                  options: Options, model: str, metrics: Metrics) -> AsyncIterator[tuple[int, str, str | None]]:
    """(choice index, text piece, finish reason or None) until every choice finished; jobs are
    cancelled on the way out, however it ends (client gone, deadline, error)."""
    deadline = started + options.timeout_s
    last = [None] * len(choices)
    checked = started
    try:
        while any(c.finish is None for c in choices):
            try:
                i, event = await asyncio.wait_for(events.get(), _POLL_S)
            except asyncio.TimeoutError:
                i, event = None, None
            now = time.perf_counter()
            if now - checked >= _POLL_S:  # also while tokens flow: a gone client frees its slot at once
                checked = now
                if await request.is_disconnected():
                    return
                if now > deadline:
                    raise ApiError(504, f"the request took over {options.timeout_s:g} s", "timeout")
            if event is None:
                continue
            c = choices[i]
            if c.finish is not None:
                continue
            if isinstance(event, Finish):
                if event.reason == "error":
                    raise ApiError(503, f"generation failed: {event.error}", "server_error", retry_after=1)
                c.finish = "length" if event.reason == "length" else "stop"
                c.cached = event.cached_tokens
                metrics.cached_tokens.labels(model).inc(event.cached_tokens)
                yield i, c.text.flush(), c.finish
                continue
            now = time.perf_counter()
            if last[i] is None:
                metrics.first_token.labels(model).observe(now - started)
            else:
                metrics.token_gap.labels(model).observe(now - last[i])
            last[i] = now
            c.tokens += 1
            metrics.generated(model)
            piece = c.text.push(event.token)
            if c.text.stopped:
                c.finish = "stop"
                c.job.cancel()
            if piece or c.finish:
                yield i, piece, c.finish
    finally:
        for c in choices:
            c.job.cancel()


async def _sse(pieces: AsyncIterator[tuple[int, str, str | None]], choices: list[_Choice], head: dict,
               include_usage: bool, metrics: Metrics, model: str, started: float) -> AsyncIterator[str]:
    try:
        async for i, piece, finish in pieces:
            yield _event({**head, "choices": [{"text": piece, "index": i, "logprobs": None, "finish_reason": finish}]})
        if include_usage:
            yield _event({**head, "choices": [], "usage": _usage(choices)})
        yield "data: [DONE]\n\n"
    except ApiError as e:  # the status line is gone: the error travels as an event, then the stream ends
        yield _event({"error": {"message": e.message, "type": e.kind, "code": e.status}})
    finally:
        await pieces.aclose()
        metrics.latency.labels(model, "completions").observe(time.perf_counter() - started)


def _event(data: dict) -> str:
    return "data: " + json.dumps(data) + "\n\n"


def _usage(choices: list[_Choice]) -> dict:
    prompt = sum(len(c.job.req.prompt) for c in choices)
    completion = sum(c.tokens for c in choices)
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion,
            "prompt_tokens_details": {"cached_tokens": sum(c.cached for c in choices)}}
