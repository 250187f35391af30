"""Admins change a class: cancel it (refunding it if asked) or move it to other times.

One request reads, decides, acts and writes, each module entered once:

    store.read_booking (+ the teacher's classes) -> bookings.decide_cancel / decide_reschedule
    -> calendar.cancel_event / move_event -> payments.refund_payment -> store.commit_booking

Both actions are idempotent: the Calendar step skips what is already done (a cancelled
event is not cancelled again, equal times are not moved), the refund carries a key
derived from the booking, and the answer is the booking's resulting state, so the same
request twice gives the same answer with one Calendar change and one email.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from shared import clock, logs, store
from shared.bookings import (
    REMOVE,
    SERVER_TIME,
    Booking,
    Decision,
    decide_cancel,
    decide_reschedule,
    refund_key,
)
from shared.calendar import cancel_event, move_event
from shared.errors import InvalidRequest, NotFound
from shared.payments import refund_payment
from shared.scheduling import with_session
from shared.upstream import Deadline
from shared.web import json_object

__all__ = ["MAX_BODY_BYTES", "Action", "apply_action", "parse_action", "parse_time"]

MAX_BODY_BYTES = 16 * 1024
MAX_REASON_CHARS = 500
ACTIONS = ("cancel", "reschedule")
_FIELDS = {
    "cancel": {"bookingId", "action", "reason", "refund"},
    "reschedule": {"bookingId", "action", "start", "end"},
}


@dataclass(frozen=True)
class Action:
    """One admin request, validated."""

    booking_id: str
    kind: str
    reason: str = ""
    refund: bool = False
    start: datetime | None = None
    end: datetime | None = None


def parse_action(body: bytes, content_type: str) -> Action:
    """The request's JSON, checked field by field; any problem is a 400 naming the field."""
    raw = json_object(body, content_type)
    kind = raw.get("action")
    if kind not in ACTIONS:
        raise InvalidRequest("action must be cancel or reschedule", parameter="action")
    unknown = sorted(set(raw) - _FIELDS[kind])
    if unknown:
        raise InvalidRequest(f"unknown field for {kind}: {unknown[0]}", parameter=unknown[0])
    booking_id = raw.get("bookingId")
    if not isinstance(booking_id, str) or not store.is_booking_id(booking_id):
        raise InvalidRequest("bookingId must name a booking", parameter="bookingId")
    if kind == "cancel":
        reason = raw.get("reason", "")
        refund = raw.get("refund", False)
        if not isinstance(reason, str) or len(reason) > MAX_REASON_CHARS:
            raise InvalidRequest(
                f"reason must be text of at most {MAX_REASON_CHARS} characters", parameter="reason"
            )
        if not isinstance(refund, bool):
            raise InvalidRequest("refund must be true or false", parameter="refund")
        return Action(booking_id, kind, reason=reason.strip(), refund=refund)
    start, end = parse_time(raw.get("start"), "start"), parse_time(raw.get("end"), "end")
    if end <= start:
        raise InvalidRequest("end must be after start", parameter="end")
    return Action(booking_id, kind, start=start, end=end)


def parse_time(raw: Any, name: str) -> datetime:
    """ISO 8601 date and time; without an offset it is Buenos Aires wall-clock time."""
    readable = isinstance(raw, str) and raw.isascii() and "T" in raw.upper() and len(raw) <= 40
    value = clock.parse_local(raw) if readable else None
    if value is None or not 2000 <= value.year <= 2200:
        raise InvalidRequest(
            f"{name} must be an ISO 8601 date and time, e.g. 2026-12-01T18:00:00-03:00",
            parameter=name,
        )
    return value


def apply_action(action: Action, admin: str, deadline: Deadline) -> dict[str, Any]:
    """Carry out the action; the answer is the booking's state afterwards."""

    def attempt() -> dict[str, Any]:
        read = store.read_booking(action.booking_id, deadline)
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
            store.commit_booking(
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
            store.update(store.booking_ref(booking.id), made, deadline, "record refund")
            state.update(made)
        logs.info("booking managed", booking_id=booking.id, outcome=decision.outcome)
        return _answer(action, state)

    teacher = _teacher(action, deadline) if action.kind == "reschedule" else ""
    if not teacher:
        return store.until_committed(attempt, deadline, f"{action.kind} booking")
    # The overlap check and the move it allows, one change of this teacher's at a time.
    with store.teacher_lease(teacher, deadline):
        return store.until_committed(attempt, deadline, f"{action.kind} booking")


def _teacher(action: Action, deadline: Deadline) -> str:
    read = store.read_booking(action.booking_id, deadline)
    return Booking.from_document(read.booking_id, read.data).teacher.email if read.data else ""


def _decide(
    action: Action, booking: Booking, admin: str, now: datetime, deadline: Deadline
) -> Decision:
    if action.kind == "cancel":
        return decide_cancel(booking, action.reason, action.refund, admin)
    assert action.start is not None and action.end is not None
    teacher = booking.teacher.email
    classes, sessions = store.teacher_timetable(teacher, deadline) if teacher else ([], [])
    return decide_reschedule(booking, action.start, action.end, classes, sessions, now=now)


def _plain(fields: dict[str, Any] | None) -> dict[str, Any]:
    return {k: v for k, v in (fields or {}).items() if v is not SERVER_TIME and v is not REMOVE}


def _answer(action: Action, state: dict[str, Any]) -> dict[str, Any]:
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
