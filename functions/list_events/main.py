"""Upcoming classes for admins (JSON page or iCalendar feed), and the public read feed.

`?public=1` selects the public feed. A query flag rather than a second route, because the
path a function sees differs between cloudfunctions.net, its Cloud Run URL and the local
functions-framework; the flag is the same everywhere and is decided before any auth.
"""

from __future__ import annotations

import time

import functions_framework
from flask import Request, Response

from shared import listing, logs
from shared.admin import require_admin
from shared.config import get_settings
from shared.errors import MethodNotAllowed, PlatformError, RequestError
from shared.retry import Deadline
from shared.web import answer_error, lower_headers


@functions_framework.http
def list_events(request: Request) -> Response:
    started = time.monotonic()
    trace = logs.trace_field(request.headers.get("X-Cloud-Trace-Context"))
    args = request.args.to_dict(flat=False)
    caller = "public"
    try:
        if request.method not in ("GET", "HEAD"):
            raise MethodNotAllowed("use GET")
        if listing.wants_public(args):
            listing.require_public_enabled()
        else:
            caller = require_admin(lower_headers(request)).identity
        query = listing.parse_query(args)
        answer = listing.list_events(
            query,
            request.headers.get("If-None-Match", ""),
            Deadline(get_settings().handler_budget_seconds),
        )
    except PlatformError as exc:
        logs.log(
            "WARNING" if isinstance(exc, RequestError) else "ERROR",
            "listing failed",
            caller=caller,
            outcome=exc.code,
            detail=exc.message,
            duration_ms=round((time.monotonic() - started) * 1000),
            **trace,
        )
        response = answer_error(exc)
        if isinstance(exc, MethodNotAllowed):
            response.headers["Allow"] = "GET, HEAD"
        return response
    logs.info(
        "events listed",
        caller=caller,
        format="ics" if query.ics else "json",
        events=answer.events,
        calendar_ms=round(answer.timings.calendar),
        firestore_ms=round(answer.timings.firestore),
        outcome="not_modified" if answer.status == 304 else "listed",
        duration_ms=round((time.monotonic() - started) * 1000),
        **trace,
    )
    return Response(answer.body, status=answer.status, headers=answer.headers)
