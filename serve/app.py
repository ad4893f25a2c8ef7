"""The ASGI application: routes, errors and lifecycle, for uvicorn (`reelrt serve`) and Ray Serve.

    app = build_app({"gpt2": "bundles/gpt2-int4"}, Options(parallel=8))
    uvicorn.run(app, host="127.0.0.1", port=8000)

Routes:
    GET  /v1/models                          OpenAI model list
    POST /v1/completions                     OpenAI completions (stream: server-sent events)
    POST /v1/chat/completions                OpenAI chat completions (the bundle's chat template)
    POST /v1/classify?model=NAME             multipart image=@file, or JSON {"text": ...}
    GET  /v2, /v2/health/live, /v2/health/ready, /v2/models/{name}, /v2/models/{name}/ready
    POST /v2/models/{name}/infer             Open Inference Protocol v2
    GET  /metrics                            Prometheus text

Every failure of a request becomes an answer (400 with the reason, 404, 405, 413, 429/503 with
Retry-After, 501 for an extra the server lacks, 504), JSON in OpenAI's error shape (the Open
Inference Protocol's under /v2), unknown routes and methods included; nothing a request sends
can end the process.
"""
from __future__ import annotations

import contextlib
import logging
import os
import time
import uuid
from typing import Awaitable, Callable

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from reelrt import __version__
from reelrt.serve import chat, completions, inference
from reelrt.serve.http import ApiError, ApiKey, api_error, error_response, parse_json, read_body
from reelrt.serve.metrics import Metrics
from reelrt.serve.models import Hosted, close_all, load_all
from reelrt.serve.options import Options

Handler = Callable[[Request], Awaitable[Response]]
log = logging.getLogger("reelrt.serve")
REPLICA = uuid.uuid4().hex[:12]  # this process's name in GET /v2 (Ray's replicas are processes of their own)


def build_app(targets: dict[str, str | os.PathLike], options: Options | None = None) -> Starlette:
    """An app serving the bundles {name: path}; they are loaded when the app starts."""
    options = options or Options()
    state: dict = {}

    @contextlib.asynccontextmanager
    async def lifespan(app):
        state["hosted"] = hosted = load_all(targets, options)
        state["metrics"] = Metrics(hosted)
        log.info("reelrt %s serving %s at http://%s:%d", __version__, describe(hosted), options.host, options.port)
        try:
            yield
        finally:
            close_all(hosted)

    def route(path: str, name: str, methods: list[str], openai: bool, fn) -> Route:
        async def endpoint(request: Request) -> Response:
            metrics: Metrics = state["metrics"]
            model = "-"
            try:
                response = await fn(request, state["hosted"], options, metrics)
                status = response.status_code
            except Exception as e:  # every failure is an answer, never a dead process
                err = api_error(e)
                response, status = error_response(err, openai), err.status
            model = request.scope.get("reelrt_model", model)
            metrics.requests.labels(model, name, str(status)).inc()
            return response
        return Route(path, endpoint, methods=methods)

    routes = [
        route("/v1/models", "models", ["GET"], True, _models),
        route("/v1/completions", "completions", ["POST"], True, _generating(completions.completions)),
        route("/v1/chat/completions", "chat", ["POST"], True, _generating(chat.chat_completions)),
        route("/v1/classify", "classify", ["POST"], True, _classify),
        route("/v2", "server", ["GET"], False, _server),
        route("/v2/health/live", "live", ["GET"], False, _live),
        route("/v2/health/ready", "ready", ["GET"], False, _live),
        route("/v2/models/{name}", "metadata", ["GET"], False, _metadata),
        route("/v2/models/{name}/ready", "model_ready", ["GET"], False, _model_ready),
        route("/v2/models/{name}/infer", "infer", ["POST"], False, _infer),
        route("/metrics", "metrics", ["GET"], False, _metrics),
    ]
    app = Starlette(routes=routes, lifespan=lifespan,
                    exception_handlers={HTTPException: _unrouted})
    if options.api_key:
        app.add_middleware(ApiKey, key=options.api_key)
    return app


def describe(hosted: dict[str, Hosted]) -> str:
    """What the start-up line says of each bundle: its task, slots and threads."""
    parts = []
    for name, h in hosted.items():
        slots = f", {len(h.slots.scheduler.slots)} slots" if h.slots is not None else ""
        parts.append(f"{name} ({h.task}{slots}, {h.model.threads.threads} threads)")
    return ", ".join(parts)


async def _unrouted(request: Request, e: HTTPException) -> Response:
    """An unknown route (404) or method (405) answers JSON too: OpenAI's error shape, or the
    Open Inference Protocol's under /v2."""
    kind = "not_found_error" if e.status_code == 404 else "invalid_request_error"
    message = (f"no route {request.method} {request.url.path}" if e.status_code == 404
               else f"{request.url.path} does not take {request.method}")
    response = error_response(ApiError(e.status_code, message, kind), not request.url.path.startswith("/v2"))
    if e.headers:
        response.headers.update(e.headers)
    return response


def _find(request: Request, hosted: dict[str, Hosted], name: object) -> Hosted:
    if not isinstance(name, str) or name not in hosted:
        raise ApiError(404, f"no model named {name!r}; this server has {sorted(hosted)}", "not_found_error")
    request.scope["reelrt_model"] = name
    return hosted[name]


async def _models(request, hosted, options, metrics) -> Response:
    created = int(time.time())
    return JSONResponse({"object": "list", "data": [
        {"id": name, "object": "model", "created": created, "owned_by": "reelrt", "task": h.task}
        for name, h in hosted.items()]})


def _generating(answer):
    """A route of a text-generation model: the body's model must generate."""
    async def handle(request, hosted, options, metrics) -> Response:
        body = parse_json(await read_body(request, options.max_body_bytes))
        h = _find(request, hosted, body.get("model"))
        if h.slots is None:
            raise ApiError(400, f"{h.name} is a {h.task} model: use /v1/classify or /v2/models/{h.name}/infer")
        return await answer(request, body, h, options, metrics)
    return handle


async def _classify(request, hosted, options, metrics) -> Response:
    body = await read_body(request, options.max_body_bytes)
    name = request.query_params.get("model")
    if name is None and len([h for h in hosted.values() if h.slots is None]) == 1:
        name = next(n for n, h in hosted.items() if h.slots is None)
    h = _find(request, hosted, name)
    return JSONResponse(await inference.classify_form(request, body, h, options, metrics))


async def _server(request, hosted, options, metrics) -> Response:
    return JSONResponse({"name": "reelrt", "version": __version__, "extensions": ["binary_tensor_data"],
                         "parameters": {"replica": REPLICA}})  # which replica answered: a random name, not its pid


async def _live(request, hosted, options, metrics) -> Response:
    return JSONResponse({"live": True, "ready": True})


async def _metadata(request, hosted, options, metrics) -> Response:
    return JSONResponse(inference.metadata(_find(request, hosted, request.path_params["name"])))


async def _model_ready(request, hosted, options, metrics) -> Response:
    _find(request, hosted, request.path_params["name"])
    return JSONResponse({"name": request.path_params["name"], "ready": True})


async def _infer(request, hosted, options, metrics) -> Response:
    h = _find(request, hosted, request.path_params["name"])
    body = await read_body(request, options.max_body_bytes)
    return JSONResponse(await inference.infer(request, body, h, options, metrics))


async def _metrics(request, hosted, options, metrics) -> Response:
    return Response(metrics.text(), media_type="text/plain; version=0.0.4; charset=utf-8")
