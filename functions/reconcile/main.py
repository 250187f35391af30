"""The reconcile sweep: paid bookings still without a Calendar event, and pending Meet links.

Cloud Scheduler calls it every 15 minutes with an OIDC token; an admin may run it by hand
(after connecting Google again, for instance). Each booking goes through the same
idempotent path as the payment webhook, so overlapping with a late delivery is harmless.
"""

from __future__ import annotations

import time

import functions_framework
from flask import Request

from shared import logs
from shared.admin import require_scheduler_or_admin
from shared.health import record_reconcile_run
from shared.scheduling import reconcile_bookings
from shared.upstream import Deadline
from shared.web import Handled, endpoint, json_response, lower_headers

BUDGET_SECONDS = 50.0
"""Inside Cloud Functions' default 60 s timeout, with room to answer."""


@functions_framework.http
@endpoint("reconcile")
def reconcile(request: Request) -> Handled:
    started = time.monotonic()
    deadline = Deadline(BUDGET_SECONDS)
    caller = require_scheduler_or_admin(lower_headers(request), deadline)
    logs.bind(caller=caller)
    outcomes = reconcile_bookings(deadline)
    # For the admin console's health view: when the sweep last ran, and what it did.
    duration_ms = round((time.monotonic() - started) * 1000)
    record_reconcile_run((o.outcome for o in outcomes), caller, duration_ms)
    for outcome in outcomes:
        logs.info(
            "booking reconciled",
            booking_id=outcome.booking_id,
            payment_id=outcome.payment_id,
            outcome=outcome.outcome,
        )
    body = {"bookings": [o.as_json() for o in outcomes]}
    return Handled(json_response(body), {"bookings": len(outcomes)})
