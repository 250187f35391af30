"""Group classes for admins: create a session (POST), list upcoming ones (GET), cancel or
move one (POST with `action`)."""

from __future__ import annotations

import functions_framework
from flask import Request

from shared import logs
from shared.clock import Deadline
from shared.config import get_settings
from shared.domain.commands import SessionAction
from shared.services.group_sessions import apply_session_action, create_session, list_sessions
from shared.web.auth import require_admin
from shared.web.endpoint import Handled, endpoint, json_response, lower_headers
from shared.web.requests import parse_session_body, read_body


@functions_framework.http
@endpoint("group sessions", methods=("GET", "POST"))
def class_sessions(request: Request) -> Handled:
    deadline = Deadline(get_settings().handler_budget_seconds)
    admin = require_admin(lower_headers(request), deadline).identity
    logs.bind(caller=admin)
    if request.method == "GET":
        listed = list_sessions(deadline)
        return Handled(json_response({"sessions": listed}), {"sessions": len(listed)})
    parsed = parse_session_body(read_body(request), request.content_type or "")
    logs.bind(session_id=parsed.session_id)
    if isinstance(parsed, SessionAction):
        body = apply_session_action(parsed, admin, deadline)
        return Handled(json_response(body), {"action": parsed.kind, "status": body["status"]})
    created, body = create_session(parsed, deadline)
    return Handled(json_response(body, 201 if created else 200), {"created": created})
