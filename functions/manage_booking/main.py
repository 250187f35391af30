"""Admins cancel (optionally refunding) or reschedule a class: POST JSON, idempotent."""

from __future__ import annotations

import functions_framework
from flask import Request

from shared import logs
from shared.clock import Deadline
from shared.config import get_settings
from shared.services.booking_actions import apply_action
from shared.web.auth import require_admin
from shared.web.endpoint import Handled, endpoint, json_response, lower_headers
from shared.web.requests import parse_booking_action, read_body


@functions_framework.http
@endpoint("booking management")
def manage_booking(request: Request) -> Handled:
    deadline = Deadline(get_settings().handler_budget_seconds)
    admin = require_admin(lower_headers(request), deadline).identity
    logs.bind(caller=admin)
    action = parse_booking_action(read_body(request), request.content_type or "")
    logs.bind(booking_id=action.booking_id)
    body = apply_action(action, admin, deadline)
    return Handled(json_response(body), {"action": action.kind, "status": body["status"]})
