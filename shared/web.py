"""The HTTP edge shared by every function: one wrapper, JSON answers, error mapping.

Each function's handler is wrapped by `endpoint(...)`: it checks the method, turns a
`PlatformError` into its answer (which status, and whether the sender should retry, is
decided once, in `shared.errors.http_answer`), and writes the request's one log line with
its outcome, duration and trace.
"""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from flask import Request, Response

from shared import logs
from shared.errors import (
    InvalidRequest,
    InvalidSettings,
    MethodNotAllowed,
    PayloadTooLarge,
    PlatformError,
    ReauthorizationRequired,
    RequestError,
    UnsupportedMediaType,
    http_answer,
)

__all__ = [
    "Handled",
    "Handler",
    "answer_error",
    "endpoint",
    "json_object",
    "json_response",
    "lower_headers",
    "read_body",
]


@dataclass
class Handled:
    """A handler's answer and what the request's log line should say about it."""

    response: Response
    log: dict[str, Any] = field(default_factory=dict)


Handler = Callable[[Request], Handled]


def endpoint(
    action: str,
    *,
    methods: tuple[str, ...] = ("POST",),
    webhook: bool = False,
    on_error: Callable[[PlatformError], Response] | None = None,
) -> Callable[[Handler], Callable[[Request], Response]]:
    """Wrap a function's handler: method check, error answers, one log line per request.

    `webhook=True` acknowledges permanent errors so a redelivering sender stops;
    `on_error` replaces the JSON error answer (HTML pages for people).
    """

    def decorate(handler: Handler) -> Callable[[Request], Response]:
        @functools.wraps(handler)
        def serve(request: Request) -> Response:
            started = time.monotonic()
            with logs.request_context(request.headers.get("X-Cloud-Trace-Context")):
                try:
                    if request.method not in methods:
                        raise MethodNotAllowed(f"use {' or '.join(methods)}")
                    handled = handler(request)
                except PlatformError as exc:
                    # A lost Google grant was already logged once, at ERROR, by the provider,
                    # and invalid settings once, at ERROR, by shared.config.
                    quiet = isinstance(
                        exc, RequestError | ReauthorizationRequired | InvalidSettings
                    )
                    logs.log(
                        "WARNING" if quiet else "ERROR",
                        f"{action} failed",
                        outcome=exc.code,
                        detail=exc.message,
                        duration_ms=_since(started),
                    )
                    response = on_error(exc) if on_error else answer_error(exc, webhook=webhook)
                    if isinstance(exc, MethodNotAllowed):
                        response.headers["Allow"] = ", ".join(methods)
                    return response
                except Exception as exc:
                    # A bug: keep the request's ids in the log, then let the framework
                    # answer 500 (senders retry) and print the traceback.
                    logs.error(
                        f"{action} crashed", error=type(exc).__name__, duration_ms=_since(started)
                    )
                    raise
                logs.info(f"{action} handled", duration_ms=_since(started), **handled.log)
                return handled.response

        return serve

    return decorate


def _since(started: float) -> int:
    return round((time.monotonic() - started) * 1000)


def json_object(body: bytes, content_type: str) -> dict[str, Any]:
    """A request body that must be one JSON object; anything else is a 4xx naming why.

    `RecursionError` too: thousands of nested brackets fit in any body limit.
    """
    if content_type.split(";")[0].strip().lower() != "application/json":
        raise UnsupportedMediaType("the body must be application/json")
    try:
        parsed = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise InvalidRequest("the body is not valid JSON") from exc
    if not isinstance(parsed, dict):
        raise InvalidRequest("the body must be a JSON object")
    return parsed


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(
        json.dumps(body, default=str, ensure_ascii=False),
        status=status,
        headers=headers,
        mimetype="application/json",
    )


def answer_error(error: PlatformError, *, webhook: bool = False) -> Response:
    answer = http_answer(error, webhook=webhook)
    headers = {"Retry-After": str(answer.retry_after)} if answer.retry_after else None
    return json_response(answer.body, answer.status, headers)


def lower_headers(request: Request) -> dict[str, str]:
    return {key.lower(): value for key, value in request.headers.items()}


def read_body(request: Request, limit: int) -> bytes:
    """At most `limit` bytes of the body; longer bodies are refused before being read."""
    if request.content_length is not None and request.content_length > limit:
        raise PayloadTooLarge(f"body larger than {limit} bytes")
    body = request.stream.read(limit + 1)
    if len(body) > limit:
        raise PayloadTooLarge(f"body larger than {limit} bytes")
    return body
