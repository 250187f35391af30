"""Mercado Pago payment notifications -> exactly one Calendar event per paid booking."""

from __future__ import annotations

import time

import functions_framework
from flask import Request, Response

from shared import logs
from shared.config import get_settings
from shared.errors import (
    MethodNotAllowed,
    PlatformError,
    ReauthorizationRequired,
    RequestError,
)
from shared.payments import MAX_BODY_BYTES, IgnoredNotification, parse_notification
from shared.retry import Deadline
from shared.scheduling import apply_payment_notification
from shared.web import answer_error, json_response, lower_headers, read_body


@functions_framework.http
def payment_webhook(request: Request) -> Response:
    started = time.monotonic()
    trace = logs.trace_field(request.headers.get("X-Cloud-Trace-Context"))
    payment_id = request.args.get("data.id") or request.args.get("id")
    try:
        if request.method != "POST":
            raise MethodNotAllowed("use POST")
        note = parse_notification(
            request.args.to_dict(),
            lower_headers(request),
            read_body(request, MAX_BODY_BYTES),
            request.content_type or "",
        )
        if isinstance(note, IgnoredNotification):
            logs.info("notification ignored", topic=note.topic, outcome="ignored", **trace)
            return json_response({"outcome": "ignored", "topic": note.topic})
        deadline = Deadline(get_settings().handler_budget_seconds)
        outcome = apply_payment_notification(note, deadline)
    except PlatformError as exc:
        # The token provider already logged a lost grant once, at ERROR.
        quiet = isinstance(exc, RequestError | ReauthorizationRequired)
        severity = "WARNING" if quiet else "ERROR"
        logs.log(
            severity,
            "payment notification failed",
            payment_id=payment_id,
            outcome=exc.code,
            detail=exc.message,
            duration_ms=round((time.monotonic() - started) * 1000),
            **trace,
        )
        return answer_error(exc, webhook=True)
    logs.info(
        "payment notification handled",
        payment_id=outcome.payment_id,
        booking_id=outcome.booking_id or None,
        outcome=outcome.outcome,
        source=note.source,
        action=note.action,
        duration_ms=round((time.monotonic() - started) * 1000),
        **trace,
    )
    return json_response(outcome.as_json())
