"""Mercado Pago payment notifications -> exactly one Calendar event per paid booking."""

from __future__ import annotations

import functions_framework
from flask import Request

from shared import logs
from shared.clock import Deadline
from shared.config import get_settings
from shared.services.scheduling import apply_payment_notification
from shared.web.endpoint import Handled, endpoint, json_response, lower_headers
from shared.web.requests import IgnoredNotification, parse_notification, read_body


@functions_framework.http
@endpoint("payment notification", webhook=True)
def payment_webhook(request: Request) -> Handled:
    logs.bind(payment_id=request.args.get("data.id") or request.args.get("id"))
    deadline = Deadline(get_settings().handler_budget_seconds)
    note = parse_notification(
        request.args.to_dict(),
        lower_headers(request),
        read_body(request),
        request.content_type or "",
        deadline=deadline,
    )
    if isinstance(note, IgnoredNotification):
        body = {"outcome": "ignored", "topic": note.topic}
        return Handled(json_response(body), body)
    outcome = apply_payment_notification(note, deadline)
    # The answer says only what happened: IPNs are unsigned, so ids and links stay in logs.
    log = {"booking_id": outcome.booking_id, "outcome": outcome.outcome, "source": note.source}
    return Handled(json_response({"outcome": outcome.outcome}), {**log, "action": note.action})
