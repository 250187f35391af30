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

A stale token (410) means a full resync of a bounded window (from a day ago, with deleted
events), then the new token.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from google.api_core import exceptions as gexc
from google.cloud import firestore
from google.cloud.firestore_v1.base_query import FieldFilter

from shared import logs
from shared.bookings import (
    Booking,
    BookingStatus,
    InvalidBooking,
    booking_ref,
    bookings,
    can_move,
)
from shared.calendar import calendar_api, event_id_for_booking
from shared.clients import firestore_client
from shared.config import TIME_ZONE, get_settings
from shared.errors import PermanentUpstreamError, TransientUpstreamError, UpstreamGone
from shared.retry import Deadline
from shared.store import firestore_call, release_lease, update_if_unchanged

SYNCS = "calendar_sync"
CHANGES = "calendar_changes"
"""Subcollection of a booking: one document per event version applied to it (an audit)."""
FULL_SYNC_WINDOW = timedelta(days=1)
"""A full resync looks at events ending after this long ago: past classes cannot change."""
PAGE_SIZE = 1000
"""Events per `events.list` page (Google allows 2500): few calls, bounded memory."""
SYNC_LEASE_SECONDS = 30.0
"""Covers one page (fetch and apply); a sync that died holds the calendar this long at most."""
MIN_ROUND_SECONDS = 2.0
"""Budget left below which no further round starts; it is left to the next sync."""
_WRITE_ATTEMPTS = 4
_BATCH_BOOKINGS = 200
"""Bookings per commit: two writes each (booking and audit), under Firestore's 500."""
GOOGLE_STATUSES = frozenset({"confirmed", "tentative", "cancelled"})


def _now() -> datetime:
    return datetime.now(UTC)


def sync_ref() -> firestore.DocumentReference:
    return firestore_client().collection(SYNCS).document(get_settings().calendar_id)


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
    another round for us; `incomplete`: time ran out with a round still owed; `superseded`:
    this sync lost its lease to another one, which stores the token instead."""

    outcome: str
    stats: SyncStats = field(default_factory=SyncStats)

    def as_json(self) -> dict[str, Any]:
        return {"outcome": self.outcome, **self.stats.as_json()}


# -- the lease ----------------------------------------------------------------------------------


def _lease_held(data: dict[str, Any], now: datetime) -> bool:
    lease = data.get("lease") or {}
    return bool(lease.get("owner") and lease.get("until") and lease["until"] > now)


def _take_lease(owner: str) -> tuple[bool, str]:
    """(True, stored token) if this caller now runs the sync; (False, "") if one is running."""

    def decide(data: dict[str, Any]) -> tuple[dict[str, Any], tuple[bool, str]]:
        now = _now()
        if _lease_held(data, now):
            return {"pending": int(data.get("pending") or 0) + 1}, (False, "")
        lease = {"owner": owner, "until": now + timedelta(seconds=SYNC_LEASE_SECONDS)}
        updates = {
            "calendarId": get_settings().calendar_id,
            "lease": lease,
            "pending": 0,  # this round covers everything notified so far
        }
        return updates, (True, str(data.get("syncToken") or ""))

    return update_if_unchanged(sync_ref(), decide, "take sync lease")


class _LeaseLost(Exception):
    """The sync's lease ran out and another sync took the calendar over."""


def _extend_lease(owner: str) -> None:
    """Keep the lease for another `SYNC_LEASE_SECONDS`, or raise `_LeaseLost`."""

    def decide(data: dict[str, Any]) -> tuple[dict[str, Any] | None, bool]:
        if (data.get("lease") or {}).get("owner") != owner:
            return None, False
        until = _now() + timedelta(seconds=SYNC_LEASE_SECONDS)
        return {"lease": {"owner": owner, "until": until}}, True

    if not update_if_unchanged(sync_ref(), decide, "extend sync lease"):
        raise _LeaseLost


def _finish_round(
    owner: str, next_token: str, round_stats: SyncStats, full: bool, deadline: Deadline
) -> tuple[bool, bool]:
    """Store the round's token if we still hold the lease; (another round?, round owed?)."""

    def decide(data: dict[str, Any]) -> tuple[dict[str, Any] | None, tuple[bool, bool] | None]:
        if (data.get("lease") or {}).get("owner") != owner:
            return None, None  # our lease ran out and another sync took over
        updates: dict[str, Any] = {
            "syncToken": next_token,
            "generation": int(data.get("generation") or 0) + 1,
            "lastSyncAt": firestore.SERVER_TIMESTAMP,
            "lastRound": {**round_stats.as_json(), "full": full},
        }
        if full:
            updates["lastFullSyncAt"] = firestore.SERVER_TIMESTAMP
        pending = int(data.get("pending") or 0)
        if pending and deadline.remaining() > MIN_ROUND_SECONDS:
            updates["pending"] = 0
            until = _now() + timedelta(seconds=SYNC_LEASE_SECONDS)
            updates["lease"] = {"owner": owner, "until": until}
            return updates, (True, False)
        updates["lease"] = firestore.DELETE_FIELD
        return updates, (False, bool(pending))

    result = update_if_unchanged(sync_ref(), decide, "store sync token")
    if result is None:
        raise _LeaseLost
    return result


# -- the sync ---------------------------------------------------------------------------------


def request_sync(deadline: Deadline) -> SyncResult:
    """Bring bookings up to date with the calendar, or leave it to the sync already running."""
    owner = uuid.uuid4().hex
    taken, token = _take_lease(owner)
    if not taken:
        return SyncResult("queued")
    stats = SyncStats()
    try:
        while True:
            next_token, round_stats, full = _round(owner, token, deadline)
            stats.rounds += 1
            stats.add(round_stats)
            again, owed = _finish_round(owner, next_token, round_stats, full, deadline)
            if not again:
                break
            token = next_token
    except _LeaseLost:
        logs.warning(
            "calendar sync lost its lease; another sync stores the token", **stats.as_json()
        )
        return SyncResult("superseded", stats)
    except BaseException:
        release_lease(sync_ref(), owner, "release sync lease")
        raise
    if owed:
        logs.warning("calendar sync ran out of time with a round owed", **stats.as_json())
        return SyncResult("incomplete", stats)
    return SyncResult("synced", stats)


def _round(owner: str, token: str, deadline: Deadline) -> tuple[str, SyncStats, bool]:
    """One pass from `token` (or a full resync): (next sync token, stats, was it full)."""
    if token:
        try:
            next_token, stats = _list_and_apply(owner, {"syncToken": token}, deadline)
            return next_token, stats, False
        except UpstreamGone:
            logs.warning("sync token no longer valid: full resync")
    since = (_now() - FULL_SYNC_WINDOW).isoformat()
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
        stats.add(apply_events(page.get("items") or []))
        page_token = str(page.get("nextPageToken") or "")
        if page_token:
            _extend_lease(owner)  # the next page is this sync's too
            continue
        next_token = str(page.get("nextSyncToken") or "")
        if not next_token:
            raise PermanentUpstreamError("events.list ended without a sync token")
        return next_token, stats


# -- applying changes -------------------------------------------------------------------------


def apply_events(events: Iterable[dict[str, Any]]) -> SyncStats:
    """Apply changed events to their bookings; events of other origins are ignored.

    Several events may name one booking (an admin duplicated a class event, private
    properties included): only the booking's own event counts, whatever the order, so a
    copy never hides a change of the real one.
    """
    stats = SyncStats()
    candidates: dict[str, list[dict[str, Any]]] = {}
    for event in events:
        stats.events += 1
        booking_id = _booking_id(event)
        if booking_id:
            candidates.setdefault(booking_id, []).append(event)
        else:
            stats.ignored += 1
    if not candidates:
        return stats
    refs = [booking_ref(booking_id) for booking_id in candidates]
    with firestore_call("read bookings"):
        snaps = {snap.id: snap for snap in firestore_client().get_all(refs)}
    pending = []
    for snap in snaps.values():
        if not snap.exists:
            continue  # a booking deleted since: nothing to update
        data = snap.to_dict() or {}
        own_id = own_event_id(snap.id, data)
        own = [event for event in candidates[snap.id] if str(event.get("id") or "") == own_id]
        stats.ignored += len(candidates[snap.id]) - len(own)
        if not own:
            continue
        change = booking_change(snap.id, data, own[-1])
        if change is not None:
            pending.append((snap, own[-1], change))
    for first in range(0, len(pending), _BATCH_BOOKINGS):
        chunk = pending[first : first + _BATCH_BOOKINGS]
        if _commit_changes(chunk):
            stats.applied += len(chunk)
            continue
        for snap, event, _ in chunk:  # someone wrote one of them meanwhile: one at a time
            if _apply(snap, event):
                stats.applied += 1
    return stats


def _commit_changes(
    chunk: list[tuple[firestore.DocumentSnapshot[Any], dict[str, Any], BookingChange]],
) -> bool:
    """All of `chunk` in one atomic commit, each booking guarded by its update time."""
    client = firestore_client()
    batch = client.batch()
    for snap, _, change in chunk:
        option = client.write_option(last_update_time=snap.update_time)
        batch.update(snap.reference, change.fields, option=option)
        batch.create(snap.reference.collection(CHANGES).document(change.version), change.record)
    try:
        with firestore_call("apply calendar changes"):
            batch.commit()
    except (gexc.FailedPrecondition, gexc.AlreadyExists):
        return False
    for snap, event, change in chunk:
        _log_applied(snap.id, event, change)
    return True


def _booking_id(event: dict[str, Any]) -> str:
    """The booking an event belongs to; a deleted event may carry only its id, so look it up."""
    private = (event.get("extendedProperties") or {}).get("private") or {}
    booking_id = str(private.get("bookingId") or "")
    if booking_id or event.get("status") != "cancelled" or not event.get("id"):
        return booking_id
    query = bookings().where(filter=FieldFilter("googleEventId", "==", str(event["id"])))
    with firestore_call("find booking by event"):
        matches = list(query.limit(2).stream())
    return matches[0].id if len(matches) == 1 else ""


def _apply(snap: firestore.DocumentSnapshot[Any], event: dict[str, Any]) -> bool:
    """Write the event's news into its booking, guarded by the booking's update time."""
    for _ in range(_WRITE_ATTEMPTS):
        if not snap.exists:
            return False
        change = booking_change(snap.id, snap.to_dict() or {}, event)
        if change is None:
            return False
        client = firestore_client()
        batch = client.batch()
        batch.update(
            snap.reference,
            change.fields,
            option=client.write_option(last_update_time=snap.update_time),
        )
        batch.create(snap.reference.collection(CHANGES).document(change.version), change.record)
        try:
            with firestore_call("apply calendar change"):
                batch.commit()
        except gexc.AlreadyExists:
            return False  # this event version was applied already
        except gexc.FailedPrecondition:
            with firestore_call("read booking"):
                snap = snap.reference.get()  # written meanwhile: decide again
            continue
        _log_applied(snap.id, event, change)
        return True
    raise TransientUpstreamError("booking kept changing while a calendar change was applied")


def _log_applied(booking_id: str, event: dict[str, Any], change: BookingChange) -> None:
    logs.info(
        "calendar change applied to booking",
        booking_id=booking_id,
        event_id=str(event.get("id") or ""),
        change=change.kinds,
    )


def own_event_id(booking_id: str, data: dict[str, Any]) -> str:
    """The id of the booking's event: the one linked to it, or the one it would get."""
    return str(data.get("googleEventId") or "") or event_id_for_booking(booking_id)


@dataclass(frozen=True)
class BookingChange:
    """The booking fields an event version changes, and the audit record of it."""

    kinds: list[str]
    fields: dict[str, Any]
    record: dict[str, Any]
    version: str


def booking_change(
    booking_id: str, data: dict[str, Any], event: dict[str, Any]
) -> BookingChange | None:
    """What `event` changes in the booking (mapper, no I/O); None when nothing does.

    Fields the payment flow is still writing are left alone: an event that is new, on time
    and unanswered changes nothing, so syncing it never races the payment webhook.
    """
    event_id = str(event.get("id") or "")
    if event_id != own_event_id(booking_id, data):
        return None  # not the booking's own event (a copy, or a foreign one)
    updated = _instant(event.get("updated"))
    seen = _instant(data.get("calendarUpdated"))
    if updated and seen and updated < seen:
        return None  # older than what the booking already reflects
    status = str(event.get("status") or "confirmed")
    fields: dict[str, Any] = {}
    record: dict[str, Any] = {}
    kinds: list[str] = []
    stored_status = str(data.get("calendarStatus") or "")
    if status == "cancelled":
        if stored_status != "cancelled":
            kinds.append("cancelled")
            fields["calendarStatus"] = "cancelled"
            fields["calendarCancelledAt"] = firestore.SERVER_TIMESTAMP
            fields["needsAttention"] = "event_cancelled"  # paid: an admin decides on a refund
            current = _status(data)
            if current is not None and current != BookingStatus.CANCELLED:
                if can_move(current, BookingStatus.CANCELLED):
                    fields["status"] = BookingStatus.CANCELLED.value
                record["previousStatus"] = current.value
    else:
        if stored_status in GOOGLE_STATUSES and stored_status != status:
            kinds.append("restored" if stored_status == "cancelled" else "status")
            fields["calendarStatus"] = status
            if stored_status == "cancelled":
                fields["needsAttention"] = "event_restored"
        moved = _moved_times(booking_id, data, event)
        if moved is not None:
            kinds.append("moved")
            fields["start"], fields["end"] = moved
            record["previousStart"], record["previousEnd"] = data.get("start"), data.get("end")
        responses = _responses(event)
        stored = data.get("attendeeResponses") or {}
        if responses is not None and _responses_differ(stored, responses):
            kinds.append("attendees")
            fields["attendeeResponses"] = responses
    if not kinds:
        return None
    fields.update(
        {
            "calendarUpdated": str(event.get("updated") or ""),
            "calendarEtag": str(event.get("etag") or ""),
            "calendarSyncedAt": firestore.SERVER_TIMESTAMP,
            "updatedAt": firestore.SERVER_TIMESTAMP,
        }
    )
    record.update(
        {
            "eventId": event_id,
            "eventUpdated": str(event.get("updated") or ""),
            "kinds": kinds,
            "appliedAt": firestore.SERVER_TIMESTAMP,
            **{k: v for k, v in fields.items() if k in ("start", "end", "attendeeResponses")},
        }
    )
    return BookingChange(kinds, fields, record, _version(event))


def _status(data: dict[str, Any]) -> BookingStatus | None:
    try:
        return BookingStatus(data.get("status") or BookingStatus.AWAITING_PAYMENT)
    except ValueError:
        return None


def _instant(raw: Any) -> datetime | None:
    if isinstance(raw, datetime):
        return raw
    if not isinstance(raw, str) or not raw:
        return None
    try:
        value = datetime.fromisoformat(raw)
    except ValueError:
        return None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _moved_times(
    booking_id: str, data: dict[str, Any], event: dict[str, Any]
) -> tuple[str, str] | None:
    """The event's start and end in the booking's zone (ISO with offset), if they moved."""
    start = _instant((event.get("start") or {}).get("dateTime"))
    end = _instant((event.get("end") or {}).get("dateTime"))
    if start is None or end is None:
        return None  # an all-day or trimmed event: no class times to compare
    zone, current = ZoneInfo(TIME_ZONE), None
    with contextlib.suppress(InvalidBooking):  # unreadable booking times: take the event's
        booking = Booking.from_document(booking_id, data)
        zone = booking.zone()
        current = booking.class_times()
    if current == (start, end):
        return None
    return start.astimezone(zone).isoformat(), end.astimezone(zone).isoformat()


def _responses(event: dict[str, Any]) -> dict[str, str] | None:
    attendees = event.get("attendees")
    if not isinstance(attendees, list):
        return None
    return {
        str(a["email"]).lower(): str(a.get("responseStatus") or "needsAction")
        for a in attendees
        if isinstance(a, dict) and a.get("email") and not a.get("resource")
    }


def _responses_differ(stored: Any, responses: dict[str, str]) -> bool:
    """A guest missing from the booking counts as `needsAction` (the state at creation)."""
    stored = stored if isinstance(stored, dict) else {}
    if stored and set(stored) != set(responses):
        return True
    return any(stored.get(email, "needsAction") != status for email, status in responses.items())


def _version(event: dict[str, Any]) -> str:
    """A Firestore id for one version of an event (its etag), for the audit record."""
    etag = str(event.get("etag") or "").strip().strip('"').replace("/", "_")
    return etag or f"u-{event.get('updated') or uuid.uuid4().hex}".replace("/", "_")
