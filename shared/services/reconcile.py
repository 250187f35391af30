"""The reconcile sweep: heal what deliveries, pushes and outages left half-done.

Cloud Scheduler runs it every 15 minutes (and an admin may, after connecting Google again).
Each kind of backlog is paged through in a stable order until it is empty or the budget
ends; then `remaining` says so and the next run continues. Every repair goes through the
same idempotent paths as the webhook (event ids derived from bookings, guarded commits,
decisions from fresh reads), so two overlapping runs are safe and a run right after
another changes nothing.

Kinds, in order:
- bookings paid without an event (a Calendar outage): the event is created;
- Meet links still pending: looked at once more;
- payments Mercado Pago had not decided (`pending`, `in_process`) for a while: read again;
- `unknown_booking` issues whose booking exists now: the payment is applied;
- events of the calendar that name a booking which is missing, refunded or cancelled:
  the event is cancelled (a delivery that lost its answer after creating it);
- group sessions' events: a paid seat missing from the guests is added, a guest without a
  seat is reported;
- upcoming scheduled bookings whose event is gone from Calendar: flagged for admins.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from shared import clock, logs
from shared.adapters import cloud_tasks, firestore
from shared.adapters.google_calendar import add_attendee, calendar_api, cancel_event, class_event
from shared.clock import Deadline
from shared.domain.bookings import (
    ENDED,
    Booking,
    CalendarStatus,
    ConferenceStatus,
    Issue,
    Person,
    conference_fields,
)
from shared.domain.commands import PaymentNotification
from shared.domain.seats import SeatStatus, Session
from shared.domain.writes import SERVER_TIME
from shared.errors import PermanentUpstreamError, PlatformError, TransientUpstreamError
from shared.services.scheduling import (
    Outcome,
    Step,
    apply_payment_notification,
    finish_paid_booking,
    on_booking,
)

__all__ = ["PAGE_SIZE", "Reconciliation", "sweep"]

PAGE_SIZE = 50
"""Bookings read per page; a sweep reads as many pages as its budget allows."""
PENDING_PAYMENT_AGE = timedelta(hours=1)
"""A payment still undecided after this long is read again from Mercado Pago."""
EVENT_WINDOW = (timedelta(days=1), timedelta(days=400))
"""Events looked at for orphans: from a day ago to this far ahead."""
STOP_MARGIN_SECONDS = 2.0
"""No new repair starts with less budget than this: the run reports `remaining` instead."""


@dataclass
class Reconciliation:
    """What one run found and healed, per kind; `remaining` when the budget ran out."""

    counts: dict[str, dict[str, int]] = field(default_factory=dict)
    outcomes: list[Outcome] = field(default_factory=list)
    remaining: bool = False

    def count(self, kind: str, outcome: Outcome | None = None) -> None:
        tally = self.counts.setdefault(kind, {"found": 0, "healed": 0})
        tally["found"] += 1
        if outcome is not None:
            self.outcomes.append(outcome)
            if outcome.outcome not in _NOT_HEALED:
                tally["healed"] += 1

    def as_json(self) -> dict[str, Any]:
        return {
            "counts": self.counts,
            "remaining": self.remaining,
            "bookings": [o.as_json() for o in self.outcomes],
        }


_NOT_HEALED = frozenset(
    {
        "retry_later",
        "meet_link_pending",
        "settled_meanwhile",
        "unknown_booking",
        "nothing_to_do",
        "paid_late",  # reported for an admin's refund, never healed into a class under way
    }
)


class _OutOfTime(Exception):
    pass


def sweep(deadline: Deadline, *, resume_queue: bool = False) -> Reconciliation:
    """One sweep over every kind; a transient failure or the budget ends it early.

    First, a queue paused for Google's usage limit is resumed once the limit should be
    over (or at once with `resume_queue`: an admin says so)."""
    run = Reconciliation()
    try:
        if cloud_tasks.resume_if_due(deadline, now=resume_queue):
            run.count("queue_resumed", Outcome("resumed", "", ""))
    except PlatformError as exc:
        logs.warning("the scheduling queue could not be resumed", detail=exc.message)
    steps: list[Callable[[Reconciliation, Deadline], None]] = [
        _waiting_for_event,
        _meet_pending,
        _payments_pending,
        _unknown_bookings,
        _class_events,
        _missing_events,
    ]
    try:
        for step in steps:
            step(run, deadline)
    except (_OutOfTime, TransientUpstreamError) as exc:
        run.remaining = True
        if isinstance(exc, TransientUpstreamError):
            logs.warning("reconcile stopped at a transient failure", detail=exc.message)
    return run


def _in_time(deadline: Deadline) -> None:
    if deadline.remaining() < STOP_MARGIN_SECONDS:
        raise _OutOfTime


def _pages(
    kind: firestore.Backlog, deadline: Deadline, since: str = ""
) -> Iterator[firestore.BookingRead]:
    after = None
    while True:
        _in_time(deadline)
        page = firestore.backlog_page(kind, after, PAGE_SIZE, deadline, since)
        yield from page
        if len(page) < PAGE_SIZE:
            return
        after = page[-1]


# -- bookings ----------------------------------------------------------------------------------


def _each_booking(
    run: Reconciliation, kind: firestore.Backlog, step: Callable[[], Step], deadline: Deadline
) -> None:
    for first in _pages(kind, deadline):
        _in_time(deadline)
        try:
            outcome = firestore.until_committed(
                on_booking(first, step(), deadline), deadline, "reconcile booking"
            )
        except TransientUpstreamError:
            run.count(kind.value, Outcome("retry_later", "", first.booking_id))
            raise
        run.count(kind.value, outcome)


def _waiting_for_event(run: Reconciliation, deadline: Deadline) -> None:
    for first in _pages(firestore.Backlog.WAITING_FOR_EVENT, deadline):
        _in_time(deadline)
        try:
            outcome = finish_paid_booking(first.booking_id, deadline, first)
        except TransientUpstreamError:
            run.count(
                firestore.Backlog.WAITING_FOR_EVENT.value,
                Outcome("retry_later", "", first.booking_id),
            )
            raise
        run.count(firestore.Backlog.WAITING_FOR_EVENT.value, outcome)


def _meet_pending(run: Reconciliation, deadline: Deadline) -> None:
    _each_booking(run, firestore.Backlog.MEET_PENDING, lambda: _looking_at_meet, deadline)


def _looking_at_meet(read: firestore.BookingRead, booking: Booking, deadline: Deadline) -> Outcome:
    """One look at a conference that was still pending: no insert, no waiting."""
    still_pending = (read.data or {}).get("conferenceStatus") == ConferenceStatus.PENDING
    if not booking.google_event_id or not still_pending:
        return Outcome("settled_meanwhile", booking.payment_id, booking.id)
    try:
        event = class_event(calendar_api().get_event(booking.google_event_id, deadline))
    except PermanentUpstreamError as exc:
        logs.error("the booking's event cannot be read", booking_id=booking.id, detail=exc.message)
        return Outcome("calendar_rejected", booking.payment_id, booking.id)
    if event.meet_pending:
        return Outcome("meet_link_pending", booking.payment_id, booking.id, event)
    fields = {**conference_fields(event), "updatedAt": SERVER_TIME}
    firestore.commit_booking(read, fields, "", deadline)
    return Outcome("meet_link_recorded", booking.payment_id, booking.id, event)


# -- payments ----------------------------------------------------------------------------------


def _payments_pending(run: Reconciliation, deadline: Deadline) -> None:
    """Mercado Pago may not notify every change: an old undecided payment is read again."""
    cutoff = clock.now() - PENDING_PAYMENT_AGE
    for read in _pages(firestore.Backlog.PAYMENT_PENDING, deadline):
        data = read.data or {}
        updated = data.get("updatedAt")
        if not data.get("paymentId") or (isinstance(updated, datetime) and updated > cutoff):
            continue
        _in_time(deadline)
        note = PaymentNotification(str(data["paymentId"]), "reconcile", "reconcile", "")
        run.count(
            firestore.Backlog.PAYMENT_PENDING.value, apply_payment_notification(note, deadline)
        )


def _unknown_bookings(run: Reconciliation, deadline: Deadline) -> None:
    """A payment that arrived before its booking existed: apply it once the booking does."""
    for issue_id, issue in firestore.open_issues("unknown_booking", PAGE_SIZE, deadline):
        _in_time(deadline)
        note = PaymentNotification(str(issue.get("paymentId") or ""), "reconcile", "reconcile", "")
        if not note.payment_id:
            continue
        outcome = apply_payment_notification(note, deadline)
        run.count("unknown_booking", outcome)
        if outcome.outcome != "unknown_booking":
            firestore.resolve_issue(issue_id, outcome.outcome, deadline)


# -- events ------------------------------------------------------------------------------------


def _window_events(deadline: Deadline) -> Iterator[dict[str, Any]]:
    now = clock.now()
    query: dict[str, Any] = {
        "timeMin": (now - EVENT_WINDOW[0]).isoformat(),
        "timeMax": (now + EVENT_WINDOW[1]).isoformat(),
        "singleEvents": True,
        "maxResults": 2500,
    }
    while True:
        _in_time(deadline)
        page = calendar_api().list_events(query, deadline)
        yield from page.get("items") or []
        token = page.get("nextPageToken")
        if not token:
            return
        query = {**query, "pageToken": token}


def _class_events(run: Reconciliation, deadline: Deadline) -> None:
    """One listing of the calendar's upcoming events, for one-to-one classes and sessions."""
    named: dict[str, dict[str, Any]] = {}
    sessions: list[dict[str, Any]] = []
    for event in _window_events(deadline):
        if event.get("status") == CalendarStatus.CANCELLED:
            continue
        private = (event.get("extendedProperties") or {}).get("private") or {}
        if private.get("sessionId"):
            sessions.append(event)
        elif private.get("bookingId"):
            named.setdefault(str(private["bookingId"]), event)
    _orphan_events(run, named, deadline)
    for event in sessions:
        _session_guests(run, event, deadline)


def _session_guests(run: Reconciliation, event: dict[str, Any], deadline: Deadline) -> None:
    """A session's event against its seats: a paid seat missing from the guests is added;
    a guest with no seat (added by hand, or a refund whose removal failed) is reported."""
    _in_time(deadline)
    session_id = str(event["extendedProperties"]["private"]["sessionId"])
    read = firestore.read_session(session_id, deadline)
    if read.data is None:
        return
    session = Session.from_document(session_id, read.data)
    guests = {str(a.get("email") or "").lower() for a in event.get("attendees") or []}
    seated = {
        str(seat.get("email") or "").lower(): booking_id
        for booking_id, seat in session.seats.items()
        if seat.get("status") == SeatStatus.JOINED
    }
    for email, booking_id in seated.items():
        if email and email not in guests:
            _in_time(deadline)
            name = str(session.seats[booking_id].get("name") or "")
            add_attendee(session.google_event_id, Person(name, email), deadline)
            run.count("seat_missing", Outcome("guest_added", "", booking_id))
    strangers = guests - set(seated) - {session.teacher.email.lower(), ""}
    for email in sorted(strangers):
        issue = Issue("attendee_without_seat", {"sessionId": session_id, "email": email})
        about = f"{session_id}-{hashlib.sha256(email.encode()).hexdigest()[:12]}"
        firestore.record_issue(issue, "", deadline, about=about)
        logs.warning("a session guest has no paid seat", session_id=session_id)
        run.count("attendee_without_seat", Outcome("reported", "", ""))


def _orphan_events(
    run: Reconciliation, named: dict[str, dict[str, Any]], deadline: Deadline
) -> None:
    """Confirmed events whose booking is missing or ended: cancelled, guests told."""
    ids = list(named)
    for first in range(0, len(ids), PAGE_SIZE):
        _in_time(deadline)
        chunk = ids[first : first + PAGE_SIZE]
        found = firestore.read_bookings(chunk, deadline)
        for booking_id in chunk:
            event_id = str(named[booking_id].get("id") or "")
            read = found.get(booking_id)
            status = (read.data or {}).get("status") if read else None
            own = read is not None and (read.data or {}).get("googleEventId") in (None, event_id)
            if read is not None and (status not in ENDED or not own):
                continue  # a live booking's event, or a copy of it an admin made
            _in_time(deadline)
            cancel_event(event_id, deadline)
            logs.warning("orphan class event cancelled", booking_id=booking_id, event_id=event_id)
            run.count("orphan_event", Outcome("event_cancelled", "", booking_id))


def _missing_events(run: Reconciliation, deadline: Deadline) -> None:
    """Upcoming scheduled classes whose event no longer exists: an admin must look."""
    since = (clock.now().astimezone(clock.ZONE) - EVENT_WINDOW[0]).strftime("%Y-%m-%dT%H:%M:%S")
    for read in _pages(firestore.Backlog.UPCOMING, deadline, since):
        data = read.data or {}
        event_id = str(data.get("googleEventId") or "")
        if not event_id or data.get("calendarStatus") == CalendarStatus.MISSING:
            continue
        _in_time(deadline)
        if _event_exists(event_id, deadline):
            continue
        fields = {
            "calendarStatus": CalendarStatus.MISSING.value,
            "needsAttention": "event_missing",
            "updatedAt": SERVER_TIME,
        }
        try:
            firestore.commit_booking(read, fields, "", deadline)
        except firestore.Contended:
            continue  # written meanwhile: the next run looks again
        logs.error("a scheduled class has no event", booking_id=read.booking_id)
        run.count("event_missing", Outcome("flagged", "", read.booking_id))


def _event_exists(event_id: str, deadline: Deadline) -> bool:
    try:
        calendar_api().get_event(event_id, deadline)
    except PermanentUpstreamError as exc:
        if exc.details.get("status") in (404, 410):
            return False
        raise
    return True
