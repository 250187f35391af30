"""What an admin's cancel or reschedule means for a booking; a teacher is never in two
classes at once, and no class is placed at a time already past.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from datetime import datetime
from typing import Any

from shared.clock import ZONE
from shared.domain.bookings import (
    APPROVED,
    ENDED,
    Booking,
    BookingStatus,
    CalendarStatus,
    Decision,
    InvalidBooking,
    event_id_for_booking,
)
from shared.domain.seats import Session
from shared.domain.writes import SERVER_TIME
from shared.errors import Conflict, InvalidRequest

__all__ = [
    "decide_cancel",
    "decide_reschedule",
    "refuse_overlap",
    "refuse_started",
]


def decide_cancel(booking: Booking, reason: str, refund: bool, by: str) -> Decision:
    """An admin cancels the class: its event is cancelled (guests told) and, with `refund`,
    the payment refunded after the booking is committed as cancelled. Asking again gives
    the same result: an ended booking is left as it is, except that a refund asked for
    (now or by an earlier request that failed half-way) and not yet made is made."""
    refundable = bool(
        booking.payment_id and booking.payment_status == APPROVED and not booking.refund_id
    )
    if booking.status in ENDED:
        wants_refund = (
            booking.status == BookingStatus.CANCELLED
            and refundable
            and (refund or booking.refund_requested)
        )
        asked = {"refundRequested": True} if wants_refund and not booking.refund_requested else None
        decision = Decision(f"already_{booking.status.value}", booking, asked, refund=wants_refund)
        if booking.google_event_id and booking.calendar_status != CalendarStatus.CANCELLED:
            return decision.cancelling(booking.google_event_id)
        return decision
    fields: dict[str, Any] = {
        "status": BookingStatus.CANCELLED.value,
        "cancelledBy": by,
        "cancelReason": reason or None,
        "endedAt": SERVER_TIME,
        "updatedAt": SERVER_TIME,
    }
    if refund and refundable:
        fields["refundRequested"] = True
    decision = Decision("cancelled", booking, fields, refund=refund and refundable)
    if booking.session_id:
        return replace(decision, leave_session=booking.session_id)
    if booking.google_event_id:
        return decision.cancelling(booking.google_event_id)
    if booking.status == BookingStatus.PAID:
        # A delivery or the reconcile step may be creating the event right now.
        return decision.cancelling(event_id_for_booking(booking.id))
    return decision


def refuse_started(start: datetime, now: datetime, name: str = "start") -> None:
    """`InvalidRequest` naming the field when a class would start at a time already past."""
    if start <= now:
        raise InvalidRequest(
            f"{name} has already begun ({start.astimezone(ZONE).isoformat()}); "
            "a class can only be placed in the future",
            parameter=name,
        )


def refuse_overlap(
    start: datetime,
    end: datetime,
    teacher_classes: Iterable[Booking],
    teacher_sessions: Iterable[Session] = (),
) -> None:
    """`Conflict`, naming the other class or session, when the teacher would be in two
    classes at once. A seat's booking stands for its session, which is checked itself."""
    classes = [(b, "conflictingBookingId") for b in teacher_classes if not b.session_id]
    classes += [(s.as_booking(), "conflictingSessionId") for s in teacher_sessions]
    for other, key in classes:
        if other.status != BookingStatus.SCHEDULED:
            continue
        try:
            other_start, other_end = other.class_times()
        except InvalidBooking:
            continue
        if other_start < end and start < other_end:
            raise Conflict(
                f"the teacher has another class then: {other.class_title} "
                f"({other_start.isoformat()} to {other_end.isoformat()})",
                **{key: other.id},
            )


def decide_reschedule(
    booking: Booking,
    start: datetime,
    end: datetime,
    teacher_classes: list[Booking],
    teacher_sessions: Iterable[Session] = (),
    *,
    now: datetime,
) -> Decision:
    """An admin moves a scheduled class; refused (`Conflict`, naming the other class) when
    the teacher would be in two classes at once, and (400 naming `start`) to a time that has
    begun at `now`. The same times again change nothing."""
    if booking.session_id:
        raise Conflict(
            "a seat of a group session moves with its session; reschedule the session",
            sessionId=booking.session_id,
        )
    if booking.status != BookingStatus.SCHEDULED or not booking.google_event_id:
        raise Conflict(
            f"only a scheduled class can be moved; this booking is {booking.status.value}",
            bookingId=booking.id,
        )
    zone = booking.zone()
    if booking.class_times() == (start, end):
        return Decision("unchanged", booking)
    refuse_started(start, now)
    refuse_overlap(start, end, [c for c in teacher_classes if c.id != booking.id], teacher_sessions)
    fields = {
        "start": start.astimezone(zone).isoformat(),
        "end": end.astimezone(zone).isoformat(),
        "previousStart": booking.start_raw,
        "previousEnd": booking.end_raw,
        "rescheduledAt": SERVER_TIME,
        "updatedAt": SERVER_TIME,
    }
    return Decision("rescheduled", booking, fields, move_to=(start, end))
