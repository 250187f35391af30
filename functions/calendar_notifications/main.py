"""Google Calendar push notifications -> the booking changes they announce.

Google POSTs headers only. A known, live channel with the right secret token is trusted;
`sync` (the channel opened) is acknowledged, `exists`/`not_exists` run an incremental sync
(or queue one more round on the sync already running, or, sooner than the sync's pace
allows, ask the sync queue for the paced round). Repeating a notification is harmless.

The sync queue's deferred round comes here too, without channel headers and with an OIDC
token of the tasks identity (an admin may send one by hand): it runs the round at once.
"""

from __future__ import annotations

import functions_framework
from flask import Request

from shared import logs
from shared.clock import Deadline
from shared.config import get_settings
from shared.services.calendar_sync import request_sync
from shared.services.channels import PushNotification, verify_notification
from shared.web.auth import require_tasks_or_admin
from shared.web.endpoint import Handled, endpoint, json_response, lower_headers


@functions_framework.http
@endpoint("calendar notification", webhook=True)
def calendar_notifications(request: Request) -> Handled:
    settings = get_settings()
    deadline = Deadline(settings.handler_budget_seconds)
    headers = lower_headers(request)
    credential = "authorization" in headers or "x-api-key" in headers
    if "x-goog-channel-id" not in headers and credential:
        logs.bind(caller=require_tasks_or_admin(headers, deadline, settings.notifications_url))
        body = request_sync(deadline, due=True).as_json()
        return Handled(json_response(body), {"state": "deferred_round", **body})
    logs.bind(channel_id=request.headers.get("X-Goog-Channel-ID"))
    note = PushNotification.from_headers(headers)
    verify_notification(note, deadline)
    if note.reports_change:
        body = request_sync(deadline).as_json()
    else:
        body = {"outcome": f"{note.state}_acknowledged"}
    log = {"state": note.state, "message_number": note.message_number, **body}
    return Handled(json_response(body), log)
