"""The admin console: one page for the people who run the school, and its read views.

GET (any path) serves the page; a path ending in one of its files (`app.js`...) serves that
file. `?view=attention` and `?view=health` answer JSON to an admin (ID token or API key).
POST marks an attention item handled, and takes an admin's Google ID token only.
Query flags rather than routes, as in list_events: the path a function sees differs between
cloudfunctions.net, Cloud Run and the local stack.
"""

from __future__ import annotations

from pathlib import Path

import functions_framework
from flask import Request

from shared import logs
from shared.clock import Deadline
from shared.config import get_settings
from shared.errors import InvalidRequest
from shared.views import attention, health
from shared.web import console
from shared.web.auth import require_admin
from shared.web.endpoint import Handled, endpoint, lower_headers
from shared.web.requests import parse_handled, read_body

STATIC = Path(__file__).resolve().parent / "static"


@functions_framework.http
@endpoint("admin console", methods=("GET", "HEAD", "POST"), on_error=console.error_answer)
def admin_console(request: Request) -> Handled:
    deadline = Deadline(get_settings().handler_budget_seconds)
    headers = lower_headers(request)
    if request.method == "POST":
        admin = console.require_person(headers, deadline)
        logs.bind(caller=admin.identity)
        action = parse_handled(read_body(request), request.content_type or "")
        body = attention.mark_handled(action, admin.identity, deadline)
        return Handled(console.json_answer(body), {"item": action.item_id, **body})
    view = request.args.get("view")
    if view is not None:
        if view not in console.VIEWS:
            raise InvalidRequest(
                f"view must be one of {', '.join(console.VIEWS)}", parameter="view"
            )
        logs.bind(caller=require_admin(headers, deadline).identity)
        answer = (
            attention.read_attention(deadline)
            if view == "attention"
            else health.read_health(deadline)
        )
        return Handled(console.json_answer(answer), {"view": view})
    name = console.asset_name(request.path)
    if name:
        response = console.static_asset(STATIC, name, request.headers.get("If-None-Match", ""))
        return Handled(response, {"asset": name, "status": response.status_code})
    return Handled(console.page(STATIC), {"outcome": "page"})
