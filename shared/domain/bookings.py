"""Bookings: their states and transitions, the values every decision reads, and the
`Decision` every decision returns.

    awaiting_payment --approved payment--> paid --event created--> scheduled
    awaiting_payment --approved payment and event created at once--> scheduled
    paid | scheduled --event cancelled in Google Calendar--> cancelled
    awaiting_payment | paid --the class began before its event was created--> paid_late

`paid` means "paid, but the class has no Calendar event yet": the next delivery of the
payment notification, or the reconcile step, finishes it (`calendarStatus` says why it
waits). `TRANSITIONS` is the table; the README's table is checked against it by a test.
Nothing in `shared.domain` does I/O: services read, ask a decision, and write its answer.
"""

from __future__ import annotations

import base64
import enum
import hashlib
from dataclasses import dataclass, field, replace
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any
from zoneinfo import ZoneInfo

from shared.clock import TIME_ZONE, parse_instant, parse_local, zone_named
from shared.domain.writes import REMOVE, SERVER_TIME
from shared.errors import UnprocessableNotification

__all__ = [
    "APPROVED",
    "ENDED",
    "GOOGLE_STATUSES",
    "REVERSALS",
    "TRANSITIONS",
    "Booking",
    "BookingStatus",
    "CalendarStatus",
    "ClassEvent",
    "ConferenceStatus",
    "Decision",
    "InvalidBooking",
    "Issue",
    "Payment",
    "Person",
    "amount_of",
    "can_move",
    "conference_fields",
    "event_fields",
    "event_id_for_booking",
    "own_event_id",
    "refund_key",
]


APPROVED = "approved"


class BookingStatus(enum.StrEnum):
    AWAITING_PAYMENT = "awaiting_payment"
    PAID = "paid"
    SCHEDULED = "scheduled"
    CANCELLED = "cancelled"  # by an admin, in Google Calendar, or its payment was cancelled
    REFUNDED = "refunded"  # the payment was refunded: the class is cancelled
    CHARGED_BACK = "charged_back"  # the payer disputed the payment: the class is cancelled
    OVER_CAPACITY = "over_capacity"  # paid for a seat of a session already full
    PAID_LATE = "paid_late"  # paid, but the class began before its event was created


ENDED = frozenset({BookingStatus.CANCELLED, BookingStatus.REFUNDED, BookingStatus.CHARGED_BACK})


TRANSITIONS: dict[BookingStatus, frozenset[BookingStatus]] = {
    BookingStatus.AWAITING_PAYMENT: frozenset(
        {
            BookingStatus.PAID,
            BookingStatus.SCHEDULED,
            BookingStatus.OVER_CAPACITY,
            BookingStatus.PAID_LATE,
        }
    )
    | ENDED,
    BookingStatus.PAID: frozenset({BookingStatus.SCHEDULED, BookingStatus.PAID_LATE}) | ENDED,
    BookingStatus.SCHEDULED: ENDED,
    # Only a booking cancelled in Google Calendar, whose payment is then reversed.
    BookingStatus.CANCELLED: frozenset({BookingStatus.REFUNDED, BookingStatus.CHARGED_BACK}),
    BookingStatus.REFUNDED: frozenset(),
    BookingStatus.CHARGED_BACK: frozenset(),
    BookingStatus.OVER_CAPACITY: frozenset({BookingStatus.REFUNDED, BookingStatus.CANCELLED}),
    BookingStatus.PAID_LATE: frozenset({BookingStatus.REFUNDED}) | ENDED,
}


REVERSALS: dict[str, BookingStatus] = {
    "refunded": BookingStatus.REFUNDED,
    "charged_back": BookingStatus.CHARGED_BACK,
    "cancelled": BookingStatus.CANCELLED,
}
"""Mercado Pago statuses that take a payment back, and the state they leave its booking in."""


class CalendarStatus(enum.StrEnum):
    """`calendarStatus`: the event's status in Google, or why a paid booking has none."""

    CONFIRMED = "confirmed"
    TENTATIVE = "tentative"
    CANCELLED = "cancelled"
    PENDING_CREATION = "pending_creation"  # to be created: next delivery or reconcile
    REJECTED = "rejected"  # Google refused the event or the booking is unusable: an admin acts
    ON_HOLD = "on_hold"  # paid without event, then the payment was reversed: nothing to create
    MISSING = "missing"  # scheduled, but its event is gone from Calendar: an admin acts
    TOO_LATE = "too_late"  # the class began before its event was created: none ever will be


GOOGLE_STATUSES = frozenset(
    {CalendarStatus.CONFIRMED, CalendarStatus.TENTATIVE, CalendarStatus.CANCELLED}
)


class ConferenceStatus(enum.StrEnum):
    """`conferenceStatus`: Meet creates the conference asynchronously."""

    PENDING = "pending"
    SUCCESS = "success"
    FAILURE = "failure"
    NONE = "none"


def can_move(current: BookingStatus, new: BookingStatus) -> bool:
    """Whether a booking may go from `current` to `new` (staying put is always allowed)."""
    return new == current or new in TRANSITIONS[current]


class InvalidBooking(UnprocessableNotification):
    """The booking document cannot be turned into a class event (bad zone, times, price)."""

    code = "invalid_booking"


def event_id_for_booking(booking_id: str) -> str:
    """A Calendar event id that only this booking can have.

    base32hex (the alphabet Google accepts: a-v, 0-9) of a SHA-256 digest, so any booking id
    maps to a valid, fixed-length id, and a retry after a lost answer collides (409) with
    the event it already created instead of creating a second one.
    """
    digest = hashlib.sha256(f"booking:{booking_id}".encode()).digest()
    return base64.b32hexencode(digest).decode("ascii").rstrip("=").lower()


def refund_key(booking_id: str) -> str:
    """The idempotency key of the booking's refund: a retried cancel never refunds twice."""
    return "refund-" + event_id_for_booking(booking_id)


def own_event_id(booking_id: str, data: dict[str, Any]) -> str:
    """The id of the booking's event: the one linked to it, or the one it would get."""
    return str(data.get("googleEventId") or "") or event_id_for_booking(booking_id)


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
    """A booking as this system reads it."""

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
    amount_refunded: str = ""
    refund_requested: bool = False
    refund_id: str = ""
    session_id: str = ""
    paid_at: datetime | None = None

    @classmethod
    def from_document(cls, booking_id: str, data: dict[str, Any]) -> Booking:
        try:
            status = BookingStatus(data.get("status") or BookingStatus.AWAITING_PAYMENT)
        except ValueError as exc:
            raise InvalidBooking(f"booking {booking_id} has an unknown status") from exc
        price: dict[str, Any] = data["price"] if isinstance(data.get("price"), dict) else {}
        return cls(
            id=booking_id,
            status=status,
            class_title=str(data.get("classTitle") or "Clase virtual"),
            teacher=Person.from_document(data.get("teacher")),
            student=Person.from_document(data.get("student")),
            start_raw=data.get("start"),
            end_raw=data.get("end"),
            time_zone=str(data.get("timeZone") or TIME_ZONE),
            price_amount=amount_of(price.get("amount")),
            currency=str(price.get("currency") or ""),
            preference_id=str(data.get("preferenceId") or ""),
            payment_id=str(data.get("paymentId") or ""),
            payment_status=str(data.get("paymentStatus") or ""),
            google_event_id=str(data.get("googleEventId") or ""),
            calendar_status=str(data.get("calendarStatus") or ""),
            needs_attention=str(data.get("needsAttention") or ""),
            amount_refunded=str(data.get("amountRefunded") or ""),
            refund_requested=data.get("refundRequested") is True,
            refund_id=str(data.get("refundId") or ""),
            session_id=str(data.get("sessionId") or ""),
            paid_at=parse_instant(data.get("paidAt")),
        )

    def zone(self) -> ZoneInfo:
        try:
            return zone_named(self.time_zone)
        except ValueError as exc:
            raise InvalidBooking(f"booking {self.id} has an unknown time zone") from exc

    def class_times(self) -> tuple[datetime, datetime]:
        """Start and end as aware datetimes in the booking's zone; end must follow start."""
        zone = self.zone()
        start = _parse_time(self.start_raw, zone, self.id, "start")
        end = _parse_time(self.end_raw, zone, self.id, "end")
        if end <= start:
            raise InvalidBooking(f"booking {self.id} ends before it starts")
        return start, end


def amount_of(raw: Any) -> Decimal | None:
    """A money amount from a document or an API (None when absent or not a finite number)."""
    if raw is None or isinstance(raw, bool):
        return None
    try:
        value = Decimal(str(raw))
    except InvalidOperation:
        return None
    return value if value.is_finite() else None


def _parse_time(raw: Any, zone: ZoneInfo, booking_id: str, name: str) -> datetime:
    if not isinstance(raw, datetime | str) or not raw:
        raise InvalidBooking(f"booking {booking_id} has no {name}")
    value = parse_local(raw, zone)  # without an offset: wall-clock time in the booking's zone
    if value is None:
        raise InvalidBooking(f"booking {booking_id} has an unreadable {name}")
    return value


@dataclass(frozen=True)
class Payment:
    """The fields of a Mercado Pago payment this system relies on."""

    id: str
    status: str
    status_detail: str
    external_reference: str
    amount: Decimal | None
    currency: str
    order_id: str
    date_approved: str | None
    amount_refunded: Decimal = Decimal(0)

    @property
    def approved(self) -> bool:
        return self.status == APPROVED

    @property
    def partly_refunded(self) -> bool:
        """Approved, with part of it given back: the class stays, an admin is told."""
        return self.approved and self.amount_refunded > 0


@dataclass(frozen=True)
class ClassEvent:
    """What a booking keeps of its Calendar event (the Calendar adapter maps Google's shape)."""

    event_id: str
    status: str
    html_link: str
    meet_link: str
    conference_status: str
    booking_id: str
    updated: str = ""  # the event's version, so the push that echoes our own change is ignored
    etag: str = ""

    @property
    def meet_pending(self) -> bool:
        return self.conference_status == ConferenceStatus.PENDING


@dataclass(frozen=True)
class Issue:
    """Something an admin must look at, recorded once per payment and kind."""

    kind: str
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Decision:
    """What to do with one booking, decided from one read of it.

    `fields` are committed guarded by that read (with the payment's claim when `claim`);
    `issue` is recorded for admins; before the commit comes the Calendar work:
    `create_event` (the class needs its event), `cancel_event` (this event is cancelled and
    its guests told), `move_to` (the event moves to these times); `refund` asks Mercado Pago
    to refund the booking's payment.
    """

    outcome: str
    booking: Booking | None = None
    fields: dict[str, Any] | None = None
    claim: bool = False
    issue: Issue | None = None
    create_event: bool = False
    event: ClassEvent | None = None
    cancel_event: str = ""
    move_to: tuple[datetime, datetime] | None = None
    refund: bool = False
    session_fields: dict[str, Any] | None = None
    join_session: str = ""
    leave_session: str = ""
    notice: dict[str, Any] | None = None

    def with_event(self, event: ClassEvent) -> Decision:
        """The event exists: the booking is scheduled with it (or cancelled, if it is)."""
        assert self.booking is not None
        fields = {**(self.fields or {}), **event_fields(self.booking, event)}
        return replace(self, outcome="scheduled", fields=fields, create_event=False, event=event)

    def without_event(self, outcome: str, reason: str, status: CalendarStatus) -> Decision:
        """No event this time: keep the payment on the booking, and say why it waits."""
        assert self.booking is not None
        fields = {**(self.fields or {}), "calendarStatus": status.value, "calendarError": reason}
        if can_move(self.booking.status, BookingStatus.PAID):
            fields["status"] = BookingStatus.PAID.value
        issue = (
            Issue(outcome, {"bookingId": self.booking.id, "detail": reason})
            if status == CalendarStatus.REJECTED
            else None
        )
        return replace(self, outcome=outcome, fields=fields, issue=issue, create_event=False)

    def with_moved(self, event: ClassEvent) -> Decision:
        """The event moved: remember its version, so the push that echoes it changes nothing."""
        fields = {
            **(self.fields or {}),
            "calendarUpdated": event.updated,
            "calendarEtag": event.etag,
            **conference_fields(event),
        }
        return replace(self, fields=fields, move_to=None)

    def cancelling(self, event_id: str) -> Decision:
        """Also cancel `event_id` (if it exists) before the commit."""
        return replace(self, cancel_event=event_id)

    def with_cancelled(self, event: ClassEvent | None) -> Decision:
        """The cancel is done: the booking records its cancelled event (and keeps its Meet
        link for the record); nothing to record when no event existed."""
        event_id = event.event_id if event else self.booking.google_event_id if self.booking else ""
        if not event_id:
            return replace(self, cancel_event="")
        fields = {
            **(self.fields or {}),
            "googleEventId": event_id,
            "calendarStatus": CalendarStatus.CANCELLED.value,
            "calendarCancelledAt": SERVER_TIME,
            "updatedAt": SERVER_TIME,
        }
        if event is not None and event.meet_link:
            fields["meetLink"] = event.meet_link
        return replace(self, fields=fields, cancel_event="")


def event_fields(booking: Booking, event: ClassEvent) -> dict[str, Any]:
    """What a booking records of its event; a cancelled event cancels the booking."""
    fields: dict[str, Any] = {
        "googleEventId": event.event_id,
        "htmlLink": event.html_link or None,
        "calendarStatus": event.status,
        "calendarError": REMOVE,
        "updatedAt": SERVER_TIME,
        **conference_fields(event),
    }
    cancelled = event.status == CalendarStatus.CANCELLED
    wanted = BookingStatus.CANCELLED if cancelled else BookingStatus.SCHEDULED
    if can_move(booking.status, wanted):
        fields["status"] = wanted.value
    if cancelled:
        fields["needsAttention"] = "event_cancelled"
    return fields


def conference_fields(event: ClassEvent) -> dict[str, Any]:
    """The Meet link and the conference's state; a failed conference needs an admin."""
    fields: dict[str, Any] = {
        "meetLink": event.meet_link or None,
        "conferenceStatus": event.conference_status,
    }
    if event.conference_status == ConferenceStatus.FAILURE:
        fields["needsAttention"] = "meet_link_failed"
    return fields
