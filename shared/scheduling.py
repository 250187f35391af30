"""From an approved payment to a scheduled class, exactly once.

`ensure_class_event` is the one idempotent path that creates a class's Calendar event: the
event id is derived from the booking, so a second attempt (a duplicated webhook, a retry
after a lost answer, the reconcile step) meets a 409 and adopts the event that exists.

`apply_payment_notification` decides what a payment means for its booking and writes it
back with optimistic concurrency: one Firestore commit guarded by the booking's update
time (and the payment claim's absence). A concurrent delivery that wrote first makes the
commit fail; the loser reads again and finds the booking already scheduled.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

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
    claim_ref,
    find_by_preference,
    firestore_call,
    record_payment_issue,
)
from shared.calendar import EventLink, calendar_api, class_event_body
from shared.clients import firestore_client
from shared.errors import (
    PermanentUpstreamError,
    TransientUpstreamError,
    UpstreamConflict,
    UpstreamNotFound,
)
from shared.payments import Payment, PaymentNotification, get_payment, get_preference_id
from shared.retry import Deadline

REVERSED_STATUSES = frozenset({"refunded", "charged_back", "cancelled"})
_WRITE_ATTEMPTS = 4


@dataclass(frozen=True)
class Outcome:
    """What one notification did, for the log line and the HTTP answer."""

    outcome: str
    payment_id: str
    booking_id: str = ""
    event: EventLink | None = None

    def as_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "outcome": self.outcome,
            "paymentId": self.payment_id,
            "bookingId": self.booking_id or None,
        }
        if self.event is not None:
            body["googleEventId"] = self.event.event_id
            body["meetLink"] = self.event.meet_link or None
        return body


def ensure_class_event(booking: Booking, payment_id: str, deadline: Deadline) -> EventLink:
    """Create the booking's event, or adopt it if an earlier attempt already did."""
    api = calendar_api()
    body = class_event_body(booking, payment_id)
    try:
        event = api.insert_event(body, deadline)
    except UpstreamConflict:
        event = api.get_event(body["id"], deadline)
    link = EventLink.from_event(event)
    if link.booking_id and link.booking_id != booking.id:
        raise PermanentUpstreamError(f"event {link.event_id} belongs to another booking")
    delay = 0.2
    while link.conference_status == "pending" and deadline.remaining() > delay + 1.0:
        time.sleep(delay)  # Meet creation is asynchronous; look again within the budget
        delay = min(1.0, delay * 2)
        link = EventLink.from_event(api.get_event(link.event_id, deadline))
    return link


def apply_payment_notification(note: PaymentNotification, deadline: Deadline) -> Outcome:
    """Read the payment from Mercado Pago and bring its booking up to date."""
    try:
        payment = get_payment(note.payment_id, deadline)
    except UpstreamNotFound:
        record_payment_issue("payment_not_found", note.payment_id)
        return Outcome("payment_not_found", note.payment_id)
    for _ in range(_WRITE_ATTEMPTS):
        try:
            return _apply(payment, deadline)
        except (gexc.FailedPrecondition, gexc.AlreadyExists, gexc.Aborted, gexc.Conflict):
            pass  # someone wrote the booking first: read it again and decide again
    raise TransientUpstreamError("booking kept changing under concurrent deliveries")


def _locate(
    payment: Payment, deadline: Deadline
) -> tuple[firestore.DocumentSnapshot[Any] | None, firestore.DocumentSnapshot[Any]]:
    """The booking a payment is for, and the payment's claim, in one round trip if possible."""
    claim = claim_ref(payment.id)
    if payment.external_reference:
        with firestore_call("read booking"):
            snaps = {
                s.reference.path: s
                for s in firestore_client().get_all(
                    [booking_ref(payment.external_reference), claim]
                )
            }
        booking_snap = snaps[booking_ref(payment.external_reference).path]
        return (booking_snap if booking_snap.exists else None), snaps[claim.path]
    preference_id = get_preference_id(payment.order_id, deadline) if payment.order_id else ""
    found = find_by_preference(preference_id) if preference_id else None
    with firestore_call("read payment claim"):
        return found, claim.get()


def _apply(payment: Payment, deadline: Deadline) -> Outcome:
    snap, claim = _locate(payment, deadline)
    if snap is None:
        logs.error(
            "payment for an unknown booking",
            payment_id=payment.id,
            external_reference=payment.external_reference or None,
        )
        record_payment_issue(
            "unknown_booking", payment.id, externalReference=payment.external_reference or None
        )
        return Outcome("unknown_booking", payment.id)
    booking = Booking.from_document(snap.id, snap.to_dict() or {})
    claimed_by = (claim.to_dict() or {}).get("bookingId") if claim.exists else None
    if claimed_by and claimed_by != booking.id:
        record_payment_issue("payment_claimed_twice", payment.id, bookingId=booking.id)
        return Outcome("payment_already_used", payment.id, booking.id)
    if booking.price_amount != payment.amount or booking.currency != payment.currency:
        logs.error(
            "payment amount differs from the booking's price",
            payment_id=payment.id,
            booking_id=booking.id,
        )
        record_payment_issue(
            "amount_mismatch",
            payment.id,
            bookingId=booking.id,
            paid=str(payment.amount),
            currency=payment.currency,
            price=str(booking.price_amount),
            priceCurrency=booking.currency,
        )
        return Outcome("amount_mismatch", payment.id, booking.id)
    if (
        booking.payment_id
        and booking.payment_id != payment.id
        and booking.status in (BookingStatus.PAID, BookingStatus.SCHEDULED)
    ):
        if payment.approved:
            record_payment_issue(
                "booking_paid_twice",
                payment.id,
                bookingId=booking.id,
                firstPaymentId=booking.payment_id,
            )
        return Outcome("booking_paid_by_other_payment", payment.id, booking.id)
    if not payment.approved:
        return _record_payment_state(snap, booking, payment)
    if booking.status == BookingStatus.SCHEDULED and booking.google_event_id:
        return Outcome("already_scheduled", payment.id, booking.id)
    if booking.status == BookingStatus.CANCELLED:
        record_payment_issue("paid_cancelled_booking", payment.id, bookingId=booking.id)
        return Outcome("booking_cancelled", payment.id, booking.id)
    return _schedule(snap, claim, booking, payment, deadline)


def _payment_fields(payment: Payment) -> dict[str, Any]:
    return {
        "paymentId": payment.id,
        "paymentStatus": payment.status,
        "paymentStatusDetail": payment.status_detail,
        "updatedAt": firestore.SERVER_TIMESTAMP,
    }


def _paid_at(payment: Payment) -> Any:
    if payment.date_approved:
        try:
            return datetime.fromisoformat(payment.date_approved).astimezone(UTC)
        except ValueError:
            pass
    return firestore.SERVER_TIMESTAMP


def _record_payment_state(
    snap: firestore.DocumentSnapshot[Any], booking: Booking, payment: Payment
) -> Outcome:
    """A payment that is not approved changes the booking's payment state, nothing else."""
    fields = _payment_fields(payment)
    if booking.status != BookingStatus.AWAITING_PAYMENT:
        if booking.payment_id != payment.id or payment.status not in REVERSED_STATUSES:
            return Outcome(f"payment_{payment.status}_ignored", payment.id, booking.id)
        fields["needsAttention"] = f"payment_{payment.status}"
    _commit(snap, fields, None)
    return Outcome(f"payment_{payment.status or 'unknown'}", payment.id, booking.id)


def _schedule(
    snap: firestore.DocumentSnapshot[Any],
    claim: firestore.DocumentSnapshot[Any],
    booking: Booking,
    payment: Payment,
    deadline: Deadline,
) -> Outcome:
    paid = {**_payment_fields(payment), "paidAt": _paid_at(payment)}
    new_claim = (
        None if claim.exists else {"bookingId": booking.id, "createdAt": firestore.SERVER_TIMESTAMP}
    )
    try:
        link = ensure_class_event(booking, payment.id, deadline)
    except InvalidBooking as exc:
        _mark_paid_without_event(snap, booking, paid, new_claim, str(exc))
        record_payment_issue("invalid_booking", payment.id, bookingId=booking.id, detail=str(exc))
        return Outcome("invalid_booking", payment.id, booking.id)
    except TransientUpstreamError as exc:
        _mark_paid_without_event(snap, booking, paid, new_claim, exc.message)
        raise
    except PermanentUpstreamError as exc:
        logs.error(
            "Google Calendar rejected the class event",
            booking_id=booking.id,
            payment_id=payment.id,
            detail=exc.message,
        )
        _mark_paid_without_event(snap, booking, paid, new_claim, exc.message)
        record_payment_issue(
            "calendar_rejected", payment.id, bookingId=booking.id, detail=exc.message
        )
        return Outcome("calendar_rejected", payment.id, booking.id)
    _commit(snap, {**paid, **_event_fields(link)}, new_claim)
    return Outcome("scheduled", payment.id, booking.id, link)


def _event_fields(link: EventLink) -> dict[str, Any]:
    return {
        "status": BookingStatus.SCHEDULED.value,
        "googleEventId": link.event_id,
        "meetLink": link.meet_link or None,
        "htmlLink": link.html_link or None,
        "calendarStatus": link.status,
        "conferenceStatus": link.conference_status,
        "calendarError": firestore.DELETE_FIELD,
        "updatedAt": firestore.SERVER_TIMESTAMP,
    }


def reconcile_bookings(deadline: Deadline, limit: int = 50) -> list[Outcome]:
    """Finish what deliveries could not: paid bookings without an event, pending Meet links.

    Runs on a schedule (and after an admin consents again). Each booking goes through the
    same idempotent `ensure_class_event`, so a sweep that overlaps a late webhook is harmless.
    A transient failure ends the sweep early; the next run picks up where it stopped.
    """
    outcomes: list[Outcome] = []
    with firestore_call("find bookings to reconcile"):
        paid = list(
            bookings()
            .where(filter=FieldFilter("status", "==", BookingStatus.PAID.value))
            .limit(limit)
            .stream()
        )
        pending = list(
            bookings()
            .where(filter=FieldFilter("conferenceStatus", "==", "pending"))
            .limit(limit)
            .stream()
        )
    for snap in [*paid, *pending]:
        if deadline.remaining() < 2.0:
            break
        booking = Booking.from_document(snap.id, snap.to_dict() or {})
        if not booking.payment_id:
            continue
        try:
            link = ensure_class_event(booking, booking.payment_id, deadline)
            _commit(snap, _event_fields(link), None)
        except InvalidBooking as exc:
            outcomes.append(Outcome("invalid_booking", booking.payment_id, booking.id))
            logs.error("booking cannot become an event", booking_id=booking.id, detail=exc.message)
            continue
        except PermanentUpstreamError as exc:
            outcomes.append(Outcome("calendar_rejected", booking.payment_id, booking.id))
            logs.error(
                "Google Calendar rejected the class event",
                booking_id=booking.id,
                detail=exc.message,
            )
            continue
        except (gexc.FailedPrecondition, gexc.Aborted):
            continue  # a delivery wrote it meanwhile
        except TransientUpstreamError:
            outcomes.append(Outcome("retry_later", booking.payment_id, booking.id))
            break
        outcomes.append(Outcome("scheduled", booking.payment_id, booking.id, link))
    return outcomes


def _mark_paid_without_event(
    snap: firestore.DocumentSnapshot[Any],
    booking: Booking,
    paid: dict[str, Any],
    new_claim: dict[str, Any] | None,
    reason: str,
) -> None:
    """Keep the payment on the booking so the reconcile step can create the event later."""
    fields = {**paid, "calendarStatus": "pending_creation", "calendarError": reason}
    if can_move(booking.status, BookingStatus.PAID):
        fields["status"] = BookingStatus.PAID.value
    try:
        _commit(snap, fields, new_claim)
    except (gexc.GoogleAPICallError, TransientUpstreamError):
        logs.error("could not mark booking as paid without event", booking_id=booking.id)


def _commit(
    snap: firestore.DocumentSnapshot[Any], fields: dict[str, Any], new_claim: dict[str, Any] | None
) -> None:
    """One atomic commit, valid only if nobody wrote the booking since `snap` was read."""
    client = firestore_client()
    batch = client.batch()
    batch.update(
        snap.reference, fields, option=client.write_option(last_update_time=snap.update_time)
    )
    if new_claim is not None:
        batch.create(claim_ref(str(fields["paymentId"])), new_claim)
    with firestore_call("write booking"):
        batch.commit()
