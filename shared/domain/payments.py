"""What a Mercado Pago payment means for its booking, and what reconcile may do with a
paid booking still without its class.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from shared.clock import parse_instant
from shared.domain.bookings import (
    APPROVED,
    ENDED,
    REVERSALS,
    Booking,
    BookingStatus,
    CalendarStatus,
    Decision,
    InvalidBooking,
    Issue,
    Payment,
    can_move,
    event_id_for_booking,
)
from shared.domain.lateness import AT_THE_START, LatePolicy, unless_begun
from shared.domain.seats import Session
from shared.domain.writes import REMOVE, SERVER_TIME

__all__ = [
    "decide_payment",
    "decide_reconcile",
]


def decide_payment(
    booking_id: str,
    data: dict[str, Any] | None,
    claimed_by: str | None,
    payment: Payment,
    created_event_id: str = "",
    *,
    now: datetime,
    late: LatePolicy = AT_THE_START,
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
    return unless_begun(decision, booking, _later(now, payment), late)


def _later(now: datetime, payment: Payment) -> datetime:
    """The decision's present: `now`, or the approval if Mercado Pago's clock is ahead."""
    approved = parse_instant(payment.date_approved)
    return max(now, approved) if approved is not None else now


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


def decide_reconcile(
    booking: Booking,
    created_event_id: str = "",
    *,
    now: datetime,
    late: LatePolicy = AT_THE_START,
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
        return unless_begun(held, session.as_booking(), now, late) if session else held
    scheduled = Decision("scheduled", booking, {}, create_event=True)
    decision = unless_begun(scheduled, booking, now, late)
    if created_event_id and decision.outcome == "paid_late":
        return decision.cancelling(created_event_id)
    return decision
