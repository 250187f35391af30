"""Google Calendar push notifications -> the booking changes they announce.

Google POSTs headers only. A known, live channel with the right secret token is trusted;
`sync` (the channel opened) is acknowledged, `exists`/`not_exists` run an incremental sync
(or queue one more round on the sync already running). Repeating a notification is harmless.
"""

from __future__ import annotations

import functions_framework
from flask import Request

from shared import logs
from shared.channels import PushNotification, verify_notification
from shared.config import get_settings
from shared.sync import request_sync
from shared.upstream import Deadline
from shared.web import Handled, endpoint, json_response, lower_headers


@functions_framework.http
@endpoint("calendar notification", webhook=True)
def calendar_notifications(request: Request) -> Handled:
    logs.bind(channel_id=request.headers.get("X-Goog-Channel-ID"))
    deadline = Deadline(get_settings().handler_budget_seconds)
    note = PushNotification.from_headers(lower_headers(request))
    verify_notification(note, deadline)
    if note.reports_change:
        body = request_sync(deadline).as_json()
    else:
        body = {"outcome": f"{note.state}_acknowledged"}
    log = {"state": note.state, "message_number": note.message_number, **body}
    return Handled(json_response(body), log)
