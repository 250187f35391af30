"""What a change made in Google Calendar (cancelled, moved, answered) means for a booking
or a session. Fields the payment flow is still writing are left alone.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from shared.clock import ZONE, parse_instant
from shared.domain.bookings import (
    GOOGLE_STATUSES,
    Booking,
    BookingStatus,
    CalendarStatus,
    InvalidBooking,
    Person,
    can_move,
    own_event_id,
)
from shared.domain.seats import Session, own_session_event_id
from shared.domain.writes import SERVER_TIME

__all__ = [
    "BookingChange",
    "decide_event_change",
    "decide_session_event_change",
]


@dataclass(frozen=True)
class BookingChange:
    """The booking fields an event version changes, and the audit record of it."""

    kinds: list[str]
    fields: dict[str, Any]
    record: dict[str, Any]
    version: str


def decide_event_change(
    booking_id: str, data: dict[str, Any], event: dict[str, Any]
) -> BookingChange | None:
    """What `event` changes in the booking; None when nothing does.

    Fields the payment flow is still writing are left alone: an event that is new, on time
    and unanswered changes nothing, so syncing it never races the payment webhook.
    """
    event_id = str(event.get("id") or "")
    if event_id != own_event_id(booking_id, data):
        return None  # not the booking's own event (a copy, or a foreign one)
    updated = parse_instant(event.get("updated"))
    seen = parse_instant(data.get("calendarUpdated"))
    if updated and seen and updated < seen:
        return None  # older than what the booking already reflects
    status = str(event.get("status") or CalendarStatus.CONFIRMED)
    fields: dict[str, Any] = {}
    record: dict[str, Any] = {}
    kinds: list[str] = []
    stored_status = str(data.get("calendarStatus") or "")
    if status == CalendarStatus.CANCELLED:
        if stored_status != CalendarStatus.CANCELLED:
            kinds.append("cancelled")
            fields["calendarStatus"] = CalendarStatus.CANCELLED.value
            fields["calendarCancelledAt"] = SERVER_TIME
            fields["needsAttention"] = "event_cancelled"  # paid: an admin decides on a refund
            current = _status(data)
            if current is not None and current != BookingStatus.CANCELLED:
                if can_move(current, BookingStatus.CANCELLED):
                    fields["status"] = BookingStatus.CANCELLED.value
                record["previousStatus"] = current.value
    else:
        if stored_status in GOOGLE_STATUSES and stored_status != status:
            restored = stored_status == CalendarStatus.CANCELLED
            kinds.append("restored" if restored else "status")
            fields["calendarStatus"] = status
            if restored:
                fields["needsAttention"] = "event_restored"
        moved = _moved_times(_booking_times(booking_id, data), event)
        if moved is not None:
            kinds.append("moved")
            fields["start"], fields["end"] = moved
            record["previousStart"], record["previousEnd"] = data.get("start"), data.get("end")
        responses = _responses(event)
        if responses is not None and data.get("sessionId"):
            # A session's event lists every student: a seat keeps only its own people.
            own = {_email(data.get("student")), _email(data.get("teacher"))}
            responses = {email: r for email, r in responses.items() if email in own}
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
            "calendarSyncedAt": SERVER_TIME,
            "updatedAt": SERVER_TIME,
        }
    )
    record.update(
        {
            "eventId": event_id,
            "eventUpdated": str(event.get("updated") or ""),
            "kinds": kinds,
            "appliedAt": SERVER_TIME,
            **{k: v for k, v in fields.items() if k in ("start", "end", "attendeeResponses")},
        }
    )
    return BookingChange(kinds, fields, record, _version(event))


def _status(data: dict[str, Any]) -> BookingStatus | None:
    try:
        return BookingStatus(data.get("status") or BookingStatus.AWAITING_PAYMENT)
    except ValueError:
        return None


_Times = tuple[ZoneInfo, tuple[datetime, datetime] | None]


def _booking_times(booking_id: str, data: dict[str, Any]) -> _Times:
    """The class's zone and times as stored (None: unreadable, the event's are taken)."""
    try:
        booking = Booking.from_document(booking_id, data)
        return booking.zone(), booking.class_times()
    except InvalidBooking:
        return ZONE, None


def _moved_times(stored: _Times, event: dict[str, Any]) -> tuple[str, str] | None:
    """The event's start and end in the class's zone (ISO with offset), if they moved."""
    start = parse_instant((event.get("start") or {}).get("dateTime"))
    end = parse_instant((event.get("end") or {}).get("dateTime"))
    if start is None or end is None:
        return None  # an all-day or trimmed event: no class times to compare
    zone, current = stored
    if current == (start, end):
        return None
    return start.astimezone(zone).isoformat(), end.astimezone(zone).isoformat()


def _email(person: Any) -> str:
    return Person.from_document(person).email.lower()


def decide_session_event_change(
    session_id: str, data: dict[str, Any], event: dict[str, Any]
) -> dict[str, Any] | None:
    """What the session's own event, changed in Google Calendar, changes on the session:
    cancelled (an admin decides on the seats' refunds) or moved; None when nothing does.
    Each seat's booking follows through `decide_event_change`."""
    if str(event.get("id") or "") != own_session_event_id(session_id, data):
        return None
    updated = parse_instant(event.get("updated"))
    seen = parse_instant(data.get("calendarUpdated"))
    if updated and seen and updated < seen:
        return None
    fields: dict[str, Any] = {}
    if str(event.get("status") or "") == CalendarStatus.CANCELLED:
        if data.get("status") != "cancelled":
            fields = {
                "status": "cancelled",
                "cancelledBy": "google_calendar",
                "calendarCancelledAt": SERVER_TIME,
                "needsAttention": "event_cancelled",
            }
    else:
        session = Session.from_document(session_id, data)
        try:
            as_class = session.as_booking()
            stored: _Times = (as_class.zone(), as_class.class_times())
        except InvalidBooking:
            stored = (ZONE, None)
        moved = _moved_times(stored, event)
        if moved is not None:
            fields = {"start": moved[0], "end": moved[1], "rescheduledAt": SERVER_TIME}
    if not fields:
        return None
    return {**fields, "calendarUpdated": str(event.get("updated") or ""), "updatedAt": SERVER_TIME}


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
