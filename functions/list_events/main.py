"""Upcoming classes for admins (JSON page or iCalendar feed), and the public read feed.

`?public=1` selects the public feed. A query flag rather than a second route, because the
path a function sees differs between cloudfunctions.net, its Cloud Run URL and the local
functions-framework; the flag is the same everywhere and is decided before any auth.
"""

from __future__ import annotations

import functions_framework
from flask import Request, Response

from shared import logs
from shared.clock import Deadline
from shared.config import get_settings
from shared.views import listing
from shared.web.auth import require_admin
from shared.web.endpoint import Handled, endpoint, lower_headers


@functions_framework.http
@endpoint("events listing", methods=("GET", "HEAD"))
def list_events(request: Request) -> Handled:
    deadline = Deadline(get_settings().handler_budget_seconds)
    args = request.args.to_dict(flat=False)
    if listing.wants_public(args):
        listing.require_public_enabled()
        caller = "public"
    else:
        caller = require_admin(lower_headers(request), deadline).identity
    logs.bind(caller=caller)
    query = listing.parse_query(args)
    answer = listing.list_events(query, request.headers.get("If-None-Match", ""), deadline)
    log = {
        "format": "ics" if query.ics else "json",
        "events": answer.events,
        "calendar_ms": round(answer.timings.calendar),
        "firestore_ms": round(answer.timings.firestore),
        "join_ms": round(answer.timings.join),
        "outcome": "not_modified" if answer.status == 304 else "listed",
    }
    return Handled(Response(answer.body, status=answer.status, headers=answer.headers), log)
