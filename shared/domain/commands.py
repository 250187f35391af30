"""The commands requests carry, as values: what an admin asked of a booking or a session,
an attention item marked handled, a payment notification. `shared.web.requests` makes them
from HTTP; services take them as they are.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from shared.clock import TIME_ZONE
from shared.domain.writes import SERVER_TIME

__all__ = [
    "BookingAction",
    "HandledRequest",
    "PaymentNotification",
    "SessionAction",
    "SessionRequest",
]


@dataclass(frozen=True)
class BookingAction:
    """An admin's cancel or reschedule of one booking, validated."""

    booking_id: str
    kind: str
    reason: str = ""
    refund: bool = False
    start: datetime | None = None
    end: datetime | None = None


@dataclass(frozen=True)
class SessionRequest:
    """A new group session, validated."""

    session_id: str
    title: str
    teacher: dict[str, str]
    start: datetime
    end: datetime
    capacity: int
    price: dict[str, Any]
    chosen_id: bool

    def document(self) -> dict[str, Any]:
        return {
            "title": self.title,
            "teacher": self.teacher,
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
            "timeZone": TIME_ZONE,
            "capacity": self.capacity,
            "price": self.price,
            "status": "scheduled",
            "seats": {},
            "seatsTaken": 0,
            "createdAt": SERVER_TIME,
        }


@dataclass(frozen=True)
class SessionAction:
    """Cancel (optionally refunding every seat) or move an existing session."""

    session_id: str
    kind: str
    refund: bool = False
    reason: str = ""
    start: datetime | None = None
    end: datetime | None = None


@dataclass(frozen=True)
class HandledRequest:
    """`{"action": "mark_handled", "itemId", "kind", "note"?}`, validated."""

    item_id: str
    source: str
    document_id: str
    kind: str
    note: str


@dataclass(frozen=True)
class PaymentNotification:
    """A delivery that names a payment; `source` is "webhook" or "ipn"."""

    payment_id: str
    source: str
    action: str
    request_id: str
