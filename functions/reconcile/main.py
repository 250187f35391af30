"""The reconcile sweep: heals what deliveries, pushes and outages left half-done.

Cloud Scheduler calls it every 15 minutes with an OIDC token; an admin may run it by hand
(after connecting Google again, for instance). Each repair goes through the same
idempotent paths as the payment webhook, so overlapping with a late delivery is harmless.
The answer counts what each kind found and healed, and says `remaining` when the budget
ran out first (the next run continues).
"""

from __future__ import annotations

import time

import functions_framework
from flask import Request

from shared import logs
from shared.clock import Deadline
from shared.services.reconcile import sweep
from shared.views.health import record_reconcile_run
from shared.web.auth import require_scheduler_or_admin
from shared.web.endpoint import Handled, endpoint, json_response, lower_headers

BUDGET_SECONDS = 50.0
"""Inside Cloud Functions' default 60 s timeout, with room to answer."""


@functions_framework.http
@endpoint("reconcile")
def reconcile(request: Request) -> Handled:
    started = time.monotonic()
    deadline = Deadline(BUDGET_SECONDS)
    caller = require_scheduler_or_admin(lower_headers(request), deadline)
    logs.bind(caller=caller)
    resume = request.args.get("resumeQueue", "").lower() in ("1", "true", "yes")
    run = sweep(deadline, resume_queue=resume)
    # For the admin console's health view: when the sweep last ran, and what it did.
    duration_ms = round((time.monotonic() - started) * 1000)
    record_reconcile_run((o.outcome for o in run.outcomes), caller, duration_ms, run.remaining)
    for outcome in run.outcomes:
        logs.info(
            "booking reconciled",
            booking_id=outcome.booking_id,
            payment_id=outcome.payment_id,
            outcome=outcome.outcome,
        )
    log = {"bookings": len(run.outcomes), "remaining": run.remaining, "counts": run.counts}
    return Handled(json_response(run.as_json()), log)
