"""Pure ASGI middleware at the HTTP edge: request metrics and the request body size limit.

Plain ASGI classes rather than ``BaseHTTPMiddleware``, which costs a task and a stream per request.
"""

import time

import orjson
from fastapi import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.prometheus import UNMATCHED_ROUTE, PrometheusMetrics

# Keys this app adds to the ASGI scope: when the request arrived (so the deadline counts from
# there), and the route's own outcome (a fallback reason) for the latency histogram.
STARTED_KEY = "recsys.started"
OUTCOME_KEY = "recsys.outcome"


def _route_template(scope: Scope) -> str:
    """``/recommendations/{user_id}``, never the raw path: raw paths would explode the series."""
    route = scope.get("route")
    template = getattr(route, "path_format", None)
    return template if isinstance(template, str) else UNMATCHED_ROUTE


def _outcome(scope: Scope, status: int) -> str:
    if status >= 500:
        return "5xx"
    if status >= 400:
        return "4xx"
    outcome = scope.get(OUTCOME_KEY)
    return outcome if isinstance(outcome, str) else "ok"


class _HttpMiddleware:
    """Acts on HTTP requests (``handle``); lifespan and other scopes pass straight through."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            await self.handle(scope, receive, send)
        else:
            await self.app(scope, receive, send)

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        raise NotImplementedError


class RequestMetricsMiddleware(_HttpMiddleware):
    """Times every HTTP request from arrival to the end of its response, by route and outcome."""

    def __init__(self, app: ASGIApp, metrics: PrometheusMetrics) -> None:
        super().__init__(app)
        self.metrics = metrics

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        scope[STARTED_KEY] = started
        status = 500  # what the client gets if the app raises before responding

        async def send_with_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_with_status)
        finally:
            self.metrics.observe_request(
                _route_template(scope), _outcome(scope, status), time.perf_counter() - started
            )


def _too_large(limit: int, size: int | None) -> str:
    got = f"{size} bytes" if size is not None else f"more than {limit} bytes"
    return f"request body is {got}; the limit is {limit} bytes"


class BodySizeLimitMiddleware(_HttpMiddleware):
    """Refuses request bodies over ``limit`` bytes with a 413 that states the limit.

    A declared Content-Length over the limit is refused before reading anything; a body without
    one (chunked) is counted as it streams in and refused as soon as it passes the limit, so a
    client can never make the server buffer more than ``limit`` bytes.
    """

    def __init__(self, app: ASGIApp, limit: int) -> None:
        super().__init__(app)
        self.limit = limit

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        declared = _content_length(scope)
        if declared is not None and declared > self.limit:
            await _send_json(send, 413, {"detail": _too_large(self.limit, declared)})
            return
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    # FastAPI re-raises HTTPExceptions from the body read; its handler answers
                    raise HTTPException(413, detail=_too_large(self.limit, None))
            return message

        await self.app(scope, limited_receive, send)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None  # the server rejects malformed lengths before we see them
    return None


async def _send_json(send: Send, status: int, body: dict[str, str]) -> None:
    payload = orjson.dumps(body)
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(payload)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload})
