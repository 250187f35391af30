"""Bookings: the one place for their states and transitions, the mapper, and the store.

The platform creates a booking (`awaiting_payment`); this system completes it. States:

    awaiting_payment --approved payment--> paid --event created--> scheduled
    awaiting_payment --approved payment and event created at once--> scheduled
    paid | scheduled --event cancelled in Google Calendar--> cancelled

`paid` means "paid, but the class has no Calendar event yet": the next delivery of the
payment notification, or the reconcile step, finishes it. Later states (refunded,
rescheduled) are added here and nowhere else.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from google.cloud import firestore
from google.cloud.firestore_v1.base_query import FieldFilter

from shared.clients import firestore_client
from shared.config import TIME_ZONE, get_settings
from shared.errors import UnprocessableNotification
from shared.retry import Deadline
from shared.store import firestore_call, rpc_budget

PAYMENT_CLAIMS = "payment_claims"
PAYMENT_ISSUES = "payment_issues"


class BookingStatus(enum.StrEnum):
    AWAITING_PAYMENT = "awaiting_payment"
    PAID = "paid"
    SCHEDULED = "scheduled"
    CANCELLED = "cancelled"


TRANSITIONS: dict[BookingStatus, frozenset[BookingStatus]] = {
    BookingStatus.AWAITING_PAYMENT: frozenset({BookingStatus.PAID, BookingStatus.SCHEDULED}),
    BookingStatus.PAID: frozenset({BookingStatus.SCHEDULED, BookingStatus.CANCELLED}),
    BookingStatus.SCHEDULED: frozenset({BookingStatus.CANCELLED}),
    BookingStatus.CANCELLED: frozenset(),
}


def can_move(current: BookingStatus, new: BookingStatus) -> bool:
    """Whether a booking may go from `current` to `new` (staying put is always allowed)."""
    return new == current or new in TRANSITIONS[current]


class InvalidBooking(UnprocessableNotification):
    """The booking document cannot be turned into a class event (bad zone, times, price)."""

    code = "invalid_booking"


@dataclass(frozen=True)
class Person:
    name: str
    email: str

    @classmethod
    def from_document(cls, raw: Any) -> Person:
        raw = raw if isinstance(raw, dict) else {}
        return cls(name=str(raw.get("name") or ""), email=str(raw.get("email") or ""))


@dataclass(frozen=True)
class Booking:
    """A booking as this system reads it; no I/O here."""

    id: str
    status: BookingStatus
    class_title: str
    teacher: Person
    student: Person
    start_raw: Any
    end_raw: Any
    time_zone: str
    price_amount: Decimal | None
    currency: str
    preference_id: str
    payment_id: str
    payment_status: str
    google_event_id: str
    calendar_status: str
    needs_attention: str

    @classmethod
    def from_document(cls, booking_id: str, data: dict[str, Any]) -> Booking:
        try:
            status = BookingStatus(data.get("status") or BookingStatus.AWAITING_PAYMENT)
        except ValueError as exc:
            raise InvalidBooking(f"booking {booking_id} has an unknown status") from exc
        price: dict[str, Any] = data["price"] if isinstance(data.get("price"), dict) else {}
        try:
            amount = Decimal(str(price["amount"])) if "amount" in price else None
        except InvalidOperation:
            amount = None
        return cls(
            id=booking_id,
            status=status,
            class_title=str(data.get("classTitle") or "Clase virtual"),
            teacher=Person.from_document(data.get("teacher")),
            student=Person.from_document(data.get("student")),
            start_raw=data.get("start"),
            end_raw=data.get("end"),
            time_zone=str(data.get("timeZone") or TIME_ZONE),
            price_amount=amount,
            currency=str(price.get("currency") or ""),
            preference_id=str(data.get("preferenceId") or ""),
            payment_id=str(data.get("paymentId") or ""),
            payment_status=str(data.get("paymentStatus") or ""),
            google_event_id=str(data.get("googleEventId") or ""),
            calendar_status=str(data.get("calendarStatus") or ""),
            needs_attention=str(data.get("needsAttention") or ""),
        )

    def zone(self) -> ZoneInfo:
        try:
            return ZoneInfo(self.time_zone)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise InvalidBooking(f"booking {self.id} has an unknown time zone") from exc

    def class_times(self) -> tuple[datetime, datetime]:
        """Start and end as aware datetimes in the booking's zone; end must follow start."""
        zone = self.zone()
        start = _parse_time(self.start_raw, zone, self.id, "start")
        end = _parse_time(self.end_raw, zone, self.id, "end")
        if end <= start:
            raise InvalidBooking(f"booking {self.id} ends before it starts")
        return start, end


def _parse_time(raw: Any, zone: ZoneInfo, booking_id: str, name: str) -> datetime:
    if isinstance(raw, datetime):
        value = raw
    elif isinstance(raw, str):
        try:
            value = datetime.fromisoformat(raw)
        except ValueError as exc:
            raise InvalidBooking(f"booking {booking_id} has an unreadable {name}") from exc
    else:
        raise InvalidBooking(f"booking {booking_id} has no {name}")
    if value.tzinfo is None:
        value = value.replace(tzinfo=zone)  # wall-clock time in the booking's zone
    return value.astimezone(zone)


# -- store -----------------------------------------------------------------------------


def bookings() -> firestore.CollectionReference:
    return firestore_client().collection(get_settings().bookings_collection)


def booking_ref(booking_id: str) -> firestore.DocumentReference:
    return bookings().document(booking_id)


def is_booking_id(value: str) -> bool:
    """Whether `value` can name a booking document (`external_reference` comes from outside)."""
    return 0 < len(value.encode()) <= 1500 and "/" not in value and value not in (".", "..")


def claim_ref(payment_id: str) -> firestore.DocumentReference:
    """The document that ties a payment to the one booking it paid for."""
    return firestore_client().collection(PAYMENT_CLAIMS).document(payment_id)


def find_by_preference(
    preference_id: str, deadline: Deadline
) -> firestore.DocumentSnapshot[Any] | None:
    """The booking whose `preferenceId` matches (the Checkout Pro preference paid)."""
    with firestore_call("find booking by preference"):
        query = bookings().where(filter=FieldFilter("preferenceId", "==", preference_id))
        matches = list(query.limit(2).stream(**rpc_budget(deadline)))
    return matches[0] if len(matches) == 1 else None


def record_payment_issue(kind: str, payment_id: str, deadline: Deadline, **details: Any) -> None:
    """Keep, once per payment and kind, something an admin must look at."""
    doc = {
        "kind": kind,
        "paymentId": payment_id,
        "createdAt": firestore.SERVER_TIMESTAMP,
        **{k: v for k, v in details.items() if v is not None},
    }
    with firestore_call("record payment issue"):
        issue = firestore_client().collection(PAYMENT_ISSUES).document(f"{payment_id}-{kind}")
        issue.set(doc, **rpc_budget(deadline))
