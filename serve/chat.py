"""The OpenAI chat completions API: messages through the bundle's chat template, then the same
engine as completions (serve/completions.py).

POST /v1/chat/completions takes `messages` (content a string, or a list of text parts),
`max_completion_tokens` (or the older `max_tokens`), `temperature`, `top_p`, `seed`, `stop`,
`stream` (chat.completion.chunk events), `n`, `logprobs` with `top_logprobs`, and
`response_format` (json_object, json_schema), plus completions' extensions. Where the request
names no stop strings and the bundle keeps the default template, the answer also stops at the
next "\\nUser:" (the template's next turn).
"""
from __future__ import annotations

import time
import uuid
from typing import Any, AsyncIterator

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from reelrt.runtime.tasks.generation.chat import DEFAULT_CHAT_STOP, DEFAULT_CHAT_TEMPLATE, chat_template, render
from reelrt.runtime.tasks.generation.request import Pick
from reelrt.runtime.tasks.generation.sampling import MAX_TOP_LOGPROBS
from reelrt.serve.completions import (SAMPLING, Ask, gathered, pieces, sampling, streamed, submit, token_text,
                                      usage)
from reelrt.serve.http import ApiError
from reelrt.serve.metrics import Metrics
from reelrt.serve.models import Hosted
from reelrt.serve.options import Options

_KNOWN = {"messages", "max_completion_tokens", "logprobs", "top_logprobs", "parallel_tool_calls", *SAMPLING}
EOS_TOKEN = "<|endoftext|>"


def parse(body: dict[str, Any], hosted: Hosted, options: Options) -> Ask:
    unknown = sorted(set(body) - _KNOWN)
    if unknown:
        raise ApiError(400, f"unknown parameters {unknown}")
    if body.get("max_tokens") is not None and body.get("max_completion_tokens") is not None:
        raise ApiError(400, "pass max_completion_tokens or max_tokens, not both")
    key = "max_tokens" if body.get("max_tokens") is not None else "max_completion_tokens"
    logprobs, top = body.get("logprobs", False), body.get("top_logprobs")
    if logprobs is not None and not isinstance(logprobs, bool):
        raise ApiError(400, f"logprobs must be true or false, not {logprobs!r}")
    if top is not None and (not isinstance(top, int) or isinstance(top, bool) or not 0 <= top <= MAX_TOP_LOGPROBS):
        raise ApiError(400, f"top_logprobs must be an int in [0, {MAX_TOP_LOGPROBS}], not {top!r}")
    if top is not None and not logprobs:
        raise ApiError(400, "top_logprobs needs logprobs: true")
    gen = hosted.model
    template = chat_template(gen.manifest)
    prompt = render(template, _messages(body.get("messages")), eos_token=EOS_TOKEN, bos_token=EOS_TOKEN)
    ids = gen.encode(prompt)
    stop = [DEFAULT_CHAT_STOP] if template == DEFAULT_CHAT_TEMPLATE else None
    return sampling(body, hosted, options, [ids], key, (top or 0) if logprobs else None, default_stop=stop)


def _messages(messages: Any) -> list[dict[str, str]]:
    """Messages with their content as a string (text parts joined; other parts refused)."""
    if not isinstance(messages, list) or not messages:
        raise ApiError(400, "messages must be a non-empty list", param="messages")
    out = []
    for i, m in enumerate(messages):
        if not isinstance(m, dict):
            raise ApiError(400, f"messages[{i}] must be an object", param="messages")
        content = m.get("content")
        if isinstance(content, list):
            if not all(isinstance(p, dict) and p.get("type") == "text" and isinstance(p.get("text"), str)
                       for p in content):
                raise ApiError(400, f"messages[{i}].content: only text parts are supported", param="messages")
            content = "".join(p["text"] for p in content)
        elif content is None:
            content = ""
        out.append({"role": m.get("role"), "content": content})
    return out


def _logprobs(tokenizer, picks: list[Pick]) -> list[dict]:
    def entry(token: int, logprob: float | None) -> dict:
        text = token_text(tokenizer, token)
        return {"token": text, "logprob": logprob, "bytes": list(text.encode())}
    return [{**entry(p.token, p.logprob), "top_logprobs": [entry(t, lp) for t, lp in p.top]} for p in picks]


async def chat_completions(request: Request, body: dict, hosted: Hosted, options: Options,
                           metrics: Metrics) -> Response:
    ask = parse(body, hosted, options)
    started = time.perf_counter()
    choices, events = submit(ask, hosted, metrics)
    head = {"id": f"chatcmpl-{uuid.uuid4().hex}", "created": int(time.time()), "model": hosted.name,
            "system_fingerprint": None}
    tokenizer = hosted.model.tokenizer
    stream = pieces(request, choices, events, started, options, hosted.name, metrics)
    with_logprobs = ask.logprobs is not None
    if ask.stream:
        chunk = {**head, "object": "chat.completion.chunk"}

        async def chunks() -> AsyncIterator[dict]:
            for c in choices:
                yield {**chunk, "choices": [{"index": c.index, "delta": {"role": "assistant", "content": ""},
                                             "logprobs": None, "finish_reason": None}]}
            async for i, piece, finish, picks in stream:
                logprobs = {"content": _logprobs(tokenizer, picks)} if with_logprobs else None
                if piece or picks:
                    yield {**chunk, "choices": [{"index": i, "delta": {"content": piece}, "logprobs": logprobs,
                                                 "finish_reason": None}]}
                if finish:
                    yield {**chunk, "choices": [{"index": i, "delta": {}, "logprobs": None, "finish_reason": finish}]}
        return streamed(chunks(), chunk, choices, ask, stream, metrics, hosted.name, "chat", started)
    texts, picked = await gathered(stream, ["" for _ in choices])
    metrics.latency.labels(hosted.name, "chat").observe(time.perf_counter() - started)
    return JSONResponse({**head, "object": "chat.completion", "choices": [
        {"index": c.index, "message": {"role": "assistant", "content": texts[c.index], "refusal": None},
         "logprobs": {"content": _logprobs(tokenizer, picked[c.index])} if with_logprobs else None,
         "finish_reason": c.finish} for c in choices], "usage": usage(choices, ask)})
