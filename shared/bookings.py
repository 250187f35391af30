"""Bookings: their states, and every decision about them, as pure functions over values.

Nothing here does I/O. The payment webhook, the reconcile sweep and the calendar sync read
what they need (`shared.store`, `shared.payments`, `shared.calendar`), ask a function here
what it means for the booking, and write the answer. The states and their transitions:

    awaiting_payment --approved payment--> paid --event created--> scheduled
    awaiting_payment --approved payment and event created at once--> scheduled
    paid | scheduled --event cancelled in Google Calendar--> cancelled
    awaiting_payment | paid --the class began before its event was created--> paid_late

A class that has begun is never scheduled: Mercado Pago may approve a cash voucher days after
the class it paid for, and an invitation to a class under way (or over) helps nobody. Every
decision that could create an event takes `now`, the instant its caller read once.

`paid` means "paid, but the class has no Calendar event yet": the next delivery of the
payment notification, or the reconcile step, finishes it (`calendarStatus` says why it
waits). `TRANSITIONS` is the table; the README's table is checked against it by a test.

Fields to write are plain values plus two markers, `SERVER_TIME` (the commit's time) and
`REMOVE` (delete the field), which the store turns into Firestore's sentinels.
"""

from __future__ import annotations

import base64
import enum
import hashlib
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any, Final
from zoneinfo import ZoneInfo

from shared.clock import TIME_ZONE, ZONE, local_iso, parse_instant, parse_local, zone_named
from shared.errors import Conflict, InvalidRequest, UnprocessableNotification

__all__ = [
    "APPROVED",
    "ENDED",
    "REMOVE",
    "REVERSALS",
    "SERVER_TIME",
    "TRANSITIONS",
    "Booking",
    "BookingChange",
    "BookingStatus",
    "CalendarStatus",
    "ClassEvent",
    "ConferenceStatus",
    "Decision",
    "InvalidBooking",
    "Issue",
    "LatePolicy",
    "Payment",
    "Person",
    "SeatStatus",
    "Session",
    "amount_of",
    "can_move",
    "conference_fields",
    "decide_cancel",
    "decide_event_change",
    "decide_leave",
    "decide_payment",
    "decide_reconcile",
    "decide_reschedule",
    "decide_seat",
    "decide_seat_joined",
    "decide_session_event_change",
    "event_fields",
    "event_id_for_booking",
    "event_id_for_session",
    "own_event_id",
    "own_session_event_id",
    "refund_key",
    "refuse_overlap",
    "refuse_started",
]


class _Marker(enum.Enum):
    SERVER_TIME = "server time"
    REMOVE = "remove"


SERVER_TIME: Final = _Marker.SERVER_TIME
"""The time the write is committed (Firestore's server timestamp)."""
REMOVE: Final = _Marker.REMOVE
"""Delete the field."""

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


# -- values -------------------------------------------------------------------------------


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
    """What a booking keeps of its Calendar event."""

    event_id: str
    status: str
    html_link: str
    meet_link: str
    conference_status: str
    booking_id: str

    @classmethod
    def from_event(cls, event: dict[str, Any]) -> ClassEvent:
        conference = event.get("conferenceData") or {}
        status = ((conference.get("createRequest") or {}).get("status") or {}).get("statusCode")
        meet = event.get("hangoutLink") or next(
            (
                entry.get("uri", "")
                for entry in conference.get("entryPoints", [])
                if entry.get("entryPointType") == "video"
            ),
            "",
        )
        private = (event.get("extendedProperties") or {}).get("private") or {}
        return cls(
            event_id=str(event.get("id", "")),
            status=str(event.get("status") or CalendarStatus.CONFIRMED),
            html_link=str(event.get("htmlLink") or ""),
            meet_link=str(meet or ""),
            conference_status=str(
                status or (ConferenceStatus.SUCCESS if meet else ConferenceStatus.NONE)
            ),
            booking_id=str(private.get("bookingId") or ""),
        )

    @property
    def meet_pending(self) -> bool:
        return self.conference_status == ConferenceStatus.PENDING


# -- what a payment means for a booking ------------------------------------------------------


@dataclass(frozen=True)
class Issue:
    """Something an admin must look at, recorded once per payment and kind."""

    kind: str
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class LatePolicy:
    """When a paid class is too late to schedule, and whether its payment goes back at once
    (`LATE_PAYMENT_MARGIN_MINUTES`, `AUTO_REFUND_LATE_PAYMENTS`)."""

    margin: timedelta = timedelta(0)
    auto_refund: bool = False

    def too_late(self, start: datetime, now: datetime) -> bool:
        """Whether a class starting at `start` has begun (less the margin) at `now`."""
        return now >= start - self.margin


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

    def with_moved(self, event: dict[str, Any]) -> Decision:
        """The event moved: remember its version, so the push that echoes it changes nothing."""
        fields = {
            **(self.fields or {}),
            "calendarUpdated": str(event.get("updated") or ""),
            "calendarEtag": str(event.get("etag") or ""),
            **conference_fields(ClassEvent.from_event(event)),
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


def decide_payment(
    booking_id: str,
    data: dict[str, Any] | None,
    claimed_by: str | None,
    payment: Payment,
    created_event_id: str = "",
    *,
    now: datetime,
    late: LatePolicy = LatePolicy(),
) -> Decision:
    """What `payment` means for the booking it names (`data` None: no such booking), at `now`.

    `claimed_by` is the booking the payment's claim already points at, if any: one payment
    never pays for two bookings. `created_event_id` is the booking's event when this
    delivery created it in an earlier attempt whose commit lost a race: unless the booking
    still wants its class, that event is cancelled, so a refund that overtook the approval
    never leaves a live class behind. An approval for a class that has begun (by `late`)
    schedules nothing: the booking is `paid_late` for an admin's refund, or refunded.
    """
    decision = _payment_decision(booking_id, data, claimed_by, payment, now, late)
    booking = decision.booking
    keeps_event = decision.create_event or (
        booking is not None and booking.status == BookingStatus.SCHEDULED
    )
    if created_event_id and not keeps_event and not decision.cancel_event:
        return decision.cancelling(created_event_id)
    return decision


def _payment_decision(
    booking_id: str,
    data: dict[str, Any] | None,
    claimed_by: str | None,
    payment: Payment,
    now: datetime,
    late: LatePolicy,
) -> Decision:
    if data is None:
        return Decision(
            "unknown_booking",
            issue=Issue("unknown_booking", {"externalReference": payment.external_reference}),
        )
    try:
        booking = Booking.from_document(booking_id, data)
    except InvalidBooking as exc:
        return Decision(
            "invalid_booking",
            issue=Issue("invalid_booking", {"bookingId": booking_id, "detail": exc.message}),
        )
    about = {"bookingId": booking.id}
    if claimed_by and claimed_by != booking.id:
        return Decision(
            "payment_already_used", booking, issue=Issue("payment_claimed_twice", about)
        )
    if (
        booking.price_amount is None
        or booking.price_amount != payment.amount
        or booking.currency != payment.currency
    ):
        details = {
            **about,
            "paid": str(payment.amount),
            "currency": payment.currency,
            "price": str(booking.price_amount),
            "priceCurrency": booking.currency,
        }
        return Decision("amount_mismatch", booking, issue=Issue("amount_mismatch", details))
    if (
        booking.payment_id
        and booking.payment_id != payment.id
        and booking.status != BookingStatus.AWAITING_PAYMENT
    ):
        issue = (
            Issue("booking_paid_twice", {**about, "firstPaymentId": booking.payment_id})
            if payment.approved
            else None
        )
        return Decision("booking_paid_by_other_payment", booking, issue=issue)
    if booking.status in ENDED:
        return _ended(booking, payment)
    if payment.status in REVERSALS:
        return _reversed(booking, payment)
    if not payment.approved:
        if booking.status != BookingStatus.AWAITING_PAYMENT:
            return Decision(f"payment_{payment.status}_ignored", booking)
        return Decision(f"payment_{payment.status or 'unknown'}", booking, _payment_fields(payment))
    partial = _partial_refund(booking, payment)
    if booking.status == BookingStatus.SCHEDULED and booking.google_event_id:
        fields = {**_payment_fields(payment), "amountRefunded": _money(payment.amount_refunded)}
        return Decision("already_scheduled", booking, fields if partial else None, issue=partial)
    if booking.status == BookingStatus.PAID_LATE:
        # Delivered again: nothing new, but a refund asked for and lost is asked again (the
        # refund's idempotency key makes it one refund).
        return Decision("already_paid_late", booking, refund=late.auto_refund)
    paid = {**_payment_fields(payment), "paidAt": _paid_at(payment)}
    if partial:
        paid["amountRefunded"] = _money(payment.amount_refunded)
    if booking.session_id:
        # A seat of a group session: `decide_seat` decides with the session's read.
        return Decision(
            "seat",
            booking,
            paid,
            claim=claimed_by is None,
            issue=partial,
            join_session=booking.session_id,
        )
    decision = Decision(
        "scheduled", booking, paid, claim=claimed_by is None, create_event=True, issue=partial
    )
    return _unless_begun(decision, booking, _later(now, payment), late)


def _later(now: datetime, payment: Payment) -> datetime:
    """The decision's present: `now`, or the approval if Mercado Pago's clock is ahead."""
    approved = parse_instant(payment.date_approved)
    return max(now, approved) if approved is not None else now


def _unless_begun(decision: Decision, class_: Booking, now: datetime, late: LatePolicy) -> Decision:
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


def _money(amount: Decimal) -> str:
    return f"{amount:.2f}"


def _partial_refund(booking: Booking, payment: Payment) -> Issue | None:
    """Part of an approved payment given back: the class stays, an admin is told (once per
    amount: the booking records what was refunded)."""
    if not payment.partly_refunded or _money(payment.amount_refunded) == booking.amount_refunded:
        return None
    return Issue(
        "partial_refund", {"bookingId": booking.id, "refunded": _money(payment.amount_refunded)}
    )


def _reversed(booking: Booking, payment: Payment) -> Decision:
    """A payment taken back: the class is cancelled and its guests told.

    A cancelled payment of a booking still awaiting payment is only a failed attempt (an
    expired voucher, say): the student may still pay, so the booking stays open.
    """
    fields = _payment_fields(payment)
    if booking.status == BookingStatus.AWAITING_PAYMENT and payment.status == "cancelled":
        return Decision(f"payment_{payment.status}", booking, fields)
    ended = REVERSALS[payment.status]
    fields.update({"status": ended.value, "endedAt": SERVER_TIME})
    if ended == BookingStatus.CHARGED_BACK:
        fields["needsAttention"] = "payment_charged_back"  # a dispute an admin may contest
    decision = Decision(f"payment_{payment.status}", booking, fields)
    if booking.session_id:
        return replace(decision, leave_session=booking.session_id)  # the others keep the class
    if booking.calendar_status in (CalendarStatus.CANCELLED, CalendarStatus.TOO_LATE):
        return decision  # no event to cancel
    # Without a linked event, look for the booking's own: a delivery may be creating it.
    return decision.cancelling(booking.google_event_id or event_id_for_booking(booking.id))


def _ended(booking: Booking, payment: Payment) -> Decision:
    """A booking already cancelled or refunded keeps no class; the payment's news is kept."""
    fields: dict[str, Any] | None = None
    issue = None
    if payment.status in REVERSALS and payment.status != booking.payment_status:
        fields = _payment_fields(payment)  # e.g. the refund of a class an admin cancelled
        ended = REVERSALS[payment.status]
        if (
            booking.status == BookingStatus.CANCELLED
            and booking.needs_attention == "event_cancelled"
            and can_move(booking.status, ended)
        ):
            # Our own cancel of the event reached the sync first (it saw only "cancelled in
            # Google Calendar"): the refund says why, and no admin has a refund to decide.
            fields.update({"status": ended.value, "needsAttention": REMOVE})
    elif payment.approved and not booking.payment_id:
        fields = _payment_fields(payment)  # paid after it was cancelled: an admin refunds
        issue = Issue("paid_cancelled_booking", {"bookingId": booking.id})
    decision = Decision(f"booking_{booking.status.value}", booking, fields, issue=issue)
    if booking.session_id:
        return replace(decision, leave_session=booking.session_id)  # a no-op once it is free
    if booking.google_event_id and booking.calendar_status != CalendarStatus.CANCELLED:
        return decision.cancelling(booking.google_event_id)  # an earlier cancel did not finish
    return decision


def _payment_fields(payment: Payment) -> dict[str, Any]:
    return {
        "paymentId": payment.id,
        "paymentStatus": payment.status,
        "paymentStatusDetail": payment.status_detail,
        "updatedAt": SERVER_TIME,
    }


def _paid_at(payment: Payment) -> Any:
    approved = parse_instant(payment.date_approved)
    return approved.astimezone(UTC) if approved is not None else SERVER_TIME


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


def decide_reconcile(
    booking: Booking,
    created_event_id: str = "",
    *,
    now: datetime,
    late: LatePolicy = LatePolicy(),
    session: Session | None = None,
) -> Decision:
    """A paid booking without an event: create it, unless its payment no longer stands
    (or a delivery settled it meanwhile), or its class (a seat's: its `session`) has begun
    at `now`: then it is reported `paid_late`, never healed into a class under way.
    `created_event_id`: as in `decide_payment`."""
    if (
        booking.status != BookingStatus.PAID
        or booking.calendar_status != CalendarStatus.PENDING_CREATION
    ):
        decision = Decision("settled_meanwhile", booking)
        if created_event_id and booking.status != BookingStatus.SCHEDULED:
            return decision.cancelling(created_event_id)
        return decision
    if booking.payment_status != APPROVED or booking.needs_attention:
        fields = {"calendarStatus": CalendarStatus.ON_HOLD.value, "updatedAt": SERVER_TIME}
        decision = Decision("on_hold", booking, fields)
        return decision.cancelling(created_event_id) if created_event_id else decision
    if booking.session_id:
        held = Decision("seat_held", booking, join_session=booking.session_id)
        return _unless_begun(held, session.as_booking(), now, late) if session else held
    scheduled = Decision("scheduled", booking, {}, create_event=True)
    decision = _unless_begun(scheduled, booking, now, late)
    if created_event_id and decision.outcome == "paid_late":
        return decision.cancelling(created_event_id)
    return decision


# -- group classes: sessions and their seats ----------------------------------------------------


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
    late: LatePolicy = LatePolicy(),
) -> Decision:
    """A paid booking of a group session: hold a seat (the count decided here, committed
    guarded by the session's read), or refuse it when the session is full or gone, or
    has begun at `now` (then `paid_late`, as a one-to-one class)."""
    booking = decision.booking
    assert booking is not None
    if booking.id in (session.seats if session else {}):
        return replace(decision, create_event=False, join_session=booking.session_id)
    if session is None or session.status != "scheduled" or not session.google_event_id:
        return _over_capacity(decision, "session_unavailable", auto_refund)
    late_decision = _unless_begun(decision, session.as_booking(), now, late)
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


# -- what an admin's action means for a booking ------------------------------------------------


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


# -- what an event change means for a booking -------------------------------------------------


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
