"""Group classes for admins: create a session (its one event and Meet link), list them,
cancel or move one with every seat following.

    parse -> store (session, its bookings) -> bookings (decisions) -> calendar -> store

A student's seat is taken by the payment path (`scheduling`): the seat count is decided
in Firestore under the session's guard, and the student joins the event with `If-Match`.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from shared import clock, logs, store
from shared.bookings import (
    ENDED,
    SERVER_TIME,
    Booking,
    BookingStatus,
    Session,
    decide_cancel,
    refund_key,
    refuse_overlap,
    refuse_started,
)
from shared.calendar import calendar_api, cancel_event, ensure_session_event
from shared.clock import TIME_ZONE
from shared.errors import Conflict, InvalidRequest, NotFound
from shared.lifecycle import parse_time
from shared.payments import refund_payment
from shared.upstream import Deadline
from shared.web import json_object

__all__ = [
    "MAX_BODY_BYTES",
    "SessionAction",
    "SessionRequest",
    "apply_session_action",
    "create_session",
    "list_sessions",
    "parse_session_body",
]

MAX_BODY_BYTES = 16 * 1024
MAX_CAPACITY = 500
_CREATE_FIELDS = {"sessionId", "title", "teacher", "start", "end", "capacity", "price"}
_ACTION_FIELDS = {"sessionId", "action", "refund", "reason", "start", "end"}


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


def parse_session_body(body: bytes, content_type: str) -> SessionRequest | SessionAction:
    raw = json_object(body, content_type)
    return _action(raw) if "action" in raw else _new_session(raw)


def _field_error(name: str, what: str) -> InvalidRequest:
    return InvalidRequest(f"{name} must be {what}", parameter=name)


def _session_id(raw: Any, required: bool) -> str:
    if raw is None and not required:
        return ""
    if not isinstance(raw, str) or not store.is_booking_id(raw) or len(raw) > 128:
        raise _field_error("sessionId", "a short id without slashes")
    return raw


def _times(raw: dict[str, Any]) -> tuple[datetime, datetime]:
    start, end = parse_time(raw.get("start"), "start"), parse_time(raw.get("end"), "end")
    if not start < end <= start + timedelta(hours=12):
        raise _field_error("end", "after start, at most 12 hours later")
    return start, end


def _new_session(raw: dict[str, Any]) -> SessionRequest:
    unknown = sorted(set(raw) - _CREATE_FIELDS)
    if unknown:
        raise InvalidRequest(f"unknown field: {unknown[0]}", parameter=unknown[0])
    title = raw.get("title")
    if not isinstance(title, str) or not 0 < len(title.strip()) <= 200:
        raise _field_error("title", "text of 1 to 200 characters")
    teacher = raw.get("teacher")
    if not isinstance(teacher, dict) or not isinstance(teacher.get("email"), str):
        raise _field_error("teacher", "an object with name and email")
    email, name = teacher["email"].strip(), teacher.get("name", "")
    if "@" not in email or len(email) > 254 or not isinstance(name, str) or len(name) > 200:
        raise _field_error("teacher", "an object with a name and a valid email")
    capacity = raw.get("capacity")
    if not isinstance(capacity, int) or isinstance(capacity, bool):
        raise _field_error("capacity", f"an integer from 1 to {MAX_CAPACITY}")
    if not 1 <= capacity <= MAX_CAPACITY:
        raise _field_error("capacity", f"an integer from 1 to {MAX_CAPACITY}")
    price = raw.get("price")
    amount = price.get("amount") if isinstance(price, dict) else None
    currency = price.get("currency") if isinstance(price, dict) else None
    try:
        valid_amount = (
            not isinstance(amount, bool)
            and isinstance(amount, int | float | str)
            and Decimal(str(amount)).is_finite()
            and Decimal(str(amount)) > 0
        )
    except InvalidOperation:
        valid_amount = False
    if not valid_amount or not isinstance(currency, str) or len(currency) != 3:
        raise _field_error("price", "an object with a positive amount and a currency code")
    start, end = _times(raw)
    chosen = _session_id(raw.get("sessionId"), required=False)
    return SessionRequest(
        session_id=chosen or f"ses-{uuid.uuid4().hex[:16]}",
        title=title.strip(),
        teacher={"name": name.strip(), "email": email.lower()},
        start=start,
        end=end,
        capacity=capacity,
        price={"amount": amount, "currency": currency.upper()},
        chosen_id=bool(chosen),
    )


def _action(raw: dict[str, Any]) -> SessionAction:
    unknown = sorted(set(raw) - _ACTION_FIELDS)
    if unknown:
        raise InvalidRequest(f"unknown field: {unknown[0]}", parameter=unknown[0])
    session_id = _session_id(raw.get("sessionId"), required=True)
    kind = raw.get("action")
    if kind == "cancel":
        refund, reason = raw.get("refund", False), raw.get("reason", "")
        if not isinstance(refund, bool):
            raise _field_error("refund", "true or false")
        if not isinstance(reason, str) or len(reason) > 500:
            raise _field_error("reason", "text of at most 500 characters")
        return SessionAction(session_id, kind, refund=refund, reason=reason.strip())
    if kind == "reschedule":
        start, end = _times(raw)
        return SessionAction(session_id, kind, start=start, end=end)
    raise _field_error("action", "cancel or reschedule")


# -- acting ------------------------------------------------------------------------------------


def create_session(request: SessionRequest, deadline: Deadline) -> tuple[bool, dict[str, Any]]:
    """(created now?, the session): a retry with the same `sessionId` gets the same one; a new
    one at a time the teacher already teaches is refused (409 naming the other class)."""
    teacher = str(request.teacher.get("email") or "")
    if not teacher or _exists(request.session_id, deadline):
        created = store.create_session(request.session_id, request.document(), deadline)
    else:
        with store.teacher_lease(teacher, deadline):
            if not _exists(request.session_id, deadline):  # a retry racing its first try
                refuse_started(request.start, clock.now())
                _refuse_teacher_overlap(teacher, request.start, request.end, "", deadline)
            created = store.create_session(request.session_id, request.document(), deadline)
    read = store.read_session(request.session_id, deadline)
    if read.data is None:
        raise NotFound("the session vanished while it was created")
    if not created and request.chosen_id and not _same(read.data, request):
        raise Conflict("another session already has this sessionId", sessionId=request.session_id)
    session = Session.from_document(read.session_id, read.data)
    if not session.google_event_id:
        event = ensure_session_event(session, deadline)
        fields = {
            "googleEventId": event.event_id,
            "meetLink": event.meet_link or None,
            "htmlLink": event.html_link or None,
            "conferenceStatus": event.conference_status,
            "updatedAt": SERVER_TIME,
        }
        store.update(store.sessions().document(session.id), fields, deadline, "link session event")
        read = store.read_session(session.id, deadline)
        session = Session.from_document(read.session_id, read.data or {})
        logs.info("group session created", session_id=session.id, event_id=event.event_id)
    return created, _summary(session)


def _same(data: dict[str, Any], request: SessionRequest) -> bool:
    wanted = request.document()
    return all(data.get(k) == wanted[k] for k in ("title", "teacher", "start", "end", "capacity"))


def list_sessions(deadline: Deadline) -> list[dict[str, Any]]:
    """Upcoming sessions (ending after a day ago), each with its seats."""
    since = (clock.now().astimezone(clock.ZONE) - timedelta(days=1)).isoformat()
    return [
        _summary(Session.from_document(read.session_id, read.data or {}))
        for read in store.upcoming_sessions(since, 100, deadline)
    ]


def _summary(session: Session) -> dict[str, Any]:
    return {
        "sessionId": session.id,
        "title": session.title,
        "teacher": {"name": session.teacher.name, "email": session.teacher.email},
        "start": session.start_raw,
        "end": session.end_raw,
        "status": session.status,
        "googleEventId": session.google_event_id or None,
        "meetLink": session.meet_link or None,
        "capacity": session.capacity,
        "seatsTaken": session.seats_taken,
        "seats": [
            {"bookingId": booking_id, "status": seat.get("status")}
            for booking_id, seat in sorted(session.seats.items())
        ],
    }


def apply_session_action(action: SessionAction, admin: str, deadline: Deadline) -> dict[str, Any]:
    """Cancel or move the session: its one event once, then every booking follows."""
    read = store.read_session(action.session_id, deadline)
    if read.data is None:
        raise NotFound("no such session", sessionId=action.session_id)
    session = Session.from_document(read.session_id, read.data)
    if action.kind == "cancel":
        return _cancel(read, session, action, admin, deadline)
    if not session.teacher.email:
        return _move(read, session, action, deadline)
    # The overlap check and the move it allows, one change of this teacher's at a time.
    with store.teacher_lease(session.teacher.email, deadline):
        fresh = store.read_session(session.id, deadline)
        assert fresh.data is not None  # sessions are never deleted
        return _move(fresh, Session.from_document(fresh.session_id, fresh.data), action, deadline)


def _move(
    read: store.SessionRead, session: Session, action: SessionAction, deadline: Deadline
) -> dict[str, Any]:
    """The one event moved once, then every seat's booking follows."""
    assert action.start is not None and action.end is not None
    if session.status != "scheduled":
        raise Conflict(f"the session is {session.status}; it cannot be moved")
    start, end = action.start.isoformat(), action.end.isoformat()
    if (session.start_raw, session.end_raw) != (start, end):
        refuse_started(action.start, clock.now())
        if session.teacher.email:
            _refuse_teacher_overlap(
                session.teacher.email, action.start, action.end, session.id, deadline
            )
        changes = {
            "start": {"dateTime": start, "timeZone": session.time_zone},
            "end": {"dateTime": end, "timeZone": session.time_zone},
        }
        calendar_api().patch_event(session.google_event_id, changes, deadline)
        fields = {"start": start, "end": end, "updatedAt": SERVER_TIME}
        store.commit_session(read, fields, deadline)
    for booking in store.session_bookings(session.id, deadline):
        data = booking.data or {}
        if data.get("status") == BookingStatus.SCHEDULED and (
            (data.get("start"), data.get("end")) != (start, end)
        ):
            moved = {"start": start, "end": end, "rescheduledAt": SERVER_TIME}
            store.update(store.booking_ref(booking.booking_id), moved, deadline, "move seat")
    fresh = store.read_session(session.id, deadline)
    return _summary(Session.from_document(fresh.session_id, fresh.data or {}))


def _exists(session_id: str, deadline: Deadline) -> bool:
    return store.read_session(session_id, deadline).data is not None


def _refuse_teacher_overlap(
    teacher: str, start: datetime, end: datetime, session_id: str, deadline: Deadline
) -> None:
    """409 naming the teacher's class or other session at that time (`session_id`: the one
    being moved, not counted); called under the teacher's lease."""
    classes, sessions = store.teacher_timetable(teacher, deadline)
    refuse_overlap(start, end, classes, [s for s in sessions if s.id != session_id])


def _cancel(
    read: store.SessionRead,
    session: Session,
    action: SessionAction,
    admin: str,
    deadline: Deadline,
) -> dict[str, Any]:
    if session.google_event_id:
        cancel_event(session.google_event_id, deadline)  # every guest told once
    if session.status != "cancelled":
        fields = {"status": "cancelled", "cancelledBy": admin, "updatedAt": SERVER_TIME}
        store.commit_session(read, fields, deadline)
    for seat in store.session_bookings(session.id, deadline):
        if seat.data is None:
            continue
        booking = Booking.from_document(seat.booking_id, seat.data)
        if booking.status in ENDED:
            continue
        decision = decide_cancel(booking, action.reason, action.refund, admin)
        if decision.fields:
            store.commit_booking(
                seat, {**decision.fields, "calendarStatus": "cancelled"}, "", deadline
            )
        if decision.refund:
            refund = refund_payment(booking.payment_id, refund_key(booking.id), deadline)
            made = {"refundId": refund.id, "refundStatus": refund.status}
            store.update(store.booking_ref(booking.id), made, deadline, "record refund")
    fresh = store.read_session(session.id, deadline)
    return _summary(Session.from_document(fresh.session_id, fresh.data or {}))
