"""A class that has begun is never scheduled.

Mercado Pago may approve a cash voucher days after the class it paid for, and an invitation
to a class under way (or over) helps nobody. Every decision that could create an event or
seat a student takes `now`, the instant its caller read once, and asks here.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from shared.clock import local_iso
from shared.domain.bookings import (
    Booking,
    BookingStatus,
    CalendarStatus,
    Decision,
    InvalidBooking,
    Issue,
)
from shared.domain.writes import SERVER_TIME

__all__ = [
    "AT_THE_START",
    "LatePolicy",
    "unless_begun",
]


@dataclass(frozen=True)
class LatePolicy:
    """When a paid class is too late to schedule, and whether its payment goes back at once
    (`LATE_PAYMENT_MARGIN_MINUTES`, `AUTO_REFUND_LATE_PAYMENTS`)."""

    margin: timedelta = timedelta(0)
    auto_refund: bool = False

    def too_late(self, start: datetime, now: datetime) -> bool:
        """Whether a class starting at `start` has begun (less the margin) at `now`."""
        return now >= start - self.margin


AT_THE_START = LatePolicy()
"""Late from the class's start on, no automatic refund (the settings' defaults)."""


def unless_begun(decision: Decision, class_: Booking, now: datetime, late: LatePolicy) -> Decision:
    """`decision`, unless `class_` (the booking, or a seat's session) has begun at `now`:
    then no event and no seat, the booking `paid_late` with a `late_payment` issue naming
    the class's times and the approval's, and the payment refunded when `late` says so.
    Unreadable times are left to the Calendar step, which rejects them as before."""
    booking = decision.booking
    assert booking is not None
    try:
        start, end = class_.class_times()
    except InvalidBooking:
        return decision
    if not late.too_late(start, now):
        return decision
    paid = (decision.fields or {}).get("paidAt", booking.paid_at)
    details = {
        "bookingId": booking.id,
        "classStart": start.isoformat(),
        "classEnd": end.isoformat(),
        "approvedAt": local_iso(paid) if isinstance(paid, datetime) else None,
        "decidedAt": local_iso(now),
    }
    if booking.session_id:
        details["sessionId"] = booking.session_id
    fields = {
        **(decision.fields or {}),
        "status": BookingStatus.PAID_LATE.value,
        "calendarStatus": CalendarStatus.TOO_LATE.value,
        "needsAttention": "late_payment",
        "updatedAt": SERVER_TIME,
    }
    return replace(
        decision,
        outcome="paid_late",
        fields=fields,
        issue=Issue("late_payment", details),
        create_event=False,
        refund=late.auto_refund,
        join_session="",
        session_fields=None,
    )
