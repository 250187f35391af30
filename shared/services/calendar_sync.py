"""Incremental sync: Calendar changes since the last sync token, applied to their bookings.

A push notification only says "something changed"; `request_sync` asks Google what, with
the stored sync token, pages through every change, applies each to its booking, and stores
`nextSyncToken` only after the last page was applied. A crash in between leaves the old
token, so the next sync sees the same changes again; applying one is idempotent (a booking
is written only when the event differs from it).

One sync at a time per calendar: the `calendar_sync/{calendarId}` document holds a lease
with an expiry, extended after every page so a long round keeps it while one that died
frees the calendar soon. A notification that finds the lease taken adds to `pending` and
returns at once; the lease holder sees `pending` when it stores the token and does one more
round. The token is stored only by the lease holder, so it never goes back to an older one;
a sync that lost its lease anyway (a page slower than the lease) stops and says
`superseded`.

Syncs keep a pace (with `SYNC_QUEUE`): a round ends by setting `nextRoundAt`, the
`SYNC_INTERVAL_SECONDS` later; a push before then does not list but asks the sync queue for
one round at that time (the task is named after it, so however many pushes ask, one round
runs), and answers at once. A lone change is listed at once; a burst (the scheduling queue
creating hundreds of events, each echoed by a push) costs one listing per interval of the
user's Calendar quota instead of one per event. If the queue cannot take the round within a
second, the push syncs at once, as without a queue.

A stale token (410) means a full resync of a bounded window (from a day ago, with deleted
events), then the new token.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from shared import clock, logs
from shared.adapters import cloud_tasks, firestore
from shared.adapters.google_calendar import calendar_api
from shared.clock import Deadline
from shared.config import get_settings
from shared.domain.bookings import own_event_id
from shared.domain.calendar_changes import (
    BookingChange,
    decide_event_change,
    decide_session_event_change,
)
from shared.domain.seats import Session, own_session_event_id
from shared.domain.writes import REMOVE, SERVER_TIME
from shared.errors import (
    PermanentUpstreamError,
    TransientUpstreamError,
    UpstreamError,
    UpstreamGone,
)

__all__ = [
    "FULL_SYNC_WINDOW",
    "PAGE_SIZE",
    "SyncResult",
    "SyncStats",
    "apply_events",
    "request_sync",
]

FULL_SYNC_WINDOW = timedelta(days=1)
"""A full resync looks at events ending after this long ago: past classes cannot change."""
PAGE_SIZE = 1000
"""Events per `events.list` page (Google allows 2500): few calls, bounded memory."""
SYNC_LEASE_SECONDS = 30.0
"""Covers one page (fetch and apply); a sync that died holds the calendar this long at most."""
DEFER_SECONDS = 1.0
"""How long a push waits for the sync queue to take its deferred round before syncing itself."""
MIN_ROUND_SECONDS = 2.0
"""Budget left below which no further round starts; it is left to the next sync."""


@dataclass
class SyncStats:
    """What the rounds of one sync saw and did."""

    rounds: int = 0
    pages: int = 0
    events: int = 0
    applied: int = 0
    ignored: int = 0
    full_resyncs: int = 0

    def add(self, other: SyncStats) -> None:
        self.pages += other.pages
        self.events += other.events
        self.applied += other.applied
        self.ignored += other.ignored
        self.full_resyncs += other.full_resyncs

    def as_json(self) -> dict[str, int]:
        return {
            "rounds": self.rounds,
            "pages": self.pages,
            "events": self.events,
            "applied": self.applied,
            "ignored": self.ignored,
            "fullResyncs": self.full_resyncs,
        }


@dataclass(frozen=True)
class SyncResult:
    """`synced`: every change seen so far is applied; `queued`: the running sync will do
    another round for us; `deferred`: the sync queue holds a round at the sync's pace (as
    does `synced` when changes came during the round); `incomplete`: time ran out with a
    round still owed; `superseded`: this sync lost its lease to another one, which stores the
    token instead."""

    outcome: str
    stats: SyncStats = field(default_factory=SyncStats)

    def as_json(self) -> dict[str, Any]:
        return {"outcome": self.outcome, **self.stats.as_json()}


# -- the lease ----------------------------------------------------------------------------------


def _lease_held(data: dict[str, Any], now: datetime) -> bool:
    lease = data.get("lease") or {}
    return bool(lease.get("owner") and lease.get("until") and lease["until"] > now)


@dataclass(frozen=True)
class _Turn:
    """Who lists next: this caller (`run`, from `token`), the sync running (`queued`), or
    the round the pace holds until `round_at` (`deferred`)."""

    outcome: str
    token: str = ""
    round_at: datetime | None = None


def _take_lease(owner: str, deadline: Deadline, *, paced: bool) -> _Turn:
    def decide(data: dict[str, Any]) -> tuple[dict[str, Any] | None, _Turn]:
        now = clock.now()
        if _lease_held(data, now):
            return {"pending": int(data.get("pending") or 0) + 1}, _Turn("queued")
        round_at = data.get("nextRoundAt")
        if paced and isinstance(round_at, datetime) and round_at > now:
            return None, _Turn("deferred", round_at=round_at)
        lease = {"owner": owner, "until": now + timedelta(seconds=SYNC_LEASE_SECONDS)}
        updates = {
            "calendarId": get_settings().calendar_id,
            "lease": lease,
            "pending": 0,  # this round covers everything notified so far
        }
        return updates, _Turn("run", str(data.get("syncToken") or ""))

    return firestore.update_if_unchanged(firestore.sync_ref(), decide, deadline, "take sync lease")


class _LeaseLost(Exception):
    """The sync's lease ran out and another sync took the calendar over."""


def _extend_lease(owner: str, deadline: Deadline) -> None:
    """Keep the lease for another `SYNC_LEASE_SECONDS`, or raise `_LeaseLost`."""

    def decide(data: dict[str, Any]) -> tuple[dict[str, Any] | None, bool]:
        if (data.get("lease") or {}).get("owner") != owner:
            return None, False
        until = clock.now() + timedelta(seconds=SYNC_LEASE_SECONDS)
        return {"lease": {"owner": owner, "until": until}}, True

    if not firestore.update_if_unchanged(
        firestore.sync_ref(), decide, deadline, "extend sync lease"
    ):
        raise _LeaseLost


@dataclass(frozen=True)
class _Next:
    """After a round: `done`, `again` (now), `deferred` (the pace's round at `round_at`) or
    `owed` (changes came but no time is left for their round)."""

    step: str
    round_at: datetime | None = None


def _finish_round(
    owner: str,
    next_token: str,
    round_stats: SyncStats,
    full: bool,
    deadline: Deadline,
    *,
    paced: bool,
) -> _Next:
    """Store the round's token if we still hold the lease, and say what comes next."""

    def decide(data: dict[str, Any]) -> tuple[dict[str, Any] | None, _Next | None]:
        if (data.get("lease") or {}).get("owner") != owner:
            return None, None  # our lease ran out and another sync took over
        now = clock.now()
        round_at = now + timedelta(seconds=get_settings().sync_interval_seconds)
        updates: dict[str, Any] = {
            "syncToken": next_token,
            "generation": int(data.get("generation") or 0) + 1,
            "lastSyncAt": SERVER_TIME,
            "nextRoundAt": round_at,
            "lastRound": {**round_stats.as_json(), "full": full},
        }
        if full:
            updates["lastFullSyncAt"] = SERVER_TIME
        pending = int(data.get("pending") or 0)
        updates["lease"] = REMOVE
        if pending and paced:
            return updates, _Next("deferred", round_at)
        if pending and deadline.remaining() > MIN_ROUND_SECONDS:
            updates["pending"] = 0
            until = now + timedelta(seconds=SYNC_LEASE_SECONDS)
            updates["lease"] = {"owner": owner, "until": until}
            return updates, _Next("again")
        return updates, _Next("owed" if pending else "done")

    result = firestore.update_if_unchanged(
        firestore.sync_ref(), decide, deadline, "store sync token"
    )
    if result is None:
        raise _LeaseLost
    return result


# -- the sync ---------------------------------------------------------------------------------


def request_sync(deadline: Deadline, *, due: bool = False) -> SyncResult:
    """Bring bookings up to date with the calendar, leave it to the sync already running, or
    (sooner than the pace allows) to the round the sync queue holds. `due`: this is that
    round, or a catch-up that must not wait."""
    owner = uuid.uuid4().hex
    paced = cloud_tasks.sync_paced()
    turn = _take_lease(owner, deadline, paced=paced and not due)
    if turn.outcome == "deferred":
        assert turn.round_at is not None
        if _defer(turn.round_at, deadline):
            return SyncResult("deferred")
        turn = _take_lease(owner, deadline, paced=False)
    if turn.outcome == "queued":
        return SyncResult("queued")
    token = turn.token
    stats = SyncStats()
    try:
        while True:
            next_token, round_stats, full = _round(owner, token, deadline)
            stats.rounds += 1
            stats.add(round_stats)
            after = _finish_round(owner, next_token, round_stats, full, deadline, paced=paced)
            if after.step != "again":
                break
            token = next_token
    except _LeaseLost:
        logs.warning(
            "calendar sync lost its lease; another sync stores the token", **stats.as_json()
        )
        return SyncResult("superseded", stats)
    except BaseException:
        firestore.release_lease(firestore.sync_ref(), owner, deadline, "release sync lease")
        raise
    if after.step == "deferred":
        assert after.round_at is not None
        if _defer(after.round_at, deadline):
            return SyncResult("synced", stats)
        if deadline.remaining() > MIN_ROUND_SECONDS:  # the queue failed us: the round now
            again = request_sync(deadline, due=True)
            stats.add(again.stats)
            stats.rounds += again.stats.rounds
            return SyncResult(again.outcome, stats)
    if after.step != "done":
        logs.warning("calendar sync ran out of time with a round owed", **stats.as_json())
        return SyncResult("incomplete", stats)
    return SyncResult("synced", stats)


def _defer(round_at: datetime, deadline: Deadline) -> bool:
    """Ask the sync queue for the round at `round_at`; False if it cannot take it soon (the
    round is then done at once: a queue having trouble must not hold the push's answer)."""
    try:
        cloud_tasks.enqueue_sync_round(round_at, Deadline(min(DEFER_SECONDS, deadline.remaining())))
    except UpstreamError as exc:
        logs.warning("sync queue refused a deferred round: syncing now", error=exc.code)
        return False
    return True


def _round(owner: str, token: str, deadline: Deadline) -> tuple[str, SyncStats, bool]:
    """One pass from `token` (or a full resync): (next sync token, stats, was it full)."""
    if token:
        try:
            next_token, stats = _list_and_apply(owner, {"syncToken": token}, deadline)
            return next_token, stats, False
        except UpstreamGone:
            logs.warning("sync token no longer valid: full resync")
    since = (clock.now() - FULL_SYNC_WINDOW).isoformat()
    query = {"timeMin": since, "showDeleted": True}
    next_token, stats = _list_and_apply(owner, query, deadline)
    stats.full_resyncs += 1
    return next_token, stats, True


def _list_and_apply(owner: str, query: dict[str, Any], deadline: Deadline) -> tuple[str, SyncStats]:
    """Every page of one listing, each applied (and the lease extended) before the next."""
    api = calendar_api()
    stats = SyncStats()
    page_token = ""
    while True:
        if deadline.expired():
            raise TransientUpstreamError("calendar sync ran out of time; the token was kept")
        page_query = {**query, "maxResults": PAGE_SIZE}
        if page_token:
            page_query["pageToken"] = page_token
        page = api.list_events(page_query, deadline)
        stats.pages += 1
        stats.add(apply_events(page.get("items") or [], deadline))
        page_token = str(page.get("nextPageToken") or "")
        if page_token:
            _extend_lease(owner, deadline)  # the next page is this sync's too
            continue
        next_token = str(page.get("nextSyncToken") or "")
        if not next_token:
            raise PermanentUpstreamError("events.list ended without a sync token")
        return next_token, stats


# -- applying changes -------------------------------------------------------------------------


def apply_events(events: Iterable[dict[str, Any]], deadline: Deadline) -> SyncStats:
    """Apply changed events to their bookings; events of other origins are ignored.

    Several events may name one booking (an admin duplicated a class event, private
    properties included): only the booking's own event counts, whatever the order, so a
    copy never hides a change of the real one. A group session's event changes the session
    and, through the same decision as a one-to-one class, the booking of every seat.
    """
    stats = SyncStats()
    candidates: dict[str, list[dict[str, Any]]] = {}
    session_events: dict[str, dict[str, Any]] = {}
    for event in events:
        stats.events += 1
        booking_id, session_id = _owner(event, deadline)
        if booking_id:
            candidates.setdefault(booking_id, []).append(event)
        elif session_id:
            session_events[session_id] = event  # the page's last version of it
        else:
            stats.ignored += 1
    for session_id, event in session_events.items():
        seats = _apply_to_session(session_id, event, deadline)
        if seats is None:
            stats.ignored += 1
            continue
        for booking_id in seats:
            candidates.setdefault(booking_id, []).append(event)
    pending: list[tuple[firestore.BookingRead, BookingChange, dict[str, Any]]] = []
    for booking_id, read in firestore.read_bookings(candidates, deadline).items():
        assert read.data is not None
        own_id = own_event_id(booking_id, read.data)
        own = [e for e in candidates[booking_id] if str(e.get("id") or "") == own_id]
        stats.ignored += len(candidates[booking_id]) - len(own)
        if not own:
            continue
        change = decide_event_change(booking_id, read.data, own[-1])
        if change is not None:
            pending.append((read, change, own[-1]))
    for first in range(0, len(pending), firestore.BATCH_BOOKINGS):
        chunk = pending[first : first + firestore.BATCH_BOOKINGS]
        if firestore.commit_changes([(read, change) for read, change, _ in chunk], deadline):
            stats.applied += len(chunk)
            for read, change, event in chunk:
                _log_applied(read.booking_id, event, change)
            continue
        for read, _, event in chunk:  # someone wrote one of them meanwhile: one at a time
            if _apply_one(read.booking_id, event, deadline):
                stats.applied += 1
    return stats


def _owner(event: dict[str, Any], deadline: Deadline) -> tuple[str, str]:
    """(booking, session) the event belongs to, one of them or neither; a deleted event may
    carry only its id, so it is looked up (a session first: its seats all link its event)."""
    private = (event.get("extendedProperties") or {}).get("private") or {}
    booking_id = str(private.get("bookingId") or "")
    session_id = str(private.get("sessionId") or "")
    if booking_id or session_id or event.get("status") != "cancelled" or not event.get("id"):
        return booking_id, session_id
    event_id = str(event["id"])
    session_id = firestore.find_session_by_event(event_id, deadline)
    if session_id:
        return "", session_id
    return firestore.find_booking_by_event(event_id, deadline), ""


def _apply_to_session(
    session_id: str, event: dict[str, Any], deadline: Deadline
) -> list[str] | None:
    """Apply the event to its session; the bookings holding a seat, or None when the event is
    not the session's own (or the session is unknown)."""

    def attempt() -> list[str] | None:
        read = firestore.read_session(session_id, deadline)
        if read.data is None:
            return None
        own = own_session_event_id(session_id, read.data)
        if str(event.get("id") or "") != own:
            return None
        fields = decide_session_event_change(session_id, read.data, event)
        if fields is not None:
            firestore.commit_session(read, fields, deadline)
            logs.info(
                "calendar change applied to session",
                session_id=session_id,
                event_id=own,
                change="cancelled" if "status" in fields else "moved",
            )
        return list(Session.from_document(session_id, read.data).seats)

    return firestore.until_committed(attempt, deadline, "apply calendar change to session")


def _apply_one(booking_id: str, event: dict[str, Any], deadline: Deadline) -> bool:
    """Read the booking, decide what the event changes, commit if unchanged; again if not."""

    def attempt() -> bool:
        read = firestore.read_booking(booking_id, deadline)
        if read.data is None:
            return False
        change = decide_event_change(booking_id, read.data, event)
        if change is None or not firestore.commit_change(read, change, deadline):
            return False  # nothing to change, or this event version was applied already
        _log_applied(booking_id, event, change)
        return True

    return firestore.until_committed(attempt, deadline, "apply calendar change")


def _log_applied(booking_id: str, event: dict[str, Any], change: BookingChange) -> None:
    logs.info(
        "calendar change applied to booking",
        booking_id=booking_id,
        event_id=str(event.get("id") or ""),
        change=change.kinds,
    )
