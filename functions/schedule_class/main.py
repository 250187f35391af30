"""Cloud Tasks' target: creates the class of one paid booking, at the queue's pace.

The queue calls with an OIDC token of its own service account (an admin may call by hand).
A Calendar rate limit answers 429 with `Retry-After`, so Cloud Tasks backs off; Google's
usage limit pauses the queue (bookings wait as paid, nothing is lost) and answers 503.
"""

from __future__ import annotations

import functions_framework
from flask import Request

from shared import logs
from shared.adapters import cloud_tasks
from shared.adapters.firestore import is_booking_id
from shared.clock import Deadline
from shared.config import get_settings
from shared.errors import InvalidRequest, UsageLimitExceeded
from shared.services.scheduling import finish_paid_booking
from shared.web.auth import require_tasks_or_admin
from shared.web.endpoint import Handled, endpoint, json_response, lower_headers
from shared.web.requests import json_object, read_body


@functions_framework.http
@endpoint("class scheduling")
def schedule_class(request: Request) -> Handled:
    # A rate limit goes back to the queue at once: Cloud Tasks backs off for us.
    settings = get_settings()
    deadline = Deadline(settings.handler_budget_seconds, wait_out_rate_limits=False)
    headers = lower_headers(request)
    logs.bind(caller=require_tasks_or_admin(headers, deadline, settings.schedule_class_url))
    body = json_object(read_body(request), request.content_type or "")
    booking_id = body.get("bookingId")
    if not isinstance(booking_id, str) or not is_booking_id(booking_id):
        raise InvalidRequest("bookingId must name a booking", parameter="bookingId")
    logs.bind(booking_id=booking_id)
    try:
        outcome = finish_paid_booking(booking_id, deadline)
    except UsageLimitExceeded as exc:
        cloud_tasks.pause_for_usage_limit(exc.message, deadline)
        raise
    return Handled(json_response(outcome.as_json()), {"outcome": outcome.outcome})
