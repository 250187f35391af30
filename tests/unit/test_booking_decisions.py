"""What payments and event changes mean for a booking: pure decisions, no stack, milliseconds."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from shared.adapters.google_calendar import class_event
from shared.domain.admin_changes import decide_cancel, decide_reschedule
from shared.domain.bookings import (
    TRANSITIONS,
    BookingStatus,
    CalendarStatus,
    Payment,
    event_id_for_booking,
)
from shared.domain.bookings import Booking as BookingValue
from shared.domain.calendar_changes import decide_event_change, decide_session_event_change
from shared.domain.lateness import LatePolicy
from shared.domain.payments import decide_payment, decide_reconcile
from shared.domain.seats import Session, decide_leave, decide_seat, decide_seat_joined
from shared.domain.writes import REMOVE, SERVER_TIME
from shared.errors import Conflict, InvalidRequest

NOW = datetime(2026, 11, 29, 15, 0, tzinfo=UTC)
"""The decisions' present: two days before the class these tests book."""
README = Path(__file__).resolve().parents[2] / "README.md"
BOOKING = "b-1"


def booking(**overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "status": "awaiting_payment",
        "classTitle": "Guitarra",
        "teacher": {"name": "Ana", "email": "ana@example.com"},
        "student": {"name": "Luis", "email": "luis@example.com"},
        "start": "2026-12-01T18:00:00-03:00",
        "end": "2026-12-01T19:00:00-03:00",
        "price": {"amount": 15000, "currency": "ARS"},
    }
    data.update(overrides)
    return data


def payment(status: str = "approved", **overrides: Any) -> Payment:
    fields: dict[str, Any] = {
        "id": "111",
        "status": status,
        "status_detail": "accredited" if status == "approved" else status,
        "external_reference": BOOKING,
        "amount": Decimal("15000"),
        "currency": "ARS",
        "order_id": "",
        "date_approved": "2026-11-29T10:00:00.000-04:00",
    }
    fields.update(overrides)
    return Payment(**fields)


def event(**overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": event_id_for_booking(BOOKING),
        "status": "confirmed",
        "updated": "2026-11-29T12:00:00.000Z",
        "etag": '"3"',
        "start": {"dateTime": "2026-12-01T18:00:00-03:00"},
        "end": {"dateTime": "2026-12-01T19:00:00-03:00"},
        "hangoutLink": "https://meet.google.com/abc-defg-hij",
        "extendedProperties": {"private": {"bookingId": BOOKING}},
    }
    data.update(overrides)
    return data


# -- payments -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "claimed_by", "paid", "outcome", "issue", "writes", "creates_event"),
    [
        (None, None, payment(), "unknown_booking", "unknown_booking", False, False),
        (booking(), None, payment(), "scheduled", None, True, True),
        (booking(timeZone="Mars/Olympus"), None, payment(), "scheduled", None, True, True),
        (
            booking(status="bogus"),
            None,
            payment(),
            "invalid_booking",
            "invalid_booking",
            False,
            False,
        ),
        (
            booking(),
            "other",
            payment(),
            "payment_already_used",
            "payment_claimed_twice",
            False,
            False,
        ),
        (
            booking(),
            None,
            payment(amount=Decimal("1")),
            "amount_mismatch",
            "amount_mismatch",
            False,
            False,
        ),
        (
            booking(),
            None,
            payment(currency="USD"),
            "amount_mismatch",
            "amount_mismatch",
            False,
            False,
        ),
        (booking(price={}), None, payment(), "amount_mismatch", "amount_mismatch", False, False),
        (
            booking(status="scheduled", paymentId="999", googleEventId="e"),
            None,
            payment(),
            "booking_paid_by_other_payment",
            "booking_paid_twice",
            False,
            False,
        ),
        (booking(), None, payment("pending"), "payment_pending", None, True, False),
        (booking(), None, payment("rejected"), "payment_rejected", None, True, False),
        (
            booking(status="scheduled", paymentId="111", googleEventId="e"),
            BOOKING,
            payment(),
            "already_scheduled",
            None,
            False,
            False,
        ),
        (
            booking(status="scheduled", paymentId="111", googleEventId="e"),
            BOOKING,
            payment("in_process"),
            "payment_in_process_ignored",
            None,
            False,
            False,
        ),
        (
            booking(status="cancelled"),
            None,
            payment(),
            "booking_cancelled",
            "paid_cancelled_booking",
            True,
            False,
        ),
        (
            booking(status="refunded", paymentId="111", paymentStatus="refunded"),
            BOOKING,
            payment(),
            "booking_refunded",
            None,
            False,
            False,
        ),
        (
            booking(status="paid", paymentId="111", calendarStatus="pending_creation"),
            BOOKING,
            payment(),
            "scheduled",
            None,
            True,
            True,
        ),
    ],
)
def test_what_a_payment_means_for_its_booking(
    data: dict[str, Any] | None,
    claimed_by: str | None,
    paid: Payment,
    outcome: str,
    issue: str | None,
    writes: bool,
    creates_event: bool,
) -> None:
    decision = decide_payment(BOOKING, data, claimed_by, paid, now=NOW)
    assert decision.outcome == outcome
    assert (decision.issue.kind if decision.issue else None) == issue
    assert bool(decision.fields) == writes
    assert decision.create_event == creates_event


def test_an_approved_payment_claims_itself_only_once() -> None:
    first = decide_payment(BOOKING, booking(), None, payment(), now=NOW)
    retry = decide_payment(
        BOOKING, booking(status="paid", paymentId="111"), BOOKING, payment(), now=NOW
    )
    assert first.claim and not retry.claim


def test_a_refund_before_the_event_exists_ends_the_booking_without_a_class() -> None:
    data = booking(status="paid", paymentId="111", paymentStatus="approved")
    decision = decide_payment(BOOKING, data, BOOKING, payment("refunded"), now=NOW)
    assert decision.outcome == "payment_refunded"
    assert decision.fields is not None
    assert decision.fields["status"] == BookingStatus.REFUNDED
    assert not decision.create_event
    assert decision.cancel_event == event_id_for_booking(BOOKING)  # one may be on its way
    assert "calendarStatus" not in (decision.with_cancelled(None).fields or {})


@pytest.mark.parametrize(
    ("status", "ended", "attention"),
    [
        ("refunded", BookingStatus.REFUNDED, None),
        ("charged_back", BookingStatus.CHARGED_BACK, "payment_charged_back"),
    ],
)
def test_a_reversal_of_a_scheduled_class_cancels_its_event(
    status: str, ended: BookingStatus, attention: str | None
) -> None:
    data = booking(status="scheduled", paymentId="111", googleEventId="e1", meetLink="m")
    decision = decide_payment(BOOKING, data, BOOKING, payment(status), now=NOW)
    assert decision.cancel_event == "e1"
    decision = decision.with_cancelled(class_event(event(id="e1", status="cancelled")))
    assert decision.fields is not None
    assert decision.fields["status"] == ended
    assert decision.fields["calendarStatus"] == CalendarStatus.CANCELLED
    assert decision.fields.get("needsAttention") == attention
    assert decision.fields["meetLink"] == "https://meet.google.com/abc-defg-hij"


def test_a_repeated_refund_notification_cancels_nothing_twice() -> None:
    data = booking(
        status="refunded",
        paymentId="111",
        paymentStatus="refunded",
        googleEventId="e1",
        calendarStatus="cancelled",
    )
    decision = decide_payment(BOOKING, data, BOOKING, payment("refunded"), now=NOW)
    assert (decision.outcome, decision.fields, decision.cancel_event) == (
        "booking_refunded",
        None,
        "",
    )


def test_an_expired_voucher_leaves_the_booking_open() -> None:
    decision = decide_payment(BOOKING, booking(), None, payment("cancelled"), now=NOW)
    assert decision.fields is not None
    assert "status" not in decision.fields


def test_refund_during_event_creation_cancels_the_event_the_approval_created() -> None:
    refunded = booking(status="refunded", paymentId="111", paymentStatus="refunded")
    event_id = event_id_for_booking(BOOKING)
    decision = decide_payment(BOOKING, refunded, BOOKING, payment("refunded"), event_id, now=NOW)
    assert decision.cancel_event == event_id
    decision = decision.with_cancelled(class_event(event(status="cancelled")))
    assert decision.fields is not None
    assert decision.fields["calendarStatus"] == CalendarStatus.CANCELLED


def test_an_approval_that_lost_to_another_approval_keeps_the_shared_event() -> None:
    event_id = event_id_for_booking(BOOKING)
    scheduled = booking(status="scheduled", paymentId="111", googleEventId=event_id)
    decision = decide_payment(BOOKING, scheduled, BOOKING, payment(), event_id, now=NOW)
    assert decision.outcome == "already_scheduled"
    assert not decision.cancel_event


def test_a_partial_refund_keeps_the_class_and_tells_an_admin_once() -> None:
    data = booking(status="scheduled", paymentId="111", googleEventId="e1")
    partly = payment(amount_refunded=Decimal("5000"))
    first = decide_payment(BOOKING, data, BOOKING, partly, now=NOW)
    assert first.outcome == "already_scheduled" and not first.cancel_event
    assert first.issue is not None and first.issue.kind == "partial_refund"
    assert first.fields is not None
    again = decide_payment(BOOKING, {**data, **first.fields}, BOOKING, partly, now=NOW)
    assert again.issue is None


def test_a_created_event_schedules_the_booking_with_its_meet_link() -> None:
    decision = decide_payment(BOOKING, booking(), None, payment(), now=NOW)
    scheduled = decision.with_event(class_event(event()))
    assert scheduled.fields is not None
    assert scheduled.fields["status"] == BookingStatus.SCHEDULED
    assert scheduled.fields["meetLink"] == "https://meet.google.com/abc-defg-hij"
    assert scheduled.fields["calendarError"] is REMOVE
    assert scheduled.fields["updatedAt"] is SERVER_TIME
    assert scheduled.fields["paymentId"] == "111"
    assert not scheduled.create_event and scheduled.event is not None


def test_adopting_a_cancelled_event_cancels_the_paid_booking() -> None:
    data = booking(status="paid", paymentId="111", calendarStatus="pending_creation")
    decision = decide_payment(BOOKING, data, BOOKING, payment(), now=NOW)
    cancelled = decision.with_event(class_event(event(status="cancelled")))
    assert cancelled.fields is not None
    assert cancelled.fields["status"] == BookingStatus.CANCELLED
    assert cancelled.fields["needsAttention"] == "event_cancelled"


def test_a_failed_meet_conference_needs_an_admin() -> None:
    failed = event(
        hangoutLink=None, conferenceData={"createRequest": {"status": {"statusCode": "failure"}}}
    )
    scheduled = decide_payment(BOOKING, booking(), None, payment(), now=NOW).with_event(
        class_event(failed)
    )
    assert scheduled.fields is not None
    assert scheduled.fields["needsAttention"] == "meet_link_failed"


@pytest.mark.parametrize(
    ("status", "issue"),
    [(CalendarStatus.PENDING_CREATION, None), (CalendarStatus.REJECTED, "calendar_rejected")],
)
def test_a_paid_booking_without_event_says_why_it_waits(
    status: CalendarStatus, issue: str | None
) -> None:
    decision = decide_payment(BOOKING, booking(), None, payment(), now=NOW)
    waiting = decision.without_event("calendar_rejected", "Google said no", status)
    assert waiting.fields is not None
    assert waiting.fields["status"] == BookingStatus.PAID
    assert waiting.fields["calendarStatus"] == status
    assert waiting.claim
    assert (waiting.issue.kind if waiting.issue else None) == issue


@pytest.mark.parametrize(
    ("data", "outcome"),
    [
        (
            booking(status="paid", calendarStatus="pending_creation", paymentStatus="approved"),
            "scheduled",
        ),
        (
            booking(status="paid", calendarStatus="pending_creation", paymentStatus="refunded"),
            "on_hold",
        ),
        (
            booking(
                status="paid",
                calendarStatus="pending_creation",
                paymentStatus="approved",
                needsAttention="payment_refunded",
            ),
            "on_hold",
        ),
        (booking(status="scheduled", calendarStatus="confirmed"), "settled_meanwhile"),
        (booking(status="paid", calendarStatus="on_hold"), "settled_meanwhile"),
    ],
)
def test_what_reconcile_does_with_a_paid_booking(data: dict[str, Any], outcome: str) -> None:
    decision = decide_reconcile(BookingValue.from_document(BOOKING, data), now=NOW)
    assert decision.outcome == outcome
    assert decision.create_event == (outcome == "scheduled")


# -- event changes ------------------------------------------------------------------------


def scheduled_booking(**overrides: Any) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "status": "scheduled",
        "googleEventId": event_id_for_booking(BOOKING),
        "calendarStatus": "confirmed",
        **overrides,
    }
    return booking(**fields)


def test_an_unchanged_event_changes_nothing() -> None:
    assert decide_event_change(BOOKING, scheduled_booking(), event()) is None


def test_a_cancelled_event_cancels_its_booking_and_asks_an_admin() -> None:
    change = decide_event_change(BOOKING, scheduled_booking(), event(status="cancelled"))
    assert change is not None
    assert change.kinds == ["cancelled"]
    assert change.fields["status"] == BookingStatus.CANCELLED
    assert change.fields["needsAttention"] == "event_cancelled"
    assert change.record["previousStatus"] == "scheduled"


def test_a_moved_event_moves_the_class_in_buenos_aires_time() -> None:
    moved = event(
        start={"dateTime": "2026-12-02T21:00:00Z"}, end={"dateTime": "2026-12-02T22:00:00Z"}
    )
    change = decide_event_change(BOOKING, scheduled_booking(), moved)
    assert change is not None
    assert change.kinds == ["moved"]
    assert change.fields["start"] == "2026-12-02T18:00:00-03:00"
    assert change.record["previousStart"] == "2026-12-01T18:00:00-03:00"


def test_a_restored_event_is_flagged_for_an_admin() -> None:
    data = scheduled_booking(status="cancelled", calendarStatus="cancelled")
    change = decide_event_change(BOOKING, data, event())
    assert change is not None
    assert change.kinds == ["restored"]
    assert change.fields["needsAttention"] == "event_restored"


def test_an_attendee_answer_is_recorded() -> None:
    answered = event(attendees=[{"email": "Luis@example.com", "responseStatus": "accepted"}])
    change = decide_event_change(BOOKING, scheduled_booking(), answered)
    assert change is not None
    assert change.fields["attendeeResponses"] == {"luis@example.com": "accepted"}


def test_an_older_version_of_the_event_is_ignored() -> None:
    data = scheduled_booking(calendarUpdated="2026-11-30T00:00:00Z")
    assert decide_event_change(BOOKING, data, event(status="cancelled")) is None


def test_a_copy_of_the_event_never_changes_the_booking() -> None:
    copy = event(id="somethingelse0")
    assert decide_event_change(BOOKING, scheduled_booking(), copy.copy()) is None


# -- the table ------------------------------------------------------------------------------


def test_readme_transition_table_is_the_code_table() -> None:
    section = README.read_text().split("### Booking states", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| `(\w+)` \| (.*?) \|$", section, flags=re.MULTILINE)
    documented = {
        BookingStatus(source): frozenset(BookingStatus(t) for t in re.findall(r"`(\w+)`", targets))
        for source, targets in rows
    }
    assert documented == TRANSITIONS


# -- admin actions --------------------------------------------------------------------------


def value(**overrides: Any) -> BookingValue:
    return BookingValue.from_document(BOOKING, booking(**overrides))


def test_cancelling_a_scheduled_class_cancels_its_event_and_refunds_when_asked() -> None:
    scheduled = value(
        status="scheduled", googleEventId="e1", paymentId="111", paymentStatus="approved"
    )
    decision = decide_cancel(scheduled, "lluvia", True, "admin@example.com")
    assert (decision.outcome, decision.cancel_event, decision.refund) == ("cancelled", "e1", True)
    assert decision.fields is not None
    assert decision.fields["status"] == BookingStatus.CANCELLED
    assert decision.fields["refundRequested"] is True


def test_cancelling_twice_changes_nothing_the_second_time() -> None:
    cancelled = value(
        status="cancelled",
        googleEventId="e1",
        calendarStatus="cancelled",
        paymentId="111",
        paymentStatus="approved",
        refundRequested=True,
        refundId="r1",
    )
    decision = decide_cancel(cancelled, "", True, "admin@example.com")
    assert (decision.outcome, decision.fields, decision.cancel_event, decision.refund) == (
        "already_cancelled",
        None,
        "",
        False,
    )


def test_a_refund_asked_for_but_not_made_is_made_by_the_retry() -> None:
    cancelled = value(
        status="cancelled",
        calendarStatus="cancelled",
        paymentId="111",
        paymentStatus="approved",
        refundRequested=True,
    )
    assert decide_cancel(cancelled, "", False, "admin@example.com").refund


def test_cancelling_a_paid_class_looks_for_an_event_on_its_way() -> None:
    paid = value(status="paid", paymentId="111", paymentStatus="approved")
    decision = decide_cancel(paid, "", False, "admin@example.com")
    assert decision.cancel_event == event_id_for_booking(BOOKING)
    assert not decision.refund


def _at(text: str) -> datetime:
    return datetime.fromisoformat(text)


def test_a_reschedule_moves_the_class_in_its_zone() -> None:
    scheduled = value(status="scheduled", googleEventId="e1")
    decision = decide_reschedule(
        scheduled, _at("2026-12-03T13:00:00+00:00"), _at("2026-12-03T14:00:00+00:00"), [], now=NOW
    )
    assert decision.move_to is not None
    assert decision.fields is not None
    assert decision.fields["start"] == "2026-12-03T10:00:00-03:00"


def test_the_same_times_again_change_nothing() -> None:
    scheduled = value(status="scheduled", googleEventId="e1")
    same = decide_reschedule(
        scheduled, _at("2026-12-01T18:00:00-03:00"), _at("2026-12-01T19:00:00-03:00"), [], now=NOW
    )
    assert (same.outcome, same.fields, same.move_to) == ("unchanged", None, None)


def test_an_overlap_with_the_teachers_other_class_is_a_conflict_naming_it() -> None:
    scheduled = value(status="scheduled", googleEventId="e1")
    other = BookingValue.from_document(
        "b-2",
        booking(
            status="scheduled",
            classTitle="Física",
            start="2026-12-03T10:30:00-03:00",
            end="2026-12-03T11:30:00-03:00",
        ),
    )
    with pytest.raises(Conflict, match="Física"):
        decide_reschedule(
            scheduled,
            _at("2026-12-03T10:00:00-03:00"),
            _at("2026-12-03T11:00:00-03:00"),
            [other],
            now=NOW,
        )


def test_back_to_back_classes_do_not_overlap() -> None:
    scheduled = value(status="scheduled", googleEventId="e1")
    other = BookingValue.from_document(
        "b-2",
        booking(
            status="scheduled", start="2026-12-03T11:00:00-03:00", end="2026-12-03T12:00:00-03:00"
        ),
    )
    decision = decide_reschedule(
        scheduled,
        _at("2026-12-03T10:00:00-03:00"),
        _at("2026-12-03T11:00:00-03:00"),
        [other],
        now=NOW,
    )
    assert decision.outcome == "rescheduled"


GROUP_TIMES = {"start": "2026-12-10T18:00:00-03:00", "end": "2026-12-10T19:00:00-03:00"}


def test_an_overlap_with_the_teachers_session_names_the_session_not_its_seats() -> None:
    scheduled = value(status="scheduled", googleEventId="e1")
    seat = BookingValue.from_document(
        "b-seat",
        booking(status="scheduled", sessionId="ses-1", classTitle="Un asiento", **GROUP_TIMES),
    )
    group = Session.from_document(
        "ses-1", {"title": "Guitarra en grupo", "status": "scheduled", **GROUP_TIMES}
    )
    with pytest.raises(Conflict, match="Guitarra en grupo") as raised:
        decide_reschedule(
            scheduled,
            _at("2026-12-10T18:30:00-03:00"),
            _at("2026-12-10T19:30:00-03:00"),
            [seat],
            [group],
            now=NOW,
        )
    assert raised.value.details == {"conflictingSessionId": "ses-1"}


def test_only_a_scheduled_class_can_be_moved() -> None:
    with pytest.raises(Conflict):
        decide_reschedule(
            value(status="paid"),
            _at("2026-12-03T10:00:00-03:00"),
            _at("2026-12-03T11:00:00-03:00"),
            [],
            now=NOW,
        )


# -- group seats ----------------------------------------------------------------------------


def session(capacity: int = 2, **seats: str) -> Session:
    return Session.from_document(
        "ses-1",
        {
            "title": "Guitarra en grupo",
            "teacher": {"name": "Ana", "email": "ana@example.com"},
            "start": "2026-12-10T18:00:00-03:00",
            "end": "2026-12-10T19:00:00-03:00",
            "capacity": capacity,
            "status": "scheduled",
            "googleEventId": "evt",
            "seats": {
                b: {"status": status, "email": f"{b}@example.com"} for b, status in seats.items()
            },
        },
    )


def seat_payment(**booking_fields: Any) -> Any:
    return decide_payment(
        BOOKING, booking(sessionId="ses-1", **booking_fields), None, payment(), now=NOW
    )


def test_a_paid_seat_is_held_under_the_sessions_guard() -> None:
    decision = decide_seat(seat_payment(), session(2, other="joined"), auto_refund=False, now=NOW)
    assert decision.outcome == "seat_held"
    assert decision.session_fields is not None
    assert decision.session_fields["seatsTaken"] == 2
    assert set(decision.session_fields["seats"]) == {"other", BOOKING}
    assert decision.fields is not None and decision.fields["status"] == BookingStatus.PAID
    assert decision.join_session == "ses-1" and decision.claim


def test_a_seat_of_a_full_session_is_over_capacity_and_refunded_if_configured() -> None:
    full = session(1, other="joined")
    kept = decide_seat(seat_payment(), full, auto_refund=False, now=NOW)
    refunded = decide_seat(seat_payment(), full, auto_refund=True, now=NOW)
    assert kept.fields is not None and kept.fields["status"] == BookingStatus.OVER_CAPACITY
    assert kept.issue is not None and kept.issue.kind == "over_capacity"
    assert (kept.refund, refunded.refund) == (False, True)
    assert kept.session_fields is None and not kept.join_session


def test_a_seat_already_held_is_not_counted_twice_and_joins_on_redelivery() -> None:
    decision = decide_seat(
        seat_payment(), session(1, **{BOOKING: "held"}), auto_refund=False, now=NOW
    )
    assert decision.session_fields is None
    assert decision.join_session == "ses-1"
    assert decision.outcome == "seat_held"  # the service then adds the student to the event


def test_a_refunded_seat_leaves_the_event_and_frees_its_place() -> None:
    data = booking(sessionId="ses-1", status="scheduled", paymentId="111", googleEventId="evt")
    reversed_ = decide_payment(BOOKING, data, BOOKING, payment("refunded"), now=NOW)
    assert reversed_.leave_session == "ses-1" and not reversed_.cancel_event
    left = decide_leave(reversed_, session(2, **{BOOKING: "joined", "other": "joined"}))
    assert left.session_fields is not None
    assert set(left.session_fields["seats"]) == {"other"}
    assert left.session_fields["seatsTaken"] == 1


def test_a_seat_refunded_while_joining_is_taken_out_again() -> None:
    refunded = BookingValue.from_document(
        BOOKING, booking(sessionId="ses-1", status="refunded", paymentId="111")
    )
    decision = decide_seat_joined(refunded, session(2), class_event(event(id="evt")))
    assert decision.leave_session == "ses-1" and decision.fields is None


def test_a_seat_joining_a_session_cancelled_meanwhile_is_cancelled_for_an_admin() -> None:
    paid = BookingValue.from_document(BOOKING, booking(sessionId="ses-1", status="paid"))
    cancelled = class_event(event(id="evt", status="cancelled"))
    decision = decide_seat_joined(paid, session(2, **{BOOKING: "held"}), cancelled)
    assert decision.outcome == "session_cancelled"
    assert decision.fields is not None
    assert decision.fields["status"] == BookingStatus.CANCELLED
    assert decision.fields["needsAttention"] == "event_cancelled"
    assert decision.notice is None  # nobody is told they joined a cancelled class


def test_a_seat_moves_only_with_its_session() -> None:
    seat = value(status="scheduled", googleEventId="evt", sessionId="ses-1")
    with pytest.raises(Conflict, match="session"):
        decide_reschedule(
            seat, _at("2026-12-11T18:00:00-03:00"), _at("2026-12-11T19:00:00-03:00"), [], now=NOW
        )


def test_a_refund_whose_event_cancel_reached_the_sync_first_ends_the_booking_refunded() -> None:
    """The refund cancels the event; the push's sync may mark the booking `cancelled` (with
    "a refund may be due") before the refund's commit, which then reads it again."""
    seen_by_sync = booking(
        status="cancelled",
        calendarStatus="cancelled",
        needsAttention="event_cancelled",
        paymentId="111",
        paymentStatus="approved",
        googleEventId="e1",
    )
    decision = decide_payment(BOOKING, seen_by_sync, BOOKING, payment("refunded"), now=NOW)
    assert decision.fields is not None
    assert decision.fields["status"] == BookingStatus.REFUNDED
    assert decision.fields["needsAttention"] is REMOVE
    assert not decision.cancel_event


def test_the_refund_of_a_class_an_admin_cancelled_keeps_it_cancelled() -> None:
    by_admin = booking(
        status="cancelled", calendarStatus="cancelled", paymentId="111", paymentStatus="approved"
    )
    decision = decide_payment(BOOKING, by_admin, BOOKING, payment("refunded"), now=NOW)
    assert decision.fields is not None
    assert "status" not in decision.fields
    assert decision.fields["paymentStatus"] == "refunded"


# -- a session's event changed in Google Calendar ---------------------------------------------


def session_document(**overrides: Any) -> dict[str, Any]:
    return {
        "title": "Guitarra en grupo",
        "teacher": {"name": "Ana", "email": "ana@example.com"},
        "start": "2026-12-10T18:00:00-03:00",
        "end": "2026-12-10T19:00:00-03:00",
        "status": "scheduled",
        "googleEventId": "evt",
        **overrides,
    }


def session_event(**overrides: Any) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "id": "evt",
        "start": {"dateTime": "2026-12-10T18:00:00-03:00"},
        "end": {"dateTime": "2026-12-10T19:00:00-03:00"},
        "extendedProperties": {"private": {"sessionId": "ses-1"}},
        **overrides,
    }
    return event(**fields)


def test_a_session_whose_event_is_unchanged_changes_nothing() -> None:
    assert decide_session_event_change("ses-1", session_document(), session_event()) is None


def test_a_session_whose_event_was_cancelled_is_cancelled_for_an_admin_to_decide() -> None:
    fields = decide_session_event_change(
        "ses-1", session_document(), session_event(status="cancelled")
    )
    assert fields is not None
    assert (fields["status"], fields["cancelledBy"]) == ("cancelled", "google_calendar")
    assert fields["needsAttention"] == "event_cancelled"


def test_a_session_whose_event_moved_moves_in_buenos_aires_time() -> None:
    moved = session_event(
        start={"dateTime": "2026-12-11T13:00:00Z"}, end={"dateTime": "2026-12-11T14:00:00Z"}
    )
    fields = decide_session_event_change("ses-1", session_document(), moved)
    assert fields is not None
    assert (fields["start"], fields["end"]) == (
        "2026-12-11T10:00:00-03:00",
        "2026-12-11T11:00:00-03:00",
    )


def test_an_older_version_or_a_foreign_event_changes_no_session() -> None:
    seen = session_document(calendarUpdated="2026-11-30T00:00:00Z")
    assert decide_session_event_change("ses-1", seen, session_event(status="cancelled")) is None
    foreign = session_event(id="other", status="cancelled")
    assert decide_session_event_change("ses-1", session_document(), foreign) is None


def test_a_seat_keeps_only_its_own_peoples_answers() -> None:
    data = scheduled_booking(sessionId="ses-1", googleEventId="evt")
    answered = session_event(
        attendees=[
            {"email": "ana@example.com", "responseStatus": "accepted"},
            {"email": "luis@example.com", "responseStatus": "accepted"},
            {"email": "otra@example.com", "responseStatus": "declined"},
        ]
    )
    change = decide_event_change(BOOKING, data, answered)
    assert change is not None
    assert change.fields["attendeeResponses"] == {
        "ana@example.com": "accepted",
        "luis@example.com": "accepted",
    }


# -- late approvals: a class that has begun is never scheduled -----------------------------------

CLASS_START = datetime(2026, 12, 1, 21, 0, tzinfo=UTC)  # 18:00 in Buenos Aires


def _late(decision: Any, auto_refund: bool = False) -> None:
    assert decision.outcome == "paid_late"
    assert not decision.create_event and not decision.join_session and not decision.cancel_event
    assert decision.fields["status"] == BookingStatus.PAID_LATE
    assert decision.fields["calendarStatus"] == CalendarStatus.TOO_LATE
    assert decision.fields["needsAttention"] == "late_payment"
    assert decision.issue is not None and decision.issue.kind == "late_payment"
    assert decision.refund is auto_refund


def test_a_payment_approved_the_day_after_its_class_schedules_nothing() -> None:
    approved = "2026-12-02T10:00:00.000-04:00"
    decision = decide_payment(
        BOOKING,
        booking(),
        None,
        payment(date_approved=approved),
        now=CLASS_START + timedelta(days=1, hours=1),
    )
    _late(decision)
    assert decision.claim  # the payment still belongs to this booking alone
    assert decision.issue is not None
    assert decision.issue.details == {
        "bookingId": BOOKING,
        "classStart": "2026-12-01T18:00:00-03:00",
        "classEnd": "2026-12-01T19:00:00-03:00",
        "approvedAt": "2026-12-02T11:00:00-03:00",
        "decidedAt": "2026-12-02T19:00:00-03:00",
    }


def test_a_payment_approved_ten_minutes_into_the_class_schedules_nothing() -> None:
    ten_in = CLASS_START + timedelta(minutes=10)
    decision = decide_payment(
        BOOKING, booking(), None, payment(date_approved=ten_in.isoformat()), now=ten_in
    )
    _late(decision)


def test_a_payment_approved_a_minute_before_the_class_is_scheduled_unless_the_margin_says() -> None:
    minute_before = CLASS_START - timedelta(minutes=1)
    on_time = decide_payment(BOOKING, booking(), None, payment(), now=minute_before)
    margin = LatePolicy(margin=timedelta(minutes=15))
    too_close = decide_payment(BOOKING, booking(), None, payment(), now=minute_before, late=margin)
    assert on_time.outcome == "scheduled" and on_time.create_event
    _late(too_close)


def test_an_approval_stamped_after_the_class_is_late_even_if_our_clock_lags() -> None:
    stamped_late = (CLASS_START + timedelta(minutes=5)).isoformat()
    decision = decide_payment(
        BOOKING,
        booking(),
        None,
        payment(date_approved=stamped_late),
        now=CLASS_START - timedelta(minutes=1),
    )
    _late(decision)


def test_a_late_payment_is_refunded_when_configured_and_again_on_redelivery() -> None:
    auto = LatePolicy(auto_refund=True)
    after = CLASS_START + timedelta(hours=2)
    first = decide_payment(BOOKING, booking(), None, payment(), now=after, late=auto)
    _late(first, auto_refund=True)
    assert first.fields is not None
    again = decide_payment(
        BOOKING,
        {**booking(), **first.fields, "paymentId": "111"},
        BOOKING,
        payment(),
        now=after,
        late=auto,
    )
    assert again.outcome == "already_paid_late" and not again.create_event
    assert again.refund  # the same idempotency key: Mercado Pago refunds once


def test_the_refund_of_a_late_payment_ends_the_booking_without_a_calendar_call() -> None:
    late = booking(status="paid_late", paymentId="111", calendarStatus="too_late")
    decision = decide_payment(
        BOOKING, late, BOOKING, payment("refunded"), now=CLASS_START + timedelta(days=2)
    )
    assert decision.fields is not None and decision.fields["status"] == BookingStatus.REFUNDED
    assert not decision.cancel_event


def test_a_late_seat_takes_no_seat() -> None:
    session_start = datetime(2026, 12, 10, 21, 0, tzinfo=UTC)
    decision = decide_seat(
        seat_payment(), session(2), auto_refund=False, now=session_start + timedelta(minutes=1)
    )
    _late(decision)
    assert decision.session_fields is None
    assert decision.issue is not None and decision.issue.details["sessionId"] == "ses-1"


def test_reconcile_reports_a_paid_class_that_has_begun_instead_of_creating_it() -> None:
    data = booking(
        status="paid", paymentId="111", paymentStatus="approved", calendarStatus="pending_creation"
    )
    waiting = BookingValue.from_document(BOOKING, data)
    before = decide_reconcile(waiting, now=CLASS_START - timedelta(hours=1))
    after = decide_reconcile(waiting, now=CLASS_START + timedelta(minutes=30))
    assert before.create_event
    _late(after)


def test_reconcile_cancels_an_event_it_created_before_finding_the_class_begun() -> None:
    data = booking(
        status="paid", paymentId="111", paymentStatus="approved", calendarStatus="pending_creation"
    )
    waiting = BookingValue.from_document(BOOKING, data)
    decision = decide_reconcile(waiting, "evt-made", now=CLASS_START + timedelta(minutes=1))
    assert decision.outcome == "paid_late" and decision.cancel_event == "evt-made"


def test_a_class_cannot_be_rescheduled_to_a_time_that_has_begun() -> None:
    scheduled = value(status="scheduled", googleEventId="evt")
    with pytest.raises(InvalidRequest) as refused:
        decide_reschedule(
            scheduled,
            _at("2026-11-29T10:00:00-03:00"),
            _at("2026-11-29T11:00:00-03:00"),
            [],
            now=NOW,
        )
    assert refused.value.details.get("parameter") == "start"
