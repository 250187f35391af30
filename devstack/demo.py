"""The paid-booking scenario, end to end, told for a person (`./dev.sh demo`)."""

from __future__ import annotations

import time
from datetime import datetime, timedelta
from typing import Any

from devstack.client import StackClient
from devstack.when import CLASS_DAYS_AHEAD, ZONE, at, iso
from shared.domain.seats import event_id_for_session

CLASS_START = at(CLASS_DAYS_AHEAD, 18)
"""The seeded booking's class (`StackClient.seed_booking`): in 7 days, 18:00-19:00."""
CLASS_END = at(CLASS_DAYS_AHEAD, 19)
GROUP_START = iso(CLASS_DAYS_AHEAD + 2, 19)
"""The group session, two days after the seeded class."""
GROUP_END = iso(CLASS_DAYS_AHEAD + 2, 20)


def run_demo(document: dict[str, Any]) -> dict[str, Any]:
    client = StackClient(document)
    say = print
    booking_id = client.seed_booking()
    client.db.collection("teachers").document("t-ana").set(
        {"name": "Ana Gómez", "email": "ana.gomez@example.com"}
    )
    client.db.collection("classes").document("algebra-1").set(
        {"title": "Álgebra I", "teacherId": "t-ana", "price": {"amount": 15000, "currency": "ARS"}}
    )
    say(f"1. Seeded teacher Ana Gómez, class 'Álgebra I' and booking {booking_id}")
    say(
        f"   (awaiting payment, 15000 ARS, {CLASS_START:%Y-%m-%d %H:%M}-{CLASS_END:%H:%M}"
        " Buenos Aires)."
    )

    payment = client.create_payment(booking_id)
    say(f"2. Mercado Pago approved payment {payment['id']} for the booking.")

    deliveries = [
        client.notify(payment["id"], action=action)
        for action in ("payment.created", "payment.updated")
    ]
    for number, delivery in enumerate(deliveries, 1):
        say(
            f"3.{number} Signed webhook delivered: payment_webhook answered {delivery['status']}"
            f" {delivery['body'].strip()}"
        )
    forged = client.notify(payment["id"], signature="forged")
    say(f"4. Forged webhook (wrong secret): payment_webhook answered {forged['status']}.")

    booking = _settled(client, booking_id)
    events = client.events_for_booking(booking_id)
    queued = bool((document.get("env") or {}).get("SCHEDULING_QUEUE"))
    how = "queued by the webhook, made by schedule_class, as deployed" if queued else "inline"
    say(f"5. Booking {booking_id} is now '{booking.get('status')}' ({how}):")
    for field in (
        "paymentId",
        "paymentStatus",
        "googleEventId",
        "meetLink",
        "htmlLink",
        "calendarStatus",
    ):
        say(f"     {field:15} {booking.get(field)}")
    for event in events:
        attendees = ", ".join(a["email"] for a in event.get("attendees", []))
        say(f"6. Calendar event {event['id']}: '{event.get('summary')}'")
        say(
            f"     {event['start']['dateTime']} -> {event['end']['dateTime']}"
            f" ({event['start'].get('timeZone')}), Meet {event.get('hangoutLink')}"
        )
        say(f"     invited: {attendees}")
    say(f"   Events carrying this booking id: {len(events)} (two deliveries, one event).")

    listed = client.http.get(
        document["functions"]["list_events"],
        params={"from": iso(CLASS_DAYS_AHEAD, 0), "to": iso(CLASS_DAYS_AHEAD + 1, 0)},
        headers={"X-API-Key": document["secrets"]["admin_api_key"]},
        timeout=30,
    )
    mine = [e for e in listed.json().get("events", []) if e.get("bookingId") == booking_id]
    say(f"7. Admin listing (list_events) answered {listed.status_code}; the class is listed:")
    for item in mine:
        say(
            f"     {item['start']}  {item['summary']}  student {item['student']['email']}"
            f"  payment {item['paymentStatus']}"
        )

    moved = _move_class_in_google_calendar(client, booking, booking_id)
    say("8. The teacher moved the class one hour later in Google Calendar; the push channel")
    say(f"   brought it back to the booking: start {moved.get('start')}.")
    lifecycle = _refund_and_reschedule(client, document, booking_id, say)
    group = _group_class(client, document, say)
    late = _late_payment(client, say)
    ok = (
        not late["latePaymentScheduled"]
        and late["lateBookingStatus"] == "paid_late"
        and group["eventsForSession"] == 1
        and group["students"] == 3
        and group["overCapacity"] == 1
        and lifecycle["refundCancelledEvent"]
        and lifecycle["meetLinkAfterReschedule"] == booking.get("meetLink")
        and len(events) == 1
        and booking.get("status") == "scheduled"
        and bool(booking.get("meetLink"))
        and forged["status"] == 401
        and all(d["status"] == 200 for d in deliveries)
        and len(mine) == 1
        and moved.get("start") == MOVED_START
    )
    return {
        "ok": ok,
        "bookingId": booking_id,
        "paymentId": str(payment["id"]),
        "googleEventId": booking.get("googleEventId"),
        "meetLink": booking.get("meetLink"),
        "calendarStatus": booking.get("calendarStatus"),
        "bookingStatus": booking.get("status"),
        "eventsForBooking": len(events),
        "scheduledThroughQueue": queued,
        "deliveryStatuses": [d["status"] for d in deliveries],
        "forgedStatus": forged["status"],
        "listedByAdmin": len(mine),
        "startAfterMove": moved.get("start"),
        **lifecycle,
        "groupClass": group,
        **late,
    }


MOVED_START = iso(CLASS_DAYS_AHEAD, 19)
"""The seeded class, moved one hour later by the teacher in Google Calendar."""
MOVED_END = iso(CLASS_DAYS_AHEAD, 20)


def _late_payment(client: StackClient, say: Any) -> dict[str, Any]:
    """A cash voucher paid only after its class began: no event, no invitation; the booking
    waits for an admin's refund."""
    start = (datetime.now(ZONE) - timedelta(minutes=20)).replace(second=0, microsecond=0)
    booking_id = client.seed_booking(
        start=start.isoformat(), end=(start + timedelta(hours=1)).isoformat()
    )
    voucher = client.create_payment(
        booking_id, payment_type_id="ticket", payment_method_id="rapipago"
    )
    delivery = client.notify(voucher["id"])
    booking = client.booking(booking_id)
    events = client.events_for_booking(booking_id)
    say(
        f"12. A Rapipago voucher for a class that began at {start:%H:%M} was approved only now:"
        f" payment_webhook answered {delivery['status']}; the booking is "
        f"'{booking.get('status')}' ({booking.get('needsAttention')}), {len(events)} events,"
        " nobody invited; the console offers the refund."
    )
    return {
        "lateBookingId": booking_id,
        "lateBookingStatus": booking.get("status"),
        "latePaymentScheduled": bool(events) or bool(booking.get("googleEventId")),
    }


def _group_class(client: StackClient, document: dict[str, Any], say: Any) -> dict[str, Any]:
    """A group session of capacity 3; four students pay; one is over capacity."""
    answer = client.http.post(
        document["functions"]["class_sessions"],
        json={
            "title": "Conversación en inglés",
            "teacher": {"name": "Ana Gómez", "email": "ana.gomez@example.com"},
            "start": GROUP_START,
            "end": GROUP_END,
            "capacity": 3,
            "price": {"amount": 15000, "currency": "ARS"},
        },
        headers={"X-API-Key": document["secrets"]["admin_api_key"]},
        timeout=30,
    )
    session = answer.json()
    session_id = session["sessionId"]
    say(
        f"11. An admin created group session {session_id} (capacity 3, class_sessions answered "
        f"{answer.status_code}); its one Meet link is {session.get('meetLink')}."
    )
    seats = []
    for n, name in enumerate(("Lucía", "Mateo", "Sofía", "Tomás")):
        booking_id = client.seed_booking(
            sessionId=session_id,
            student={"name": name, "email": f"alumno{n}@example.com"},
            start=GROUP_START,
            end=GROUP_END,
        )
        client.notify(client.create_payment(booking_id)["id"])
        seats.append((name, _settled(client, booking_id).get("status")))
    say("    Four students paid for a seat: " + ", ".join(f"{n} {s}" for n, s in seats) + ".")
    event = client.event(event_id_for_session(session_id))
    listed = (
        client.calendar.events()
        .list(calendarId=document["calendar_id"], privateExtendedProperty=f"sessionId={session_id}")
        .execute()
    )
    students = [a for a in event.get("attendees", []) if a["email"].startswith("alumno")]
    say(
        f"    The session's event has {len(students)} students and the teacher; "
        f"{sum(1 for _, s in seats if s == 'over_capacity')} booking is over capacity."
    )
    return {
        "sessionId": session_id,
        "eventsForSession": len(listed.get("items", [])),
        "students": len(students),
        "overCapacity": sum(1 for _, s in seats if s == "over_capacity"),
    }


RESCHEDULED_START = iso(CLASS_DAYS_AHEAD + 1, 10)
"""The seeded class, rescheduled by an admin to the next morning."""
RESCHEDULED_END = iso(CLASS_DAYS_AHEAD + 1, 11)
REFUNDED_START = iso(CLASS_DAYS_AHEAD + 4, 18)
"""The second class, paid and then refunded."""
REFUNDED_END = iso(CLASS_DAYS_AHEAD + 4, 19)


def _refund_and_reschedule(
    client: StackClient, document: dict[str, Any], first: str, say: Any
) -> dict[str, Any]:
    """A second class is paid, then refunded in Mercado Pago; the first is rescheduled by an
    admin through manage_booking. Both reach Google Calendar."""
    second = client.seed_booking(start=REFUNDED_START, end=REFUNDED_END)
    payment = client.create_payment(second)
    client.notify(payment["id"])
    _settled(client, second)
    say(f"9. A second booking {second} was paid and scheduled; then Mercado Pago refunded it.")
    client.refund_payment(payment["id"])
    client.webhook_deliveries(wait=1)  # Mercado Pago notifies the refund by itself
    refunded = client.booking(second)
    event = (
        client.calendar.events()
        .get(calendarId=document["calendar_id"], eventId=refunded["googleEventId"])
        .execute()
    )
    say(
        f"   The booking is now '{refunded.get('status')}' and its Calendar event "
        f"'{event.get('status')}' (student and teacher were told)."
    )
    answer = client.http.post(
        document["functions"]["manage_booking"],
        json={
            "bookingId": first,
            "action": "reschedule",
            "start": RESCHEDULED_START,
            "end": RESCHEDULED_END,
        },
        headers={"X-API-Key": document["secrets"]["admin_api_key"]},
        timeout=30,
    )
    moved = answer.json()
    say(
        f"10. An admin rescheduled {first} to {moved.get('start')} (manage_booking answered "
        f"{answer.status_code}); the Meet link stayed {moved.get('meetLink')}."
    )
    return {
        "refundedBookingId": second,
        "refundCancelledEvent": refunded.get("status") == "refunded"
        and event.get("status") == "cancelled",
        "startAfterReschedule": moved.get("start"),
        "meetLinkAfterReschedule": moved.get("meetLink"),
    }


def _settled(client: StackClient, booking_id: str) -> dict[str, Any]:
    """The booking once its class is scheduled (or it ended otherwise): as deployed, the
    webhook leaves it paid and the schedule-class queue creates the event moments later."""
    deadline = time.monotonic() + 30
    booking = client.booking(booking_id)
    while booking.get("status") == "paid" and time.monotonic() < deadline:
        time.sleep(0.1)
        booking = client.booking(booking_id)
    return booking


def _move_class_in_google_calendar(
    client: StackClient, booking: dict[str, Any], booking_id: str
) -> dict[str, Any]:
    """Patch the event as a teacher would; wait (bounded) for the push to update the booking."""
    client.calendar.events().patch(
        calendarId=client.doc["calendar_id"],
        eventId=booking["googleEventId"],
        conferenceDataVersion=1,  # without it Google would drop the Meet link on a change
        body={
            "start": {"dateTime": MOVED_START, "timeZone": "America/Argentina/Buenos_Aires"},
            "end": {
                "dateTime": MOVED_END,
                "timeZone": "America/Argentina/Buenos_Aires",
            },
        },
    ).execute()
    deadline = time.monotonic() + 15
    current = client.booking(booking_id)
    while current.get("start") != MOVED_START and time.monotonic() < deadline:
        time.sleep(0.1)
        current = client.booking(booking_id)
    return current
