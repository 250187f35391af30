"""Group classes for admins: create a session (its one event and Meet link), list them,
cancel or move one with every seat following.

    firestore (session, its bookings) -> domain (decisions) -> google_calendar -> firestore

A student's seat is taken by the payment path (`scheduling`): the seat count is decided
in Firestore under the session's guard, and the student joins the event with `If-Match`.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from shared import clock, logs
from shared.adapters import firestore
from shared.adapters.google_calendar import calendar_api, cancel_event, ensure_session_event
from shared.adapters.mercadopago import refund_payment
from shared.clock import Deadline
from shared.domain.admin_changes import decide_cancel, refuse_overlap, refuse_started
from shared.domain.bookings import ENDED, Booking, BookingStatus, refund_key
from shared.domain.commands import SessionAction, SessionRequest
from shared.domain.seats import Session
from shared.domain.writes import SERVER_TIME
from shared.errors import Conflict, NotFound

__all__ = [
    "apply_session_action",
    "create_session",
    "list_sessions",
]


# -- acting ------------------------------------------------------------------------------------


def create_session(request: SessionRequest, deadline: Deadline) -> tuple[bool, dict[str, Any]]:
    """(created now?, the session): a retry with the same `sessionId` gets the same one; a new
    one at a time the teacher already teaches is refused (409 naming the other class)."""
    teacher = str(request.teacher.get("email") or "")
    if not teacher or _exists(request.session_id, deadline):
        created = firestore.create_session(request.session_id, request.document(), deadline)
    else:
        with firestore.teacher_lease(teacher, deadline):
            if not _exists(request.session_id, deadline):  # a retry racing its first try
                refuse_started(request.start, clock.now())
                _refuse_teacher_overlap(teacher, request.start, request.end, "", deadline)
            created = firestore.create_session(request.session_id, request.document(), deadline)
    read = firestore.read_session(request.session_id, deadline)
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
        firestore.update(firestore.session_ref(session.id), fields, deadline, "link session event")
        read = firestore.read_session(session.id, deadline)
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
        for read in firestore.upcoming_sessions(since, 100, deadline)
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
    read = firestore.read_session(action.session_id, deadline)
    if read.data is None:
        raise NotFound("no such session", sessionId=action.session_id)
    session = Session.from_document(read.session_id, read.data)
    if action.kind == "cancel":
        return _cancel(read, session, action, admin, deadline)
    if not session.teacher.email:
        return _move(read, session, action, deadline)
    # The overlap check and the move it allows, one change of this teacher's at a time.
    with firestore.teacher_lease(session.teacher.email, deadline):
        fresh = firestore.read_session(session.id, deadline)
        assert fresh.data is not None  # sessions are never deleted
        return _move(fresh, Session.from_document(fresh.session_id, fresh.data), action, deadline)


def _move(
    read: firestore.SessionRead, session: Session, action: SessionAction, deadline: Deadline
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
        firestore.commit_session(read, fields, deadline)
    for booking in firestore.session_bookings(session.id, deadline):
        data = booking.data or {}
        if data.get("status") == BookingStatus.SCHEDULED and (
            (data.get("start"), data.get("end")) != (start, end)
        ):
            moved = {"start": start, "end": end, "rescheduledAt": SERVER_TIME}
            firestore.update(
                firestore.booking_ref(booking.booking_id), moved, deadline, "move seat"
            )
    fresh = firestore.read_session(session.id, deadline)
    return _summary(Session.from_document(fresh.session_id, fresh.data or {}))


def _exists(session_id: str, deadline: Deadline) -> bool:
    return firestore.read_session(session_id, deadline).data is not None


def _refuse_teacher_overlap(
    teacher: str, start: datetime, end: datetime, session_id: str, deadline: Deadline
) -> None:
    """409 naming the teacher's class or other session at that time (`session_id`: the one
    being moved, not counted); called under the teacher's lease."""
    classes, sessions = firestore.teacher_timetable(teacher, deadline)
    refuse_overlap(start, end, classes, [s for s in sessions if s.id != session_id])


def _cancel(
    read: firestore.SessionRead,
    session: Session,
    action: SessionAction,
    admin: str,
    deadline: Deadline,
) -> dict[str, Any]:
    if session.google_event_id:
        cancel_event(session.google_event_id, deadline)  # every guest told once
    if session.status != "cancelled":
        fields = {"status": "cancelled", "cancelledBy": admin, "updatedAt": SERVER_TIME}
        firestore.commit_session(read, fields, deadline)
    for seat in firestore.session_bookings(session.id, deadline):
        if seat.data is None:
            continue
        booking = Booking.from_document(seat.booking_id, seat.data)
        if booking.status in ENDED:
            continue
        decision = decide_cancel(booking, action.reason, action.refund, admin)
        if decision.fields:
            firestore.commit_booking(
                seat, {**decision.fields, "calendarStatus": "cancelled"}, "", deadline
            )
        if decision.refund:
            refund = refund_payment(booking.payment_id, refund_key(booking.id), deadline)
            made = {"refundId": refund.id, "refundStatus": refund.status}
            firestore.update(firestore.booking_ref(booking.id), made, deadline, "record refund")
    fresh = firestore.read_session(session.id, deadline)
    return _summary(Session.from_document(fresh.session_id, fresh.data or {}))
