"""The Cloud Tasks queues between our functions and Google Calendar.

`SCHEDULING_QUEUE`, between payments and Calendar. In an enrollment burst the webhook must
not call Calendar inline: Google allows one user about 600 requests a minute and fewer
invitations still. With it set, the webhook commits the booking as paid and enqueues one
named task per booking; the queue (paced below Calendar's rate in `infra/`) calls
`schedule_class`, which creates the event.
A second enqueue of the same booking meets the reserved name (409) and is fine; reconcile
stays the net behind the queue (names are reserved for a limited time only).

Google's usage limit (`quotaExceeded`) pauses the queue: bookings wait as paid, nothing is
lost, and the queue resumes when the limit should have passed (the reconcile run checks)
or when an admin says so.

`SYNC_QUEUE` holds the sync's deferred rounds (`shared/services/calendar_sync.py`): a push
that comes sooner than the sync's pace allows asks for one round at the paced time, named
after that time, so however many pushes ask, one round runs. It is never paused: reading
changes back is not what Google's usage limit stops.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timedelta

from google.cloud import tasks_v2

from shared import clock, logs
from shared.adapters import firestore
from shared.adapters.boundary import Upstream, call
from shared.adapters.clients import cloud_tasks_client
from shared.clock import Deadline
from shared.config import get_settings
from shared.domain.writes import REMOVE, SERVER_TIME
from shared.errors import UpstreamConflict

__all__ = [
    "LIMITED_FOR",
    "enqueue_class",
    "enqueue_sync_round",
    "pause_for_usage_limit",
    "resume_if_due",
    "scheduling_enabled",
    "sync_paced",
]

LIMITED_FOR = timedelta(hours=1)
"""How long the queue stays paused after Google's usage limit before a scheduled resume."""

_reported = False  # the usage limit is logged at ERROR once per instance


def scheduling_enabled() -> bool:
    """Classes are created by the queue's calls to schedule_class, not by the webhook."""
    return bool(get_settings().scheduling_queue)


def sync_paced() -> bool:
    """Syncs keep their pace: a round sooner than it allows is deferred to the sync queue."""
    return bool(get_settings().sync_queue)


def _task_id(kind: str, key: str) -> str:
    """A task id derived from what the task is for: a second enqueue meets the reserved name."""
    return f"{kind}-{hashlib.sha256(f'{kind}:{key}'.encode()).hexdigest()[:40]}"


def _enqueue(
    queue: str,
    task_id: str,
    url: str,
    body: dict[str, str],
    deadline: Deadline,
    what: str,
    *,
    at: datetime | None = None,
) -> bool:
    """POST `body` to `url` with the tasks identity's OIDC token; False when the name is
    taken (the same work is queued, or was within the last hour or so)."""
    settings = get_settings()
    task = tasks_v2.Task(
        name=f"{queue}/tasks/{task_id}",
        schedule_time=at,
        http_request={
            "http_method": tasks_v2.HttpMethod.POST,
            "url": url,
            "headers": {"Content-Type": "application/json"},
            "body": json.dumps(body).encode(),
            "oidc_token": {
                "service_account_email": settings.tasks_invoker_email,
                "audience": settings.tasks_audience or url,
            },
        },
    )
    try:
        call(
            Upstream.CLOUD_TASKS,
            lambda t: cloud_tasks_client().create_task(
                parent=queue, task=task, retry=None, timeout=t
            ),
            deadline,
            what,
        )
    except UpstreamConflict:
        return False
    return True


def enqueue_class(booking_id: str, deadline: Deadline) -> bool:
    """One task for the booking's class; False when it is queued already (its name is taken)."""
    settings = get_settings()
    return _enqueue(
        settings.scheduling_queue,
        _task_id("class", booking_id),
        settings.schedule_class_url,
        {"bookingId": booking_id},
        deadline,
        "enqueue class",
    )


def enqueue_sync_round(round_at: datetime, deadline: Deadline) -> bool:
    """The sync round due at `round_at`; False when a push asked for it already."""
    settings = get_settings()
    due = round_at.isoformat()
    return _enqueue(
        settings.sync_queue,
        _task_id("sync", f"{settings.calendar_id}:{due}"),
        settings.notifications_url,
        {"deferredRound": due},
        deadline,
        "enqueue sync round",
        at=round_at,
    )


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
    resume_at = clock.now() + LIMITED_FOR
    limited = {"reason": "quotaExceeded", "since": SERVER_TIME, "resumeAt": resume_at}
    firestore.set_document(
        firestore.integration_status_ref(),
        {"limited": limited},
        deadline,
        "record usage limit",
        merge=True,
    )
    if not _reported:
        _reported = True
        logs.error("Google Calendar usage limit reached: queue paused", detail=detail)


def resume_if_due(deadline: Deadline, *, now: bool = False) -> bool:
    """Resume a queue paused for the usage limit once its time has come (or `now`)."""
    global _reported
    settings = get_settings()
    status = firestore.get(firestore.integration_status_ref(), deadline, "read integration status")
    limited = (status.to_dict() or {}).get("limited") if status.exists else None
    if not limited:
        return False
    resume_at = limited.get("resumeAt")
    if not now and isinstance(resume_at, datetime) and resume_at > clock.now():
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
    firestore.update(
        firestore.integration_status_ref(),
        {"limited": REMOVE, "resumedAt": SERVER_TIME},
        deadline,
        "clear usage limit",
    )
    _reported = False
    logs.info("Google Calendar usage limit over: queue resumed")
    return True
