"""The reconcile sweep: paid bookings still without a Calendar event, and pending Meet links.

Cloud Scheduler calls it every 15 minutes with an OIDC token; an admin may run it by hand
(after connecting Google again, for instance). Each booking goes through the same
idempotent path as the payment webhook, so overlapping with a late delivery is harmless.
"""

from __future__ import annotations

import time

import functions_framework
from flask import Request, Response

from shared import logs
from shared.admin import require_scheduler_or_admin
from shared.errors import MethodNotAllowed, PlatformError, RequestError
from shared.retry import Deadline
from shared.scheduling import reconcile_bookings
from shared.web import answer_error, json_response, lower_headers

BUDGET_SECONDS = 50.0
"""Inside Cloud Functions' default 60 s timeout, with room to answer."""


@functions_framework.http
def reconcile(request: Request) -> Response:
    started = time.monotonic()
    trace = logs.trace_field(request.headers.get("X-Cloud-Trace-Context"))
    try:
        if request.method != "POST":
            raise MethodNotAllowed("use POST")
        caller = require_scheduler_or_admin(lower_headers(request))
        outcomes = reconcile_bookings(Deadline(BUDGET_SECONDS))
    except PlatformError as exc:
        severity = "WARNING" if isinstance(exc, RequestError) else "ERROR"
        logs.log(
            severity,
            "reconcile failed",
            outcome=exc.code,
            detail=exc.message,
            duration_ms=round((time.monotonic() - started) * 1000),
            **trace,
        )
        return answer_error(exc)
    for outcome in outcomes:
        logs.info(
            "booking reconciled",
            booking_id=outcome.booking_id,
            payment_id=outcome.payment_id,
            outcome=outcome.outcome,
            **trace,
        )
    logs.info(
        "reconcile handled",
        caller=caller,
        bookings=len(outcomes),
        duration_ms=round((time.monotonic() - started) * 1000),
        **trace,
    )
    return json_response({"bookings": [o.as_json() for o in outcomes]})
