"""The HTTP edge shared by every function: JSON answers and the error-to-status mapping.

Functions call `answer_error(exc, webhook=...)`; which status and whether the sender
should retry is decided once, in `shared.errors.http_answer`.
"""

from __future__ import annotations

import json
from typing import Any

from flask import Request, Response

from shared.errors import PlatformError, http_answer


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
    from shared.errors import PayloadTooLarge

    if request.content_length is not None and request.content_length > limit:
        raise PayloadTooLarge(f"body larger than {limit} bytes")
    body = request.stream.read(limit + 1)
    if len(body) > limit:
        raise PayloadTooLarge(f"body larger than {limit} bytes")
    return body
