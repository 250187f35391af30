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
from shared.config import get_settings
from shared.errors import (
    InvalidSettings,
    MethodNotAllowed,
    PlatformError,
    ReauthorizationRequired,
    RequestError,
    http_answer,
)

__all__ = [
    "Handled",
    "Handler",
    "answer_error",
    "endpoint",
    "json_response",
    "lower_headers",
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
            trace = request.headers.get("X-Cloud-Trace-Context")
            with logs.request_context(trace, _project()):
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


def _project() -> str:
    """The project the trace belongs to; none while the settings are invalid (the request
    answers 503 for that, and its line needs no trace)."""
    try:
        return get_settings().project_id
    except InvalidSettings:
        return ""


def _since(started: float) -> int:
    return round((time.monotonic() - started) * 1000)


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
