"""Integration health for the admin console: is Google still connected, is the calendar
watched, when did the last sync and the last reconcile run, and what did they do.

Everything comes from the documents the platform already keeps (the integration status,
the watch channel, the sync state) plus one record the reconcile function leaves after each
sweep, all read in one Firestore round trip; beside it, one `events.list` of a single event
checks that the stored grant still works, because the status document only learns that a
grant was revoked when a Calendar call next fails.
"""

from __future__ import annotations

import contextvars
from collections import Counter
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from typing import Any

from shared import clock, logs
from shared.adapters import firestore
from shared.adapters.google_calendar import calendar_api
from shared.clock import TIME_ZONE, Deadline, local_iso
from shared.config import get_settings
from shared.domain.writes import SERVER_TIME
from shared.errors import PlatformError, ReauthorizationRequired

__all__ = [
    "PROBE_SECONDS",
    "read_health",
    "record_reconcile_run",
]

PROBE_SECONDS = 5.0
"""At most this long for the grant check: the health answer must come even if Calendar hangs."""
RECORD_SECONDS = 3.0
_pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="health")


def record_reconcile_run(
    outcomes: Iterable[str], caller: str, duration_ms: int, remaining: bool = False
) -> None:
    """Keep what the sweep just did (best effort: a failure to record only logs)."""
    counts = Counter(outcomes)
    document = {
        "ranAt": SERVER_TIME,
        "caller": caller,
        "bookings": sum(counts.values()),
        "counts": dict(counts),
        "durationMs": duration_ms,
        "remaining": remaining,
    }
    try:
        firestore.set_document(
            firestore.reconcile_run_ref(),
            document,
            Deadline(RECORD_SECONDS),
            "record reconcile run",
        )
    except PlatformError as exc:
        logs.warning("could not record the reconcile run", detail=exc.message)


def read_health(deadline: Deadline, now: datetime | None = None) -> dict[str, Any]:
    """The console's health view: grant, watch channel, last sync, last reconcile."""
    refs = [
        firestore.integration_status_ref(),
        firestore.watch_ref(),
        firestore.sync_ref(),
        firestore.reconcile_run_ref(),
    ]
    read = _pool.submit(
        contextvars.copy_context().run,
        firestore.get_many,
        refs,
        deadline,
        "read integration health",
    )
    probe = _probe_grant(deadline)
    snaps = read.result()
    status, watch, sync, reconcile = (
        (snaps[ref.path].to_dict() or {}) if snaps[ref.path].exists else {} for ref in refs
    )
    now = now or clock.now()
    return {
        "checkedAt": local_iso(now),
        "timeZone": TIME_ZONE,
        "grant": _grant(status, probe),
        "watch": _watch(watch, now),
        "sync": _sync(sync, now),
        "reconcile": _reconcile(reconcile),
    }


def _probe_grant(deadline: Deadline) -> dict[str, Any]:
    """One event listed with the stored grant: does Calendar still accept it?"""
    probe_deadline = Deadline(min(PROBE_SECONDS, deadline.remaining()))
    try:
        calendar_api().list_events({"maxResults": 1, "fields": "accessRole"}, probe_deadline)
    except PlatformError as exc:
        return {"ok": False, "code": exc.code, "message": exc.message}
    return {"ok": True, "code": None, "message": None}


def _grant(status: dict[str, Any], probe: dict[str, Any]) -> dict[str, Any]:
    recorded = str(status.get("status") or "unknown")
    if probe["ok"]:
        state = "connected"
    elif probe["code"] == ReauthorizationRequired.code or recorded == "needs_reconsent":
        state = "needs_reconsent"
    else:
        state = "unreachable" if probe["code"] == "upstream_unavailable" else "error"
    return {
        "state": state,
        "recordedStatus": recorded,
        "mode": status.get("mode") or get_settings().calendar_auth,
        "calendarId": status.get("calendarId") or get_settings().calendar_id,
        "connectedBy": status.get("connectedBy"),
        "connectedAt": local_iso(status.get("connectedAt")),
        "reason": status.get("reason"),
        "unusableSince": local_iso(status.get("unusableSince")),
        "check": probe,
    }


def _watch(data: dict[str, Any], now: datetime) -> dict[str, Any]:
    expiration = data.get("expiration")
    renew_before = timedelta(seconds=get_settings().channel_renew_before_seconds)
    if not data.get("channelId") or not isinstance(expiration, datetime):
        state, seconds_left = "missing", None
    else:
        left = expiration - now
        seconds_left = int(left.total_seconds())
        state = "ok" if left > renew_before else "renew_soon" if left > timedelta(0) else "expired"
    return {
        "state": state,
        "channelId": data.get("channelId"),
        "expiration": local_iso(expiration),
        "secondsLeft": seconds_left,
        "renewedAt": local_iso(data.get("renewedAt")),
    }


def _sync(data: dict[str, Any], now: datetime) -> dict[str, Any]:
    lease = data.get("lease") or {}
    until = lease.get("until") if isinstance(lease, dict) else None
    round_stats = data.get("lastRound")
    return {
        "lastSyncAt": local_iso(data.get("lastSyncAt")),
        "lastFullSyncAt": local_iso(data.get("lastFullSyncAt")),
        "lastRound": round_stats if isinstance(round_stats, dict) else None,
        "pending": int(data.get("pending") or 0),
        "running": isinstance(until, datetime) and until > now,
    }


def _reconcile(data: dict[str, Any]) -> dict[str, Any]:
    counts = data.get("counts")
    return {
        "lastRunAt": local_iso(data.get("ranAt")),
        "caller": data.get("caller"),
        "bookings": int(data.get("bookings") or 0),
        "counts": {str(k): int(v) for k, v in counts.items()} if isinstance(counts, dict) else {},
        "durationMs": data.get("durationMs"),
    }
