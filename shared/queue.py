"""The queue between payments and Google Calendar (Cloud Tasks).

In an enrollment burst the webhook must not call Calendar inline: Google allows one user
about 600 requests a minute and fewer invitations still. With `SCHEDULING_QUEUE` set, the
webhook commits the booking as paid and enqueues one named task per booking; the queue
(paced below Calendar's rate in `infra/`) calls `schedule_class`, which creates the event.
A second enqueue of the same booking meets the reserved name (409) and is fine; reconcile
stays the net behind the queue (names are reserved for a limited time only).

Google's usage limit (`quotaExceeded`) pauses the queue: bookings wait as paid, nothing is
lost, and the queue resumes when the limit should have passed (the reconcile run checks)
or when an admin says so.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta

from google.cloud import tasks_v2

from shared import logs, store
from shared.bookings import REMOVE, SERVER_TIME
from shared.clients import cloud_tasks_client
from shared.config import get_settings
from shared.errors import UpstreamConflict
from shared.tokens import integration_status_ref
from shared.upstream import Deadline, Upstream, call

__all__ = ["LIMITED_FOR", "enabled", "enqueue_class", "pause_for_usage_limit", "resume_if_due"]

LIMITED_FOR = timedelta(hours=1)
"""How long the queue stays paused after Google's usage limit before a scheduled resume."""

_reported = False  # the usage limit is logged at ERROR once per instance


def enabled() -> bool:
    return bool(get_settings().scheduling_queue)


def _task_name(booking_id: str) -> str:
    digest = hashlib.sha256(f"class:{booking_id}".encode()).hexdigest()[:40]
    return f"{get_settings().scheduling_queue}/tasks/class-{digest}"


def enqueue_class(booking_id: str, deadline: Deadline) -> bool:
    """One task for the booking's class; False when it is queued already (its name is taken)."""
    settings = get_settings()
    task = tasks_v2.Task(
        name=_task_name(booking_id),
        http_request={
            "http_method": tasks_v2.HttpMethod.POST,
            "url": settings.schedule_class_url,
            "headers": {"Content-Type": "application/json"},
            "body": json.dumps({"bookingId": booking_id}).encode(),
            "oidc_token": {
                "service_account_email": settings.tasks_invoker_email,
                "audience": settings.tasks_audience or settings.schedule_class_url,
            },
        },
    )
    try:
        call(
            Upstream.CLOUD_TASKS,
            lambda t: cloud_tasks_client().create_task(
                parent=settings.scheduling_queue, task=task, retry=None, timeout=t
            ),
            deadline,
            "enqueue class",
        )
    except UpstreamConflict:
        return False
    return True


def pause_for_usage_limit(detail: str, deadline: Deadline) -> None:
    """Google's usage limit: pause the queue and record it for admins, logged once."""
    global _reported
    settings = get_settings()
    if settings.scheduling_queue:
        call(
            Upstream.CLOUD_TASKS,
            lambda t: cloud_tasks_client().pause_queue(
                name=settings.scheduling_queue, retry=None, timeout=t
            ),
            deadline,
            "pause queue",
        )
    resume_at = datetime.now(UTC) + LIMITED_FOR
    limited = {"reason": "quotaExceeded", "since": SERVER_TIME, "resumeAt": resume_at}
    store.set_document(
        integration_status_ref(), {"limited": limited}, deadline, "record usage limit", merge=True
    )
    if not _reported:
        _reported = True
        logs.error("Google Calendar usage limit reached: queue paused", detail=detail)


def resume_if_due(deadline: Deadline, *, now: bool = False) -> bool:
    """Resume a queue paused for the usage limit once its time has come (or `now`)."""
    global _reported
    settings = get_settings()
    status = store.get(integration_status_ref(), deadline, "read integration status")
    limited = (status.to_dict() or {}).get("limited") if status.exists else None
    if not limited:
        return False
    resume_at = limited.get("resumeAt")
    if not now and isinstance(resume_at, datetime) and resume_at > datetime.now(UTC):
        return False
    if settings.scheduling_queue:
        call(
            Upstream.CLOUD_TASKS,
            lambda t: cloud_tasks_client().resume_queue(
                name=settings.scheduling_queue, retry=None, timeout=t
            ),
            deadline,
            "resume queue",
        )
    store.update(
        integration_status_ref(),
        {"limited": REMOVE, "resumedAt": SERVER_TIME},
        deadline,
        "clear usage limit",
    )
    _reported = False
    logs.info("Google Calendar usage limit over: queue resumed")
    return True
