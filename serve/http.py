"""What every route shares: typed HTTP errors, bounded body reading, the API key check."""
from __future__ import annotations

import hmac
import json
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from reelrt.runtime.errors import BackendUnavailableError, InputError, ReelrtError
from reelrt.runtime.tasks.backpressure import QueueFullError

RETRY_AFTER_S = 1


class ApiError(Exception):
    """An answer other than 200, with the reason the client reads."""

    def __init__(self, status: int, message: str, kind: str = "invalid_request_error", retry_after: int | None = None,
                 param: str | None = None):
        super().__init__(message)
        self.status, self.message, self.kind, self.retry_after, self.param = status, message, kind, retry_after, param


def api_error(e: BaseException) -> ApiError:
    """The HTTP meaning of an error raised while serving a request."""
    if isinstance(e, ApiError):
        return e
    if isinstance(e, QueueFullError):
        return ApiError(429, str(e), "rate_limit_error", retry_after=RETRY_AFTER_S)
    if isinstance(e, InputError):
        return ApiError(400, str(e))
    if isinstance(e, BackendUnavailableError):  # an extra this server lacks (llguidance, Jinja2)
        return ApiError(501, str(e), "server_error")
    if isinstance(e, ReelrtError):
        return ApiError(503, str(e), "server_error", retry_after=RETRY_AFTER_S)
    return ApiError(500, f"internal error: {type(e).__name__}: {e}", "server_error")


def error_response(e: ApiError, openai: bool) -> JSONResponse:
    """OpenAI's error shape under /v1, the Open Inference Protocol's ({"error": str}) under /v2."""
    body = {"error": {"message": e.message, "type": e.kind, "param": e.param, "code": None}} if openai else {"error": e.message}
    headers = {"Retry-After": str(e.retry_after)} if e.retry_after is not None else None
    return JSONResponse(body, status_code=e.status, headers=headers)


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refused with 413 as soon as it passes `limit` bytes (never buffered whole first)."""
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > limit):
        raise ApiError(413, f"the request body is over the limit of {limit} bytes")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ApiError(413, f"the request body is over the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def parse_json(body: bytes) -> dict[str, Any]:
    try:
        value = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ApiError(400, f"the body is not valid JSON: {e}") from None
    if not isinstance(value, dict):
        raise ApiError(400, f"the body must be a JSON object, not {type(value).__name__}")
    return value


class ApiKey:
    """ASGI middleware: every route but the health checks needs `Authorization: Bearer KEY`."""

    OPEN = ("/v2/health/", "/health")

    def __init__(self, app: ASGIApp, key: str):
        self.app, self.key = app, key.encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not scope["path"].startswith(self.OPEN):
            given = dict(scope["headers"]).get(b"authorization", b"")
            if not hmac.compare_digest(given, b"Bearer " + self.key):
                openai = scope["path"].startswith("/v1")
                response = error_response(ApiError(401, "a valid API key is required: Authorization: Bearer KEY",
                                                   "authentication_error"), openai)
                response.headers["WWW-Authenticate"] = "Bearer"
                return await response(scope, receive, send)
        await self.app(scope, receive, send)
