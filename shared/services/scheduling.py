"""From an approved payment to a scheduled class, exactly once.

Each path reads, decides, writes, entering each module once:

    mercadopago.read_payment -> firestore.read_booking_for_payment -> payments.decide_payment
    -> google_calendar.ensure_class_event (when the class needs its event)
    -> firestore.commit_booking

The commit is guarded by the booking's update time (and creates the payment's claim), so
a concurrent delivery that wrote first makes it fail; `firestore.until_committed` then
runs the path again from fresh Firestore reads (the payment read once per delivery) and finds the
booking scheduled (or refunded). The event id is derived from the booking, so a second
attempt adopts the event the first created.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from shared import clock, logs
from shared.adapters import cloud_tasks, firestore
from shared.adapters.google_calendar import (
    add_attendee,
    calendar_api,
    cancel_event,
    class_event,
    ensure_class_event,
    remove_attendee,
)
from shared.adapters.mercadopago import read_payment, refund_payment
from shared.clock import Deadline
from shared.config import get_settings
from shared.domain.bookings import (
    Booking,
    BookingStatus,
    CalendarStatus,
    ClassEvent,
    Decision,
    InvalidBooking,
    Person,
    conference_fields,
    refund_key,
)
from shared.domain.commands import PaymentNotification
from shared.domain.lateness import LatePolicy
from shared.domain.payments import decide_payment, decide_reconcile
from shared.domain.seats import Session, decide_leave, decide_seat, decide_seat_joined
from shared.domain.writes import SERVER_TIME
from shared.errors import (
    PermanentUpstreamError,
    PlatformError,
    TransientUpstreamError,
    UpstreamNotFound,
)

__all__ = [
    "Outcome",
    "Step",
    "apply_payment_notification",
    "finish_paid_booking",
    "join_session",
    "late_policy",
    "on_booking",
    "with_session",
    "write_decision",
]


def late_policy() -> LatePolicy:
    """When a paid class is too late to schedule, as the settings say."""
    settings = get_settings()
    margin = timedelta(minutes=settings.late_payment_margin_minutes)
    return LatePolicy(margin, settings.auto_refund_late_payments)


@dataclass(frozen=True)
class Outcome:
    """What happened to one booking, for the log line and the HTTP answer."""

    outcome: str
    payment_id: str
    booking_id: str = ""
    event: ClassEvent | None = None

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


# -- payment notifications ----------------------------------------------------------------


def apply_payment_notification(note: PaymentNotification, deadline: Deadline) -> Outcome:
    """Read the payment from Mercado Pago and bring its booking up to date.

    The payment is read once per delivery; a commit that lost a race reads the booking again
    (where a refund committed meanwhile shows) and decides again, not Mercado Pago: in a seat
    burst its read is the slowest step of each retry. A newer payment status comes with its
    own notification.
    """
    created = ""  # the booking's event, once an attempt of this delivery created or adopted it
    refund = ""  # a booking whose payment must go back (a full session, a class begun)
    late = late_policy()
    try:
        payment, preference_id = read_payment(note.payment_id, deadline)
    except UpstreamNotFound:
        # Not recorded: unsigned IPNs naming made-up ids would fill the admins' list.
        logs.warning("notification names a payment Mercado Pago does not know")
        return Outcome("payment_not_found", note.payment_id)

    def attempt() -> Outcome:
        nonlocal created, refund
        read = firestore.read_booking_for_payment(
            payment.id, payment.external_reference, preference_id, deadline
        )
        if read.data is not None:
            logs.bind(booking_id=read.booking_id)
        now = clock.now()
        decision = decide_payment(
            read.booking_id, read.data, read.claimed_by, payment, created, now=now, late=late
        )
        decision, session = with_session(decision, deadline, now)
        if decision.create_event and cloud_tasks.scheduling_enabled():
            # Paid now; the queue creates the event at Calendar's pace (schedule_class).
            reason = "queued for Google Calendar"
            decision = decision.without_event("queued", reason, CalendarStatus.PENDING_CREATION)
        if decision.create_event:
            decision = _create_event(read, decision, payment.id, deadline)
            created = decision.event.event_id if decision.event else created
        if decision.cancel_event:
            decision = decision.with_cancelled(cancel_event(decision.cancel_event, deadline))
        write_decision(read, decision, payment.id, deadline, session)
        refund = read.booking_id if decision.refund else ""
        return Outcome(decision.outcome, payment.id, read.booking_id, decision.event)

    outcome = firestore.until_committed(attempt, deadline, "apply payment")
    if refund:
        refund_payment(outcome.payment_id, refund_key(refund), deadline)
    queued = cloud_tasks.scheduling_enabled()
    if outcome.outcome == "queued" or (outcome.outcome == "seat_held" and queued):
        cloud_tasks.enqueue_class(outcome.booking_id, deadline)
    elif outcome.outcome == "seat_held":
        outcome = join_session(outcome, deadline)
    if outcome.event is not None and outcome.event.meet_pending:
        event = _finish_meet_link(outcome.booking_id, outcome.event, deadline)
        outcome = Outcome(outcome.outcome, outcome.payment_id, outcome.booking_id, event)
    return outcome


def with_session(
    decision: Decision, deadline: Deadline, now: datetime
) -> tuple[Decision, firestore.SessionRead | None]:
    """For a seat of a group session: decide with the session's read at `now` (hold or free
    a seat), and take a leaving student out of the session's event."""
    session_id = decision.join_session or decision.leave_session
    if not session_id:
        return decision, None
    read = firestore.read_session(session_id, deadline)
    session = Session.from_document(session_id, read.data) if read.data is not None else None
    if decision.outcome == "seat":
        auto_refund = get_settings().auto_refund_over_capacity
        decision = decide_seat(decision, session, auto_refund, now=now, late=late_policy())
    if decision.leave_session:
        decision = decide_leave(decision, session)
    if decision.leave_session and session is not None and decision.booking is not None:
        remove_attendee(session.google_event_id, decision.booking.student.email, deadline)
    return decision, read


def join_session(held: Outcome, deadline: Deadline) -> Outcome:
    """A held seat becomes a guest of the session's event, then a scheduled booking; a
    booking refunded meanwhile is taken out again."""
    first = firestore.read_booking(held.booking_id, deadline)
    booking = Booking.from_document(held.booking_id, first.data or {})
    session_read = firestore.read_session(booking.session_id, deadline)
    if session_read.data is None:
        return held
    session = Session.from_document(booking.session_id, session_read.data)
    seated = [
        Person(str(seat.get("name") or ""), str(seat.get("email") or ""))
        for seat in session.seats.values()
        if seat.get("email")
    ]
    event = add_attendee(session.google_event_id, booking.student, deadline, seated)
    if event is None:
        return held  # the event is gone: the booking stays paid for reconcile and admins

    def attempt() -> Outcome:
        read = firestore.read_booking(held.booking_id, deadline)
        now = firestore.read_session(booking.session_id, deadline)
        if read.data is None or now.data is None:
            return held
        fresh = Booking.from_document(read.booking_id, read.data)
        decision = decide_seat_joined(fresh, Session.from_document(now.session_id, now.data), event)
        if decision.leave_session:
            remove_attendee(event.event_id, fresh.student.email, deadline)
            return Outcome(decision.outcome, held.payment_id, held.booking_id)
        firestore.commit_booking(
            read, decision.fields or {}, "", deadline, now, decision.session_fields, decision.notice
        )
        return Outcome(decision.outcome, held.payment_id, held.booking_id, event)

    return firestore.until_committed(attempt, deadline, "join session")


def _create_event(
    read: firestore.BookingRead, decision: Decision, payment_id: str, deadline: Deadline
) -> Decision:
    """The Calendar step of a decision; a transient failure still records the payment."""
    assert decision.booking is not None
    try:
        return decision.with_event(ensure_class_event(decision.booking, payment_id, deadline))
    except InvalidBooking as exc:
        return decision.without_event("invalid_booking", exc.message, CalendarStatus.REJECTED)
    except TransientUpstreamError as exc:
        waiting = decision.without_event(
            "pending_creation", exc.message, CalendarStatus.PENDING_CREATION
        )
        # Keep the payment on the booking (the reconcile step finishes it), then answer 503.
        try:
            write_decision(read, waiting, payment_id, Deadline(max(2.0, deadline.remaining())))
        except (firestore.Contended, PlatformError):
            logs.error("could not mark booking as paid without event")
        raise
    except PermanentUpstreamError as exc:
        return decision.without_event("calendar_rejected", exc.message, CalendarStatus.REJECTED)


def write_decision(
    read: firestore.BookingRead,
    decision: Decision,
    payment_id: str,
    deadline: Deadline,
    session: firestore.SessionRead | None = None,
) -> None:
    if decision.issue is not None:
        logs.error("payment needs an admin", issue=decision.issue.kind)
        firestore.record_issue(decision.issue, payment_id, deadline)
    if decision.fields or decision.session_fields:
        firestore.commit_booking(
            read,
            decision.fields or {},
            payment_id if decision.claim else "",
            deadline,
            session,
            decision.session_fields,
            decision.notice,
        )


def _finish_meet_link(booking_id: str, event: ClassEvent, deadline: Deadline) -> ClassEvent:
    """The booking is already committed; record the Meet link if it arrives in time.

    Meet creates the conference asynchronously. Otherwise the booking keeps
    `conferenceStatus: pending` and the reconcile step fetches the link later.
    """
    delay = 0.2
    try:
        while event.meet_pending and deadline.remaining() > delay + 1.0:
            time.sleep(delay)
            delay = min(1.0, delay * 2)
            event = class_event(calendar_api().get_event(event.event_id, deadline))
        if not event.meet_pending:
            fields = {**conference_fields(event), "updatedAt": SERVER_TIME}
            firestore.update(
                firestore.booking_ref(booking_id), fields, deadline, "record Meet link"
            )
    except PlatformError as exc:
        logs.warning("Meet link left for the reconcile step", detail=exc.message)
    return event


type Step = Callable[[firestore.BookingRead, Booking, Deadline], Outcome]
"""One attempt's work on a booking, given its fresh read."""


def on_booking(
    first: firestore.BookingRead, step: Step, deadline: Deadline
) -> Callable[[], Outcome]:
    """An attempt that uses the sweep's read once, then reads the booking afresh."""
    reads = [first]

    def attempt() -> Outcome:
        read = reads.pop() if reads else firestore.read_booking(first.booking_id, deadline)
        if read.data is None:
            return Outcome("nothing_to_do", "", first.booking_id)
        try:
            booking = Booking.from_document(read.booking_id, read.data)
        except InvalidBooking as exc:
            logs.error(
                "booking cannot become an event", booking_id=read.booking_id, detail=exc.message
            )
            return Outcome("invalid_booking", "", read.booking_id)
        return step(read, booking, deadline)

    return attempt


def finish_paid_booking(
    booking_id: str, deadline: Deadline, first: firestore.BookingRead | None = None
) -> Outcome:
    """A paid booking still without its class (a Calendar outage, the queue): create its
    event, or add its seat's student to the session's event. Used by `schedule_class` and
    by reconcile; a retry after a lost race cancels what this call created, if the booking
    no longer wants its class."""
    read = first or firestore.read_booking(booking_id, deadline)
    return firestore.until_committed(
        on_booking(read, _creating_event(), deadline), deadline, "finish paid booking"
    )


def _creating_event() -> Step:
    """The step for a paid booking without event; it remembers the event it created, so a
    retry after a lost race cancels it if the booking no longer wants its class."""
    created = ""

    def step(read: firestore.BookingRead, booking: Booking, deadline: Deadline) -> Outcome:
        nonlocal created
        session = _session_of(booking, deadline)
        decision = decide_reconcile(
            booking, created, now=clock.now(), late=late_policy(), session=session
        )
        if decision.join_session:  # a paid seat missing from its session's event
            held = Outcome("seat_held", booking.payment_id, booking.id)
            return join_session(held, deadline)
        if decision.create_event:
            try:
                decision = decision.with_event(
                    ensure_class_event(booking, booking.payment_id, deadline)
                )
                created = decision.event.event_id if decision.event else created
            except (InvalidBooking, PermanentUpstreamError) as exc:
                logs.error(
                    "Google Calendar rejected the class event",
                    booking_id=booking.id,
                    detail=exc.message,
                )
                decision = decision.without_event(
                    "calendar_rejected", exc.message, CalendarStatus.REJECTED
                )
        if decision.cancel_event:
            decision = decision.with_cancelled(cancel_event(decision.cancel_event, deadline))
        write_decision(read, decision, booking.payment_id, deadline)
        if decision.refund:
            refund_payment(booking.payment_id, refund_key(booking.id), deadline)
        return Outcome(decision.outcome, booking.payment_id, booking.id, decision.event)

    return step


def _session_of(booking: Booking, deadline: Deadline) -> Session | None:
    """The session of a paid seat still waiting for its event (its times decide lateness)."""
    if not booking.session_id or booking.status != BookingStatus.PAID:
        return None
    read = firestore.read_session(booking.session_id, deadline)
    return Session.from_document(read.session_id, read.data) if read.data is not None else None
