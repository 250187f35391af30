"""Group classes: a session (one teacher, one time, one event and Meet link) and its seats.

A paid booking of a session holds a seat (the count decided against the session's read),
then joins the session's event; a refund or cancel frees the seat.
"""

from __future__ import annotations

import base64
import enum
import hashlib
from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal
from typing import Any

from shared.clock import TIME_ZONE
from shared.domain.bookings import (
    Booking,
    BookingStatus,
    CalendarStatus,
    ClassEvent,
    Decision,
    Issue,
    Person,
    amount_of,
    conference_fields,
)
from shared.domain.lateness import AT_THE_START, LatePolicy, unless_begun
from shared.domain.writes import REMOVE, SERVER_TIME

__all__ = [
    "SeatStatus",
    "Session",
    "decide_leave",
    "decide_seat",
    "decide_seat_joined",
    "event_id_for_session",
    "own_session_event_id",
]


def event_id_for_session(session_id: str) -> str:
    """The one Calendar event of a group session (base32hex, like a booking's)."""
    digest = hashlib.sha256(f"session:{session_id}".encode()).digest()
    return base64.b32hexencode(digest).decode("ascii").rstrip("=").lower()


def own_session_event_id(session_id: str, data: dict[str, Any]) -> str:
    """The id of the session's one event: the one linked to it, or the one it would get."""
    return str(data.get("googleEventId") or "") or event_id_for_session(session_id)


class SeatStatus(enum.StrEnum):
    HELD = "held"  # counted against capacity; the student is being added to the event
    JOINED = "joined"  # the student is a guest of the session's event


@dataclass(frozen=True)
class Session:
    """A group class: one teacher, one time, one event and Meet link, `capacity` seats."""

    id: str
    title: str
    teacher: Person
    start_raw: Any
    end_raw: Any
    time_zone: str
    capacity: int
    price_amount: Decimal | None
    currency: str
    status: str
    google_event_id: str
    meet_link: str
    html_link: str
    seats: dict[str, dict[str, Any]]

    @classmethod
    def from_document(cls, session_id: str, data: dict[str, Any]) -> Session:
        price: dict[str, Any] = data["price"] if isinstance(data.get("price"), dict) else {}
        seats = data.get("seats") if isinstance(data.get("seats"), dict) else {}
        capacity = data.get("capacity")
        return cls(
            id=session_id,
            title=str(data.get("title") or "Clase grupal"),
            teacher=Person.from_document(data.get("teacher")),
            start_raw=data.get("start"),
            end_raw=data.get("end"),
            time_zone=str(data.get("timeZone") or TIME_ZONE),
            capacity=capacity
            if isinstance(capacity, int) and not isinstance(capacity, bool)
            else 0,
            price_amount=amount_of(price.get("amount")),
            currency=str(price.get("currency") or ""),
            status=str(data.get("status") or "scheduled"),
            google_event_id=str(data.get("googleEventId") or ""),
            meet_link=str(data.get("meetLink") or ""),
            html_link=str(data.get("htmlLink") or ""),
            seats={str(k): v for k, v in (seats or {}).items() if isinstance(v, dict)},
        )

    @property
    def seats_taken(self) -> int:
        return len(self.seats)

    def as_booking(self) -> Booking:
        """The session seen as a class (for the event mapper and times)."""
        return Booking.from_document(
            self.id,
            {
                "status": BookingStatus.SCHEDULED.value,
                "classTitle": self.title,
                "teacher": {"name": self.teacher.name, "email": self.teacher.email},
                "start": self.start_raw,
                "end": self.end_raw,
                "timeZone": self.time_zone,
            },
        )


def decide_seat(
    decision: Decision,
    session: Session | None,
    auto_refund: bool,
    *,
    now: datetime,
    late: LatePolicy = AT_THE_START,
) -> Decision:
    """A paid booking of a group session: hold a seat (the count decided here, committed
    guarded by the session's read), or refuse it when the session is full or gone, or
    has begun at `now` (then `paid_late`, as a one-to-one class)."""
    booking = decision.booking
    assert booking is not None
    if booking.id in (session.seats if session else {}):
        # Held by an earlier delivery that failed before the student joined: join now.
        return replace(
            decision, outcome="seat_held", create_event=False, join_session=booking.session_id
        )
    if session is None or session.status != "scheduled" or not session.google_event_id:
        return _over_capacity(decision, "session_unavailable", auto_refund)
    late_decision = unless_begun(decision, session.as_booking(), now, late)
    if late_decision.outcome == "paid_late":
        return late_decision
    if session.seats_taken >= session.capacity:
        return _over_capacity(decision, "over_capacity", auto_refund)
    seat = {
        "status": SeatStatus.HELD.value,
        "email": booking.student.email,
        "name": booking.student.name,
    }
    fields = {
        **(decision.fields or {}),
        "status": BookingStatus.PAID.value,
        "calendarStatus": CalendarStatus.PENDING_CREATION.value,
    }
    # The whole map, not a dotted path: booking ids are not Firestore field names; the
    # commit is guarded by the session's read, so no seat written meanwhile is lost.
    seats = {**session.seats, booking.id: seat}
    session_fields = {"seats": seats, "seatsTaken": len(seats), "updatedAt": SERVER_TIME}
    return replace(
        decision,
        outcome="seat_held",
        fields=fields,
        create_event=False,
        session_fields=session_fields,
        join_session=session.id,
    )


def _over_capacity(decision: Decision, kind: str, auto_refund: bool) -> Decision:
    booking = decision.booking
    assert booking is not None
    fields = {
        **(decision.fields or {}),
        "status": BookingStatus.OVER_CAPACITY.value,
        "needsAttention": kind,
    }
    issue = Issue(kind, {"bookingId": booking.id, "sessionId": booking.session_id})
    return replace(
        decision,
        outcome=kind,
        fields=fields,
        issue=issue,
        create_event=False,
        refund=auto_refund,
        join_session="",
    )


def decide_leave(decision: Decision, session: Session | None) -> Decision:
    """A seat's booking ends (refund, cancel): its seat is freed and the student leaves the
    event; nothing to do when the seat is already free."""
    booking = decision.booking
    assert booking is not None
    if session is None or booking.id not in session.seats:
        return replace(decision, leave_session="")
    seats = {k: v for k, v in session.seats.items() if k != booking.id}
    freed = {"seats": seats, "seatsTaken": len(seats), "updatedAt": SERVER_TIME}
    notice = _seat_notice("left", booking, session, "", "")
    return replace(decision, session_fields=freed, leave_session=session.id, notice=notice)


def decide_seat_joined(booking: Booking, session: Session, event: ClassEvent) -> Decision:
    """The student is a guest of the session's event: the booking is scheduled with it."""
    if booking.status != BookingStatus.PAID or booking.id not in session.seats:
        # Refunded or cancelled while being added: take the student out again.
        return Decision("settled_meanwhile", booking, leave_session=session.id)
    if event.status == CalendarStatus.CANCELLED or session.status == "cancelled":
        # The session was cancelled before this seat got in: like every other seat of it,
        # the booking is cancelled and an admin decides on the refund.
        cancelled = {
            "status": BookingStatus.CANCELLED.value,
            "googleEventId": event.event_id,
            "calendarStatus": CalendarStatus.CANCELLED.value,
            "needsAttention": "event_cancelled",
            "updatedAt": SERVER_TIME,
        }
        return Decision("session_cancelled", booking, cancelled)
    fields = {
        "status": BookingStatus.SCHEDULED.value,
        "googleEventId": event.event_id,
        "htmlLink": event.html_link or None,
        "calendarStatus": event.status,
        "calendarError": REMOVE,
        "updatedAt": SERVER_TIME,
        **conference_fields(event),
    }
    seat = {**session.seats[booking.id], "status": SeatStatus.JOINED.value}
    joined = {"seats": {**session.seats, booking.id: seat}, "updatedAt": SERVER_TIME}
    return Decision(
        "scheduled",
        booking,
        fields,
        event=event,
        session_fields=joined,
        notice=_seat_notice("joined", booking, session, event.meet_link, event.html_link),
    )


def _seat_notice(
    kind: str, booking: Booking, session: Session, meet_link: str, html_link: str
) -> dict[str, Any]:
    """What the platform's mailer tells the one student who joined or left a session: Google
    cannot email only them (docs/calendar-invitations.md), so seat changes email nobody."""
    return {
        "kind": kind,
        "bookingId": booking.id,
        "sessionId": session.id,
        "email": booking.student.email,
        "name": booking.student.name,
        "title": session.title,
        "start": session.start_raw,
        "end": session.end_raw,
        "meetLink": meet_link or None,
        "htmlLink": html_link or None,
        "createdAt": SERVER_TIME,
    }
