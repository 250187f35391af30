"""Google Calendar push notifications -> the booking changes they announce.

Google POSTs headers only. A known, live channel with the right secret token is trusted;
`sync` (the channel opened) is acknowledged, `exists`/`not_exists` run an incremental sync
(or queue one more round on the sync already running). Repeating a notification is harmless.
"""

from __future__ import annotations

import time

import functions_framework
from flask import Request, Response

from shared import logs
from shared.channels import PushNotification, verify_notification
from shared.config import get_settings
from shared.errors import MethodNotAllowed, PlatformError, RequestError
from shared.retry import Deadline
from shared.sync import request_sync
from shared.web import answer_error, json_response, lower_headers


@functions_framework.http
def calendar_notifications(request: Request) -> Response:
    started = time.monotonic()
    trace = logs.trace_field(request.headers.get("X-Cloud-Trace-Context"))
    channel_id = request.headers.get("X-Goog-Channel-ID")
    try:
        if request.method != "POST":
            raise MethodNotAllowed("use POST")
        note = PushNotification.from_headers(lower_headers(request))
        verify_notification(note)
        if note.reports_change:
            body = request_sync(Deadline(get_settings().handler_budget_seconds)).as_json()
        else:
            body = {"outcome": f"{note.state}_acknowledged"}
    except PlatformError as exc:
        severity = "WARNING" if isinstance(exc, RequestError) else "ERROR"
        logs.log(
            severity,
            "calendar notification failed",
            channel_id=channel_id,
            outcome=exc.code,
            detail=exc.message,
            duration_ms=round((time.monotonic() - started) * 1000),
            **trace,
        )
        return answer_error(exc, webhook=True)
    logs.info(
        "calendar notification handled",
        channel_id=note.channel_id,
        state=note.state,
        message_number=note.message_number,
        duration_ms=round((time.monotonic() - started) * 1000),
        **body,
        **trace,
    )
    return json_response(body)
