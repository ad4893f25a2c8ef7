"""The OpenAI completions API over a bundle's generation slots, and what the chat route shares.

POST /v1/completions takes `prompt` (a string, token ids, or a list of either), `max_tokens`,
`temperature`, `top_p`, `seed`, `stop`, `stream`, `n`, `logprobs`, `echo`, `response_format`
and as extensions `top_k`, `repetition_penalty`, `ignore_eos` and `grammar` (Lark or GBNF
text). Parameters left out take the bundle's generation defaults (greedy unless the manifest
says otherwise), so an answer is the one `TextGenerator.generate` gives for the same arguments.
With n > 1, choice j of a prompt samples with seed + j (when a seed is given), and the prompt
is prefilled once (the scheduler copies its cache to the other choices' rows).

Each choice becomes one job in the bundle's SlotGenerator; the worker thread hands its events
to this event loop, which turns tokens into text (stop strings cut there, and cancel the job),
and writes JSON or server-sent events. A client that goes away cancels its jobs at once, which
frees their slots before the next decode step.
"""
from __future__ import annotations

import asyncio
import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Callable

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from reelrt.runtime.errors import InputError
from reelrt.runtime.tasks.generation.pieces import TextPieces, check_stops
from reelrt.runtime.tasks.generation.request import Finish, Pick
from reelrt.runtime.tasks.generation.sampling import MAX_TOP_LOGPROBS
from reelrt.runtime.tasks.generation.scheduler import Job
from reelrt.serve.http import ApiError
from reelrt.serve.metrics import Metrics
from reelrt.serve.models import Hosted
from reelrt.serve.options import Options

# OpenAI parameters accepted with their no-op value only (anything else is refused, not ignored)
NEUTRAL = {"best_of": 1, "presence_penalty": 0, "frequency_penalty": 0, "suffix": None, "logit_bias": None}
SAMPLING = {"model", "max_tokens", "temperature", "top_p", "top_k", "seed", "stop", "stream", "stream_options",
            "repetition_penalty", "ignore_eos", "user", "n", "response_format", "grammar", *NEUTRAL}
_KNOWN = {"prompt", "logprobs", "echo", *SAMPLING}
_POLL_S = 0.25  # how often a quiet request looks for a client that went away or a deadline


@dataclass
class Ask:
    """A parsed generation request: one Request per choice (prompt-major, n per prompt)."""
    prompts: list[list[int]]
    n: int
    reqs: list = field(default_factory=list)
    stops: list[str] = field(default_factory=list)
    stream: bool = False
    include_usage: bool = False
    logprobs: int | None = None


@dataclass
class Choice:
    index: int
    job: Job
    text: TextPieces
    finish: str | None = None
    tokens: int = 0
    cached: int = 0
    picks: list[Pick] = field(default_factory=list)   # picks whose text is not out yet


def parse(body: dict[str, Any], hosted: Hosted, options: Options) -> tuple[Ask, bool]:
    """(the request, echo) of a completions body; ApiError(400) otherwise."""
    unknown = sorted(set(body) - _KNOWN)
    if unknown:
        raise ApiError(400, f"unknown parameters {unknown}")
    logprobs = body.get("logprobs")
    if logprobs is not None and (not _int(logprobs) or not 0 <= logprobs <= MAX_TOP_LOGPROBS):
        raise ApiError(400, f"logprobs must be an int in [0, {MAX_TOP_LOGPROBS}], not {logprobs!r}")
    echo = body.get("echo", False)
    if not isinstance(echo, bool):
        raise ApiError(400, f"echo must be true or false, not {echo!r}")
    if echo and logprobs is not None:
        raise ApiError(400, "echo with logprobs would need the log-probabilities of the prompt's tokens, which this"
                            " model's graph does not give (it gives the last position's logits only)")
    prompts = _prompts(body.get("prompt"), hosted)
    return sampling(body, hosted, options, prompts, "max_tokens", logprobs), echo


def sampling(body: dict[str, Any], hosted: Hosted, options: Options, prompts: list[list[int]], max_key: str,
             logprobs: int | None, default_stop: list[str] | None = None) -> Ask:
    """The checked requests for `prompts` from a body's sampling parameters (completions' and chat's)."""
    for key, neutral in NEUTRAL.items():
        if body.get(key) is not None and body[key] != neutral:
            raise ApiError(400, f"{key}={body[key]!r} is not supported (only {neutral!r})")
    gen = hosted.model
    n = body.get("n", 1) if body.get("n") is not None else 1
    if not _int(n) or n < 1:
        raise ApiError(400, f"n must be a positive int, not {n!r}")
    if len(prompts) * n > options.max_batch:
        raise ApiError(400, f"{len(prompts)} prompts x n={n} choices, over the limit of {options.max_batch} per request")
    context = gen.config.max_context
    most = min(options.max_tokens, context - 1)
    max_tokens = body.get(max_key)
    if max_tokens is not None and (not _int(max_tokens) or not 1 <= max_tokens <= most):
        why = "the server's --max-tokens" if most == options.max_tokens else f"the model's {context}-token context"
        raise ApiError(400, f"{max_key} must be an int from 1 to {most} ({why}), not {max_tokens!r}", param=max_key)
    new = max_tokens if max_tokens is not None else min(gen.defaults["max_new_tokens"], most)
    limit = options.max_prompt_tokens
    for ids in prompts:
        if limit is not None and len(ids) > limit:
            raise ApiError(400, f"the prompt has {len(ids)} tokens, over the limit of {limit}")
        if len(ids) + new > context:
            room = f"ask for {max_key} {context - len(ids)} or less, or " if len(ids) < context else ""
            raise ApiError(400, f"the prompt's {len(ids)} tokens and {max_key} {new} exceed the model's"
                                f" {context}-token context: {room}shorten the prompt", param=max_key)
    stop = body.get("stop")
    try:
        stops = check_stops(default_stop or [] if stop is None else stop)
    except InputError as e:
        raise ApiError(400, str(e)) from None
    if len(stops) > 4:
        raise ApiError(400, "at most 4 stop strings")
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise ApiError(400, f"stream must be true or false, not {stream!r}")
    ignore_eos = body.get("ignore_eos", False)
    if not isinstance(ignore_eos, bool):
        raise ApiError(400, f"ignore_eos must be true or false, not {ignore_eos!r}")
    seed = body.get("seed")
    constraint = gen.constraint(_constraint_spec(body))
    params = dict(temperature=body.get("temperature"), top_p=body.get("top_p"), top_k=body.get("top_k"),
                  repetition_penalty=body.get("repetition_penalty"), stop_token_ids=() if ignore_eos else None,
                  logprobs=logprobs, constraint=constraint)
    reqs = [hosted.slots.request(ids, new, seed=seed + j if _int(seed) else seed, **params)
            for ids in prompts for j in range(n)]   # every choice checked before any is queued
    options_ = body.get("stream_options") or {}
    return Ask(prompts, n, reqs, stops, stream, bool(isinstance(options_, dict) and options_.get("include_usage")),
               logprobs)


def _constraint_spec(body: dict[str, Any]):
    """The ConstraintSpec of `response_format` or the `grammar` extension (None for neither)."""
    fmt, grammar = body.get("response_format"), body.get("grammar")
    if fmt is None and grammar is None:
        return None
    from reelrt.runtime.tasks.generation.grammar import ConstraintSpec, spec_from_response_format
    if grammar is not None:
        if fmt is not None and fmt != {"type": "text"}:
            raise ApiError(400, "pass response_format or grammar, not both")
        if not isinstance(grammar, str):
            raise ApiError(400, "grammar must be a string: a Lark (llguidance) or GBNF grammar")
        return ConstraintSpec("grammar", grammar)
    return spec_from_response_format(fmt)


def _prompts(prompt: Any, hosted: Hosted) -> list[list[int]]:
    """A string, a list of token ids, or a list of strings or of id lists -> a list of id lists."""
    def one(p) -> list[int]:
        if isinstance(p, str):
            if not p:
                raise ApiError(400, "a prompt must not be empty")
            return hosted.model.encode(p)
        if isinstance(p, list) and p and all(_int(t) for t in p):
            return p
        raise ApiError(400, "prompt must be a non-empty string, a list of token ids, or a list of these")
    if isinstance(prompt, list) and prompt and all(isinstance(p, (str, list)) for p in prompt):
        return [one(p) for p in prompt]
    return [one(prompt)]


def _int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def submit(ask: Ask, hosted: Hosted, metrics: Metrics) -> tuple[list[Choice], asyncio.Queue]:
    """Queue every choice's job; their events arrive on the returned queue as (index, event)."""
    loop = asyncio.get_running_loop()
    events: asyncio.Queue = asyncio.Queue()
    choices: list[Choice] = []
    try:
        for i, req in enumerate(ask.reqs):
            job = hosted.slots.submit(req, lambda e, i=i: loop.call_soon_threadsafe(events.put_nowait, (i, e)))
            choices.append(Choice(i, job, TextPieces(hosted.model.tokenizer, ask.stops)))
    except BaseException:
        for c in choices:
            c.job.cancel()
        raise
    for ids in ask.prompts:
        metrics.prompt_tokens.labels(hosted.name).inc(len(ids))
    return choices, events


async def pieces(request: Request, choices: list[Choice], events: asyncio.Queue, started: float,
                 options: Options, model: str, metrics: Metrics
                 ) -> AsyncIterator[tuple[int, str, str | None, list[Pick]]]:
    """(choice index, text piece, finish reason or None, the picks that piece completes) until
    every choice finished; jobs are cancelled on the way out, however it ends (client gone,
    deadline, error)."""
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
                picks, c.picks = c.picks, []
                yield i, c.text.flush(), c.finish, picks
                continue
            now = time.perf_counter()
            if last[i] is None:
                metrics.first_token.labels(model).observe(now - started)
            else:
                metrics.token_gap.labels(model).observe(now - last[i])
            last[i] = now
            c.tokens += 1
            metrics.generated(model)
            c.picks.append(event)
            piece = c.text.push(event.token)
            if c.text.stopped:
                c.finish = "stop"
                c.job.cancel()
            if piece or c.finish:
                picks, c.picks = c.picks, []
                yield i, piece, c.finish, picks
    finally:
        for c in choices:
            c.job.cancel()


def usage(choices: list[Choice], ask: Ask) -> dict:
    prompt = sum(len(ids) for ids in ask.prompts)
    completion = sum(c.tokens for c in choices)
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion,
            "prompt_tokens_details": {"cached_tokens": sum(c.cached for c in choices)}}


def event(data: dict) -> str:
    return "data: " + json.dumps(data) + "\n\n"


async def sse(chunks: AsyncIterator[dict], tail: Callable[[], list[dict]], closing: Callable[[], Any],
              metrics: Metrics, model: str, route: str, started: float) -> AsyncIterator[str]:
    """Server-sent events of `chunks`, then `tail()` (usage), then [DONE]; an error after the
    status line travels as an event."""
    try:
        async for chunk in chunks:
            yield event(chunk)
        for chunk in tail():
            yield event(chunk)
        yield "data: [DONE]\n\n"
    except ApiError as e:  # the status line is gone: the error travels as an event, then the stream ends
        yield event({"error": {"message": e.message, "type": e.kind, "param": e.param, "code": e.status}})
    finally:
        await closing()
        metrics.latency.labels(model, route).observe(time.perf_counter() - started)


def streamed(chunks: AsyncIterator[dict], head: dict, choices: list[Choice], ask: Ask, stream, metrics: Metrics,
             model: str, route: str, started: float) -> StreamingResponse:
    """The server-sent events of a streamed answer, with the usage chunk where it was asked for."""
    tail = lambda: [{**head, "choices": [], "usage": usage(choices, ask)}] if ask.include_usage else []
    return StreamingResponse(sse(chunks, tail, stream.aclose, metrics, model, route, started),
                             media_type="text/event-stream", headers={"Cache-Control": "no-cache"})


async def gathered(stream, texts: list[str]) -> tuple[list[str], list[list[Pick]]]:
    """Each choice's whole text (after `texts`) and picks, for an answer that is not streamed."""
    picked: list[list[Pick]] = [[] for _ in texts]
    try:
        async for i, piece, _, picks in stream:
            texts[i] += piece
            picked[i] += picks
    finally:
        await stream.aclose()
    return texts, picked


def token_text(tokenizer, token: int) -> str:
    return tokenizer.decode([token], skip_special_tokens=False)


# ---- POST /v1/completions ----------------------------------------------------------------

async def completions(request: Request, body: dict, hosted: Hosted, options: Options, metrics: Metrics) -> Response:
    ask, echo = parse(body, hosted, options)
    started = time.perf_counter()
    choices, events = submit(ask, hosted, metrics)
    head = {"id": f"cmpl-{uuid.uuid4().hex}", "object": "text_completion", "created": int(time.time()),
            "model": hosted.name}
    tokenizer = hosted.model.tokenizer
    prefix = [tokenizer.decode(ids, skip_special_tokens=False) if echo else "" for ids in ask.prompts]
    stream = pieces(request, choices, events, started, options, hosted.name, metrics)
    offsets = [len(prefix[c.index // ask.n]) for c in choices]

    def logprobs(i: int, picks: list[Pick]) -> dict | None:
        if ask.logprobs is None:
            return None
        texts = [token_text(tokenizer, p.token) for p in picks]
        starts = []
        for t in texts:
            starts.append(offsets[i])
            offsets[i] += len(t)
        return {"tokens": texts, "token_logprobs": [p.logprob for p in picks],
                "top_logprobs": [{token_text(tokenizer, t): lp for t, lp in p.top} for p in picks],
                "text_offset": starts}

    if ask.stream:
        async def chunks() -> AsyncIterator[dict]:
            if echo:
                for c in choices:
                    yield {**head, "choices": [{"text": prefix[c.index // ask.n], "index": c.index, "logprobs": None,
                                                "finish_reason": None}]}
            async for i, piece, finish, picks in stream:
                yield {**head, "choices": [{"text": piece, "index": i, "logprobs": logprobs(i, picks),
                                            "finish_reason": finish}]}
        return streamed(chunks(), head, choices, ask, stream, metrics, hosted.name, "completions", started)
    texts, picked = await gathered(stream, [prefix[c.index // ask.n] for c in choices])
    metrics.latency.labels(hosted.name, "completions").observe(time.perf_counter() - started)
    return JSONResponse({**head, "choices": [{"text": texts[c.index], "index": c.index,
                                              "logprobs": logprobs(c.index, picked[c.index]),
                                              "finish_reason": c.finish} for c in choices],
                         "usage": usage(choices, ask)})
