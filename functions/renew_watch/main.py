"""Keep a push channel open on the calendar, and catch up on changes a lost push missed.

Cloud Scheduler calls this every 15 minutes with an OIDC token; an admin may call it by hand
(`?force=1` replaces a channel that still has days to live). Each run also runs one
incremental sync, even when the renewal fails, because Google does not redeliver a
notification that failed.
"""

from __future__ import annotations

import functions_framework
from flask import Request

from shared import logs
from shared.clock import Deadline
from shared.services.channels import keep_watching
from shared.web.auth import require_scheduler_or_admin
from shared.web.endpoint import Handled, endpoint, json_response, lower_headers

BUDGET_SECONDS = 50.0
"""Inside Cloud Functions' default 60 s timeout, with room to answer."""


@functions_framework.http
@endpoint("channel renewal")
def renew_watch(request: Request) -> Handled:
    deadline = Deadline(BUDGET_SECONDS)
    logs.bind(caller=require_scheduler_or_admin(lower_headers(request), deadline))
    force = request.args.get("force", "").lower() in ("1", "true", "yes")
    renewal, sync = keep_watching(deadline, force=force)
    body = {**renewal.as_json(), "sync": sync.as_json()}
    log = {
        "outcome": renewal.outcome,
        "channel_id": renewal.channel_id,
        "sync_outcome": sync.outcome,
    }
    return Handled(json_response(body), log)
