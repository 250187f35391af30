"""Admins change a class: cancel it (refunding it if asked) or move it to other times.

One request reads, decides, acts and writes, each module entered once:

    firestore.read_booking (+ the teacher's timetable) -> admin_changes.decide_cancel /
    decide_reschedule -> google_calendar.cancel_event / move_event
    -> mercadopago.refund_payment -> firestore.commit_booking

Both actions are idempotent: the Calendar step skips what is already done (a cancelled
event is not cancelled again, equal times are not moved), the refund carries a key
derived from the booking, and the answer is the booking's resulting state, so the same
request twice gives the same answer with one Calendar change and one email.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from shared import clock, logs
from shared.adapters import firestore
from shared.adapters.google_calendar import cancel_event, move_event
from shared.adapters.mercadopago import refund_payment
from shared.clock import Deadline
from shared.domain.admin_changes import decide_cancel, decide_reschedule
from shared.domain.bookings import Booking, Decision, refund_key
from shared.domain.commands import BookingAction
from shared.domain.writes import REMOVE, SERVER_TIME
from shared.errors import NotFound
from shared.services.scheduling import with_session

__all__ = ["apply_action"]


def apply_action(action: BookingAction, admin: str, deadline: Deadline) -> dict[str, Any]:
    """Carry out the action; the answer is the booking's state afterwards."""

    def attempt() -> dict[str, Any]:
        read = firestore.read_booking(action.booking_id, deadline)
        if read.data is None:
            raise NotFound("no such booking", bookingId=action.booking_id)
        booking = Booking.from_document(read.booking_id, read.data)
        now = clock.now()
        decision = _decide(action, booking, admin, now, deadline)
        decision, session = with_session(decision, deadline, now)  # a seat leaves its session
        if decision.cancel_event:
            decision = decision.with_cancelled(cancel_event(decision.cancel_event, deadline))
        if decision.move_to is not None:
            decision = decision.with_moved(move_event(booking, *decision.move_to, deadline))
        if decision.fields or decision.session_fields:
            firestore.commit_booking(
                read,
                decision.fields or {},
                "",
                deadline,
                session,
                decision.session_fields,
                decision.notice,
            )
        state = {**read.data, **_plain(decision.fields)}
        if decision.refund:
            # After the commit: the refund's notification then finds the booking cancelled,
            # and a retry after a failed refund finds it asked for and not yet made.
            refund = refund_payment(booking.payment_id, refund_key(booking.id), deadline)
            made = {"refundId": refund.id, "refundStatus": refund.status}
            firestore.update(firestore.booking_ref(booking.id), made, deadline, "record refund")
            state.update(made)
        logs.info("booking managed", booking_id=booking.id, outcome=decision.outcome)
        return _answer(action, state)

    teacher = _teacher(action, deadline) if action.kind == "reschedule" else ""
    if not teacher:
        return firestore.until_committed(attempt, deadline, f"{action.kind} booking")
    # The overlap check and the move it allows, one change of this teacher's at a time.
    with firestore.teacher_lease(teacher, deadline):
        return firestore.until_committed(attempt, deadline, f"{action.kind} booking")


def _teacher(action: BookingAction, deadline: Deadline) -> str:
    read = firestore.read_booking(action.booking_id, deadline)
    return Booking.from_document(read.booking_id, read.data).teacher.email if read.data else ""


def _decide(
    action: BookingAction, booking: Booking, admin: str, now: datetime, deadline: Deadline
) -> Decision:
    if action.kind == "cancel":
        return decide_cancel(booking, action.reason, action.refund, admin)
    assert action.start is not None and action.end is not None
    teacher = booking.teacher.email
    classes, sessions = firestore.teacher_timetable(teacher, deadline) if teacher else ([], [])
    return decide_reschedule(booking, action.start, action.end, classes, sessions, now=now)


def _plain(fields: dict[str, Any] | None) -> dict[str, Any]:
    return {k: v for k, v in (fields or {}).items() if v is not SERVER_TIME and v is not REMOVE}


def _answer(action: BookingAction, state: dict[str, Any]) -> dict[str, Any]:
    return {
        "bookingId": action.booking_id,
        "action": action.kind,
        "status": state.get("status"),
        "start": state.get("start"),
        "end": state.get("end"),
        "googleEventId": state.get("googleEventId"),
        "calendarStatus": state.get("calendarStatus"),
        "meetLink": state.get("meetLink"),
        "refund": (
            {"id": state.get("refundId"), "status": state.get("refundStatus")}
            if state.get("refundId")
            else None
        ),
    }
