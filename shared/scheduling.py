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
    is_booking_id,
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
from shared.payments import APPROVED, Payment, PaymentNotification, get_payment, get_preference_id
from shared.retry import Deadline
from shared.store import firestore_call, rpc_budget

REVERSED_STATUSES = frozenset({"refunded", "charged_back", "cancelled"})
PENDING_CREATION = "pending_creation"  # paid; the event is still to be created (reconcile)
REJECTED = "rejected"  # Google refused the event or the booking is unusable: an admin acts
ON_HOLD = "on_hold"  # paid without event, then the payment was reversed: no class to create
_WRITE_ATTEMPTS = 4


class _Contended(Exception):
    """Someone wrote the booking (or claimed the payment) since we read it."""


@dataclass(frozen=True)
class Outcome:
    """What happened to one booking, for the log line and the HTTP answer."""

    outcome: str
    payment_id: str
    booking_id: str = ""
    event: EventLink | None = None

    def as_json(self) -> dict[str, Any]:
        """The detailed form, for authenticated admin answers and logs."""
        body: dict[str, Any] = {
            "outcome": self.outcome,
            "paymentId": self.payment_id,
            "bookingId": self.booking_id or None,
        }
        if self.event is not None:
            body["googleEventId"] = self.event.event_id
            body["meetLink"] = self.event.meet_link or None
        return body


# -- the one path that creates a class's event ------------------------------------------


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
    return link


def await_meet_link(link: EventLink, deadline: Deadline) -> EventLink:
    """Meet creates the conference asynchronously: look again while the budget allows."""
    delay = 0.2
    while link.conference_status == "pending" and deadline.remaining() > delay + 1.0:
        time.sleep(delay)
        delay = min(1.0, delay * 2)
        link = EventLink.from_event(calendar_api().get_event(link.event_id, deadline))
    return link


def _event_fields(booking: Booking, link: EventLink) -> dict[str, Any]:
    """What a booking records of its event; a cancelled event cancels the booking."""
    fields: dict[str, Any] = {
        "googleEventId": link.event_id,
        "htmlLink": link.html_link or None,
        "calendarStatus": link.status,
        "calendarError": firestore.DELETE_FIELD,
        "updatedAt": firestore.SERVER_TIMESTAMP,
        **_conference_fields(link),
    }
    wanted = BookingStatus.CANCELLED if link.status == "cancelled" else BookingStatus.SCHEDULED
    if can_move(booking.status, wanted):
        fields["status"] = wanted.value
    if wanted == BookingStatus.CANCELLED:
        fields["needsAttention"] = "event_cancelled"
    return fields


def _conference_fields(link: EventLink) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "meetLink": link.meet_link or None,
        "conferenceStatus": link.conference_status,
    }
    if link.conference_status == "failure":
        fields["needsAttention"] = "meet_link_failed"
    return fields


# -- payment notifications ----------------------------------------------------------------


def apply_payment_notification(note: PaymentNotification, deadline: Deadline) -> Outcome:
    """Read the payment from Mercado Pago and bring its booking up to date."""
    try:
        payment = get_payment(note.payment_id, deadline)
    except UpstreamNotFound:
        # Not recorded: unsigned IPNs naming made-up ids would fill the admins' list.
        logs.warning("notification names a payment Mercado Pago does not know")
        return Outcome("payment_not_found", note.payment_id)
    for _ in range(_WRITE_ATTEMPTS):
        if deadline.expired():
            break
        try:
            return _apply(payment, deadline)
        except _Contended:
            pass  # someone wrote the booking first: read it again and decide again
    raise TransientUpstreamError("booking kept changing under concurrent deliveries")


def _locate(
    payment: Payment, deadline: Deadline
) -> tuple[firestore.DocumentSnapshot[Any] | None, firestore.DocumentSnapshot[Any]]:
    """The booking a payment is for, and the payment's claim, in one round trip if possible."""
    claim = claim_ref(payment.id)
    reference = payment.external_reference
    if reference:
        if not is_booking_id(reference):
            with firestore_call("read payment claim"):
                return None, claim.get(**rpc_budget(deadline))
        booking = booking_ref(reference)
        with firestore_call("read booking"):
            snaps = {
                s.reference.path: s
                for s in firestore_client().get_all([booking, claim], **rpc_budget(deadline))
            }
        booking_snap = snaps[booking.path]
        return (booking_snap if booking_snap.exists else None), snaps[claim.path]
    preference_id = get_preference_id(payment.order_id, deadline) if payment.order_id else ""
    found = find_by_preference(preference_id, deadline) if preference_id else None
    with firestore_call("read payment claim"):
        return found, claim.get(**rpc_budget(deadline))


def _apply(payment: Payment, deadline: Deadline) -> Outcome:
    snap, claim = _locate(payment, deadline)
    if snap is None:
        logs.error("payment for an unknown booking", reference=payment.external_reference)
        record_payment_issue(
            "unknown_booking",
            payment.id,
            deadline,
            externalReference=payment.external_reference or None,
        )
        return Outcome("unknown_booking", payment.id)
    logs.bind(booking_id=snap.id)
    try:
        booking = Booking.from_document(snap.id, snap.to_dict() or {})
    except InvalidBooking as exc:
        logs.error("paid booking cannot be read", detail=exc.message)
        record_payment_issue(
            "invalid_booking", payment.id, deadline, bookingId=snap.id, detail=exc.message
        )
        return Outcome("invalid_booking", payment.id, snap.id)
    claimed_by = (claim.to_dict() or {}).get("bookingId") if claim.exists else None
    if claimed_by and claimed_by != booking.id:
        record_payment_issue("payment_claimed_twice", payment.id, deadline, bookingId=booking.id)
        return Outcome("payment_already_used", payment.id, booking.id)
    if (
        booking.price_amount is None
        or booking.price_amount != payment.amount
        or booking.currency != payment.currency
    ):
        logs.error("payment amount differs from the booking's price")
        record_payment_issue(
            "amount_mismatch",
            payment.id,
            deadline,
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
                deadline,
                bookingId=booking.id,
                firstPaymentId=booking.payment_id,
            )
        return Outcome("booking_paid_by_other_payment", payment.id, booking.id)
    if not payment.approved:
        return _record_payment_state(snap, booking, payment, deadline)
    if booking.status == BookingStatus.SCHEDULED and booking.google_event_id:
        return Outcome("already_scheduled", payment.id, booking.id)
    if booking.status == BookingStatus.CANCELLED:
        record_payment_issue("paid_cancelled_booking", payment.id, deadline, bookingId=booking.id)
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
    snap: firestore.DocumentSnapshot[Any], booking: Booking, payment: Payment, deadline: Deadline
) -> Outcome:
    """A payment that is not approved changes the booking's payment state, nothing else."""
    fields = _payment_fields(payment)
    if booking.status != BookingStatus.AWAITING_PAYMENT:
        if booking.payment_id != payment.id or payment.status not in REVERSED_STATUSES:
            return Outcome(f"payment_{payment.status}_ignored", payment.id, booking.id)
        fields["needsAttention"] = f"payment_{payment.status}"
        if booking.status == BookingStatus.PAID:
            fields["calendarStatus"] = ON_HOLD  # nothing left to schedule
    _commit(snap, fields, None, deadline)
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
        _mark_paid_without_event(snap, booking, paid, new_claim, exc.message, REJECTED, deadline)
        record_payment_issue(
            "invalid_booking", payment.id, deadline, bookingId=booking.id, detail=exc.message
        )
        return Outcome("invalid_booking", payment.id, booking.id)
    except TransientUpstreamError as exc:
        _mark_paid_without_event(
            snap, booking, paid, new_claim, exc.message, PENDING_CREATION, deadline
        )
        raise
    except PermanentUpstreamError as exc:
        logs.error("Google Calendar rejected the class event", detail=exc.message)
        _mark_paid_without_event(snap, booking, paid, new_claim, exc.message, REJECTED, deadline)
        record_payment_issue(
            "calendar_rejected", payment.id, deadline, bookingId=booking.id, detail=exc.message
        )
        return Outcome("calendar_rejected", payment.id, booking.id)
    _commit(snap, {**paid, **_event_fields(booking, link)}, new_claim, deadline)
    if link.conference_status == "pending":
        link = _finish_meet_link(snap.reference, link, deadline)
    return Outcome("scheduled", payment.id, booking.id, link)


def _finish_meet_link(
    ref: firestore.DocumentReference, link: EventLink, deadline: Deadline
) -> EventLink:
    """The booking is already committed; record the Meet link if it arrives in time.

    Otherwise the booking keeps `conferenceStatus: pending` and the reconcile step
    fetches the link later.
    """
    try:
        link = await_meet_link(link, deadline)
        if link.conference_status != "pending":
            with firestore_call("record Meet link"):
                ref.update(_conference_fields(link), **rpc_budget(deadline))
    except (TransientUpstreamError, PermanentUpstreamError, gexc.GoogleAPICallError) as exc:
        logs.warning("Meet link left for the reconcile step", detail=str(exc))
    return link


def _mark_paid_without_event(
    snap: firestore.DocumentSnapshot[Any],
    booking: Booking,
    paid: dict[str, Any],
    new_claim: dict[str, Any] | None,
    reason: str,
    calendar_status: str,
    deadline: Deadline,
) -> None:
    """Keep the payment on the booking: the reconcile step (or an admin) finishes it."""
    fields = {**paid, "calendarStatus": calendar_status, "calendarError": reason}
    if can_move(booking.status, BookingStatus.PAID):
        fields["status"] = BookingStatus.PAID.value
    try:
        _commit(snap, fields, new_claim, Deadline(max(2.0, deadline.remaining())))
    except (_Contended, gexc.GoogleAPICallError, TransientUpstreamError):
        logs.error("could not mark booking as paid without event")


def _commit(
    snap: firestore.DocumentSnapshot[Any],
    fields: dict[str, Any],
    new_claim: dict[str, Any] | None,
    deadline: Deadline,
) -> None:
    """One atomic commit, valid only if nobody wrote the booking since `snap` was read."""
    client = firestore_client()
    batch = client.batch()
    batch.update(
        snap.reference, fields, option=client.write_option(last_update_time=snap.update_time)
    )
    if new_claim is not None:
        batch.create(claim_ref(str(fields["paymentId"])), new_claim)
    try:
        with firestore_call("write booking"):
            batch.commit(**rpc_budget(deadline))
    except (gexc.FailedPrecondition, gexc.AlreadyExists, gexc.Conflict) as exc:
        raise _Contended from exc
    except TransientUpstreamError as exc:
        if isinstance(exc.__cause__, gexc.Aborted):
            raise _Contended from exc  # production may abort a contended commit
        raise


# -- the reconcile sweep ------------------------------------------------------------------


def reconcile_bookings(deadline: Deadline, limit: int = 50) -> list[Outcome]:
    """Finish what deliveries could not: paid bookings without an event, pending Meet links.

    Runs on a schedule (and after an admin consents again). Each booking goes through the
    same idempotent `ensure_class_event`, so a sweep that overlaps a late webhook is harmless.
    A transient failure ends the sweep early; the next run picks up where it stopped.
    Bookings Google refused, or whose payment was reversed, leave the queue
    (`calendarStatus` rejected or on_hold) so they cannot starve the others.
    """
    with firestore_call("find bookings to reconcile"):
        paid = list(
            bookings()
            .where(filter=FieldFilter("status", "==", BookingStatus.PAID.value))
            .where(filter=FieldFilter("calendarStatus", "==", PENDING_CREATION))
            .limit(limit)
            .stream(**rpc_budget(deadline))
        )
        pending = list(
            bookings()
            .where(filter=FieldFilter("status", "==", BookingStatus.SCHEDULED.value))
            .where(filter=FieldFilter("conferenceStatus", "==", "pending"))
            .limit(limit)
            .stream(**rpc_budget(deadline))
        )
    outcomes: list[Outcome] = []
    for snap, step in [
        *((s, _reconcile_paid) for s in paid),
        *((s, _reconcile_meet) for s in pending),
    ]:
        if deadline.remaining() < 2.0:
            break
        try:
            booking = Booking.from_document(snap.id, snap.to_dict() or {})
            outcome = step(snap, booking, deadline)
        except _Contended:
            continue  # a delivery wrote it meanwhile
        except InvalidBooking as exc:
            logs.error("booking cannot become an event", booking_id=snap.id, detail=exc.message)
            outcome = Outcome("invalid_booking", "", snap.id)
        except TransientUpstreamError:
            outcomes.append(Outcome("retry_later", "", snap.id))
            break
        outcomes.append(outcome)
    return outcomes


def _reconcile_paid(
    snap: firestore.DocumentSnapshot[Any], booking: Booking, deadline: Deadline
) -> Outcome:
    if booking.payment_status != APPROVED or booking.needs_attention:
        _commit(
            snap,
            {"calendarStatus": ON_HOLD, "updatedAt": firestore.SERVER_TIMESTAMP},
            None,
            deadline,
        )
        return Outcome("on_hold", booking.payment_id, booking.id)
    try:
        link = ensure_class_event(booking, booking.payment_id, deadline)
    except (InvalidBooking, PermanentUpstreamError) as exc:
        logs.error(
            "Google Calendar rejected the class event", booking_id=booking.id, detail=exc.message
        )
        _commit(snap, {"calendarStatus": REJECTED, "calendarError": exc.message}, None, deadline)
        return Outcome("calendar_rejected", booking.payment_id, booking.id)
    _commit(snap, _event_fields(booking, link), None, deadline)
    return Outcome("scheduled", booking.payment_id, booking.id, link)


def _reconcile_meet(
    snap: firestore.DocumentSnapshot[Any], booking: Booking, deadline: Deadline
) -> Outcome:
    """One look at a conference that was still pending: no insert, no waiting."""
    try:
        link = EventLink.from_event(calendar_api().get_event(booking.google_event_id, deadline))
    except PermanentUpstreamError as exc:
        logs.error("the booking's event cannot be read", booking_id=booking.id, detail=exc.message)
        return Outcome("calendar_rejected", booking.payment_id, booking.id)
    if link.conference_status == "pending":
        return Outcome("meet_link_pending", booking.payment_id, booking.id, link)
    _commit(
        snap, {**_conference_fields(link), "updatedAt": firestore.SERVER_TIMESTAMP}, None, deadline
    )
    return Outcome("meet_link_recorded", booking.payment_id, booking.id, link)
