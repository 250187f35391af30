"""Group classes against the emulators: one event, one Meet link, many paid seats."""

from __future__ import annotations

import concurrent.futures
import time
from collections.abc import Callable
from typing import Any

import pytest
import requests
from google.auth.credentials import AnonymousCredentials
from google.cloud import tasks_v2

from devstack.client import StackClient
from devstack.when import iso, wall
from shared.adapters.clients import reset_clients
from shared.domain.seats import event_id_for_session

pytestmark = pytest.mark.usefixtures("stack")

SESSION_DAY = 16
"""The group session's day, counted from today: a class never in the past."""
SESSION_START = iso(SESSION_DAY, 18)
SESSION_END = iso(SESSION_DAY, 19, 30)
MOVED_START = iso(SESSION_DAY + 2, 10)
"""Where a teacher moves the session in Google Calendar."""
MOVED_END = iso(SESSION_DAY + 2, 11, 30)


def _sessions(client: StackClient, body: Any = None, method: str = "POST") -> Any:
    return requests.request(
        method,
        client.doc["functions"]["class_sessions"],
        json=body,
        headers={"X-API-Key": client.doc["secrets"]["admin_api_key"]},
        timeout=60,
    )


def _new_session(client: StackClient, capacity: int, **overrides: Any) -> dict[str, Any]:
    body = {
        "title": "Guitarra en grupo",
        "teacher": {"name": "Ana Gómez", "email": "ana.gomez@example.com"},
        "start": SESSION_START,
        "end": SESSION_END,
        "capacity": capacity,
        "price": {"amount": 15000, "currency": "ARS"},
        **overrides,
    }
    answer = _sessions(client, body)
    assert answer.status_code in (200, 201), answer.text
    session: dict[str, Any] = answer.json()
    return session


def _seat(client: StackClient, session_id: str, n: int) -> tuple[str, Any]:
    booking_id = client.seed_booking(
        sessionId=session_id,
        student={"name": f"Estudiante {n}", "email": f"estudiante{n}@example.com"},
        start=SESSION_START,
        end=SESSION_END,
    )
    return booking_id, client.create_payment(booking_id)["id"]


def test_a_session_has_one_event_with_meet_and_a_retry_gets_the_same(client: StackClient) -> None:
    first = _new_session(client, 10, sessionId="ses-guitarra")
    again = _sessions(
        client,
        {
            "sessionId": "ses-guitarra",
            "title": "Guitarra en grupo",
            "teacher": {"name": "Ana Gómez", "email": "ana.gomez@example.com"},
            "start": SESSION_START,
            "end": SESSION_END,
            "capacity": 10,
            "price": {"amount": 15000, "currency": "ARS"},
        },
    )

    assert again.status_code == 200
    assert again.json() == first
    assert first["meetLink"].startswith("https://meet.google.com/")
    assert (first["capacity"], first["seatsTaken"]) == (10, 0)
    event = client.event(event_id_for_session("ses-guitarra"))
    assert event["guestsCanSeeOtherGuests"] is False
    assert [a["email"] for a in event["attendees"]] == ["ana.gomez@example.com"]


def test_thirty_students_paying_at_once_all_get_in_once(client: StackClient) -> None:
    session = _new_session(client, 30)
    seats = [_seat(client, session["sessionId"], n) for n in range(30)]
    client.reset_stats("mercadopago")

    with concurrent.futures.ThreadPoolExecutor(30) as pool:
        answers = list(pool.map(lambda seat: client.notify(seat[1]), seats))

    assert {a["status"] for a in answers} <= {200, 503}
    deliveries = len(answers)
    for booking_id, payment_id in seats:  # Mercado Pago redelivers what was not a 2xx
        if client.booking(booking_id).get("status") != "scheduled":
            assert client.notify(payment_id)["status"] == 200
            deliveries += 1
    payment_reads = sum(
        n for call, n in client.stats("mercadopago").items() if call.startswith("GET /v1/payments")
    )
    assert payment_reads == deliveries  # once per delivery, however often its commit lost
    event = client.event(event_id_for_session(session["sessionId"]))
    assert len(event["attendees"]) == 31
    assert {client.booking(b)["status"] for b, _ in seats} == {"scheduled"}
    assert {client.booking(b)["meetLink"] for b, _ in seats} == {session["meetLink"]}
    emailed = {
        e["to"]
        for i in client.invitations(event_id_for_session(session["sessionId"]))
        for e in i["emails"]
    }
    assert emailed == {"ana.gomez@example.com"}  # the teacher, once, when the session was made
    notices = client.db.collection("seat_notices").stream()
    assert len([n for n in notices if n.id.endswith("-joined")]) == 30
    listed = _sessions(client, method="GET").json()["sessions"]
    assert [s["seatsTaken"] for s in listed] == [30]


def test_a_payment_for_a_full_session_is_over_capacity_and_refunded_when_configured(
    client: StackClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AUTO_REFUND_OVER_CAPACITY", "true")
    reset_clients()
    session = _new_session(client, 3)
    seats = [_seat(client, session["sessionId"], n) for n in range(4)]

    outcomes = [client.notify(payment_id)["status"] for _, payment_id in seats]

    assert outcomes == [200, 200, 200, 200]
    statuses = [client.booking(b)["status"] for b, _ in seats]
    assert statuses[:3] == ["scheduled"] * 3
    assert statuses[3] in ("over_capacity", "refunded")
    last_booking, last_payment = seats[3]
    issue = client.db.collection("payment_issues").document(f"{last_payment}-over_capacity")
    assert issue.get().exists
    client.webhook_deliveries(wait=1)  # the refund's own notification
    assert client.booking(last_booking)["paymentStatus"] == "refunded"
    assert len(client.event(event_id_for_session(session["sessionId"]))["attendees"]) == 4


def test_a_refunded_seat_leaves_alone_and_frees_its_place(client: StackClient) -> None:
    session = _new_session(client, 2)
    seats = [_seat(client, session["sessionId"], n) for n in range(2)]
    for _, payment_id in seats:
        assert client.notify(payment_id)["status"] == 200
    before = len(client.invitations(event_id_for_session(session["sessionId"])))

    client.refund_payment(seats[0][1])
    client.webhook_deliveries(wait=1)

    attendees = [
        a["email"] for a in client.event(event_id_for_session(session["sessionId"]))["attendees"]
    ]
    assert "estudiante0@example.com" not in attendees
    assert "estudiante1@example.com" in attendees
    assert client.booking(seats[0][0])["status"] == "refunded"
    emails = client.invitations(event_id_for_session(session["sessionId"]))[before:]
    assert emails == []  # Google cannot email only the one who left: nobody is emailed
    notice = client.db.collection("seat_notices").document(f"{seats[0][0]}-left").get()
    assert notice.to_dict()["email"] == "estudiante0@example.com"  # our mailer tells them
    listed = _sessions(client, method="GET").json()["sessions"]
    assert listed[0]["seatsTaken"] == 1
    third, payment = _seat(client, session["sessionId"], 2)
    assert client.notify(payment)["status"] == 200
    assert client.booking(third)["status"] == "scheduled"  # the freed seat is taken again


def test_cancelling_a_session_cancels_its_event_and_every_seat(client: StackClient) -> None:
    session = _new_session(client, 3)
    seats = [_seat(client, session["sessionId"], n) for n in range(2)]
    for _, payment_id in seats:
        client.notify(payment_id)

    answer = _sessions(
        client, {"sessionId": session["sessionId"], "action": "cancel", "refund": True}
    )

    assert answer.status_code == 200
    assert answer.json()["status"] == "cancelled"
    assert client.event(event_id_for_session(session["sessionId"]))["status"] == "cancelled"
    for booking_id, _ in seats:
        booking = client.booking(booking_id)
        assert (booking["status"], booking["refundStatus"]) == ("cancelled", "approved")


def test_moving_a_session_moves_its_one_event_and_every_booking(client: StackClient) -> None:
    session = _new_session(client, 3)
    booking_id, payment_id = _seat(client, session["sessionId"], 0)
    client.notify(payment_id)

    answer = _sessions(
        client,
        {
            "sessionId": session["sessionId"],
            "action": "reschedule",
            "start": wall(SESSION_DAY + 1, 18),
            "end": wall(SESSION_DAY + 1, 19, 30),
        },
    )

    assert answer.status_code == 200
    event = client.event(event_id_for_session(session["sessionId"]))
    assert event["start"]["dateTime"].startswith(wall(SESSION_DAY + 1, 18))
    assert event["hangoutLink"] == session["meetLink"]
    assert client.booking(booking_id)["start"] == iso(SESSION_DAY + 1, 18)


def test_a_session_cannot_move_onto_the_teachers_other_class(client: StackClient) -> None:
    session = _new_session(client, 3)
    busy = client.seed_booking(
        classTitle="Solfeo",
        teacher={"name": "Ana Gómez", "email": "ana.gomez@example.com"},
        start=iso(SESSION_DAY + 1, 18),
        end=iso(SESSION_DAY + 1, 19),
    )
    assert client.notify(client.create_payment(busy)["id"])["status"] == 200

    answer = _sessions(
        client,
        {
            "sessionId": session["sessionId"],
            "action": "reschedule",
            "start": wall(SESSION_DAY + 1, 18, 30),
            "end": wall(SESSION_DAY + 1, 20),
        },
    )

    assert answer.status_code == 409, answer.text
    assert "Solfeo" in answer.json()["error"]["message"]
    event = client.event(event_id_for_session(session["sessionId"]))
    assert event["start"]["dateTime"].startswith(wall(SESSION_DAY, 18))


def test_a_session_at_a_time_the_teacher_already_teaches_is_refused(
    client: StackClient,
) -> None:
    _new_session(client, 3, sessionId="ses-primera")
    again = _sessions(
        client,
        {
            "sessionId": "ses-segunda",
            "title": "Otra clase grupal",
            "teacher": {"name": "Ana Gómez", "email": "ana.gomez@example.com"},
            "start": iso(SESSION_DAY, 19),
            "end": iso(SESSION_DAY, 20),
            "capacity": 3,
            "price": {"amount": 15000, "currency": "ARS"},
        },
    )

    assert again.status_code == 409, again.text
    assert "Guitarra en grupo" in again.json()["error"]["message"]
    assert not client.db.collection("class_sessions").document("ses-segunda").get().exists
    retried = _new_session(client, 3, sessionId="ses-primera")  # a retry is still the same one
    assert retried["sessionId"] == "ses-primera"


def _watch(client: StackClient) -> None:
    """The push channel open, as the scheduled renew_watch keeps it."""
    answer = requests.post(
        client.doc["functions"]["renew_watch"],
        headers={"X-API-Key": client.doc["secrets"]["admin_api_key"]},
        timeout=60,
    )
    assert answer.status_code == 200, answer.text


def _eventually(probe: Callable[[], bool], timeout: float = 15.0) -> None:
    end = time.monotonic() + timeout
    while not probe():
        assert time.monotonic() < end, "the change did not reach Firestore in time"
        time.sleep(0.1)


def _joined_session(client: StackClient, seats: int) -> tuple[dict[str, Any], list[str]]:
    session = _new_session(client, 3)
    bookings = []
    for n in range(seats):
        booking_id, payment_id = _seat(client, session["sessionId"], n)
        assert client.notify(payment_id)["status"] == 200
        bookings.append(booking_id)
    _watch(client)
    return session, bookings


def test_a_session_cancelled_in_google_calendar_cancels_every_seat(client: StackClient) -> None:
    session, bookings = _joined_session(client, 2)
    event_id = event_id_for_session(session["sessionId"])

    client.calendar.events().delete(
        calendarId=client.doc["calendar_id"], eventId=event_id
    ).execute()

    _eventually(lambda: all(client.booking(b)["status"] == "cancelled" for b in bookings))
    for booking_id in bookings:
        booking = client.booking(booking_id)
        assert booking["calendarStatus"] == "cancelled"
        assert booking["needsAttention"] == "event_cancelled"  # an admin decides on refunds
    stored = client.db.collection("class_sessions").document(session["sessionId"]).get().to_dict()
    assert (stored["status"], stored["cancelledBy"]) == ("cancelled", "google_calendar")
    listed = _sessions(client, method="GET").json()["sessions"]
    assert [s["status"] for s in listed] == ["cancelled"]


def test_a_session_moved_in_google_calendar_moves_every_seat(client: StackClient) -> None:
    session, bookings = _joined_session(client, 2)
    event_id = event_id_for_session(session["sessionId"])

    client.calendar.events().patch(
        calendarId=client.doc["calendar_id"],
        eventId=event_id,
        body={
            "start": {"dateTime": MOVED_START},
            "end": {"dateTime": MOVED_END},
        },
    ).execute()

    _eventually(lambda: all(client.booking(b)["start"] == MOVED_START for b in bookings))
    stored = client.db.collection("class_sessions").document(session["sessionId"]).get().to_dict()
    assert (stored["start"], stored["end"]) == (MOVED_START, MOVED_END)
    for n, booking_id in enumerate(bookings):
        booking = client.booking(booking_id)
        assert booking["status"] == "scheduled"
        # A seat keeps its own people's answers, never the other students' addresses.
        assert set(booking.get("attendeeResponses") or {}) <= {
            f"estudiante{n}@example.com",
            "ana.gomez@example.com",
        }


def test_a_seat_held_when_its_session_is_cancelled_in_google_calendar_does_not_join(
    client: StackClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    queue = client.doc["cloud_tasks"]["queues"]["schedule_class"]
    monkeypatch.setenv("SCHEDULING_QUEUE", queue)
    reset_clients()
    session, _ = _joined_session(client, 1)
    tasks = tasks_v2.CloudTasksClient(
        transport="rest",
        credentials=AnonymousCredentials(),
        client_options={"api_endpoint": client.doc["cloud_tasks"]["endpoint"]},
    )
    tasks.pause_queue(name=queue)  # the seat waits in the queue, held
    late, payment_id = _seat(client, session["sessionId"], 9)
    assert client.notify(payment_id)["status"] == 200
    assert client.booking(late)["status"] == "paid"
    event_id = event_id_for_session(session["sessionId"])
    client.calendar.events().delete(
        calendarId=client.doc["calendar_id"], eventId=event_id
    ).execute()
    _eventually(
        lambda: (
            client.db.collection("class_sessions")
            .document(session["sessionId"])
            .get()
            .get("status")
            == "cancelled"
        )
    )

    tasks.resume_queue(name=queue)

    _eventually(lambda: client.booking(late)["status"] == "cancelled")
    booking = client.booking(late)
    assert booking["needsAttention"] == "event_cancelled"
    guests = [a["email"] for a in client.event(event_id).get("attendees", [])]
    assert "estudiante9@example.com" not in guests
    notice = client.db.collection("seat_notices").document(f"{late}-joined").get()
    assert not notice.exists


@pytest.mark.parametrize(
    "body",
    [
        {"title": "", "teacher": {"email": "a@b.c"}, "capacity": 3},
        {"title": "x", "teacher": {"email": "a@b.c"}, "capacity": 0},
        {"sessionId": "a/b", "action": "cancel"},
        {"sessionId": "x", "action": "explode"},
        ["not", "an", "object"],
    ],
)
def test_bad_session_requests_are_400(client: StackClient, body: Any) -> None:
    answer = _sessions(client, body)
    assert answer.status_code == 400
    assert "error" in answer.json()


def test_reconcile_puts_back_a_paid_seat_and_reports_a_stranger(client: StackClient) -> None:
    from shared.clock import Deadline
    from shared.services.reconcile import sweep

    session = _new_session(client, 3)
    _, payment_id = _seat(client, session["sessionId"], 0)
    assert client.notify(payment_id)["status"] == 200
    event_id = event_id_for_session(session["sessionId"])
    strangers = [{"email": "ana.gomez@example.com"}, {"email": "colado@example.com"}]
    client.calendar.events().patch(
        calendarId=client.doc["calendar_id"], eventId=event_id, body={"attendees": strangers}
    ).execute()  # someone edited the guest list by hand: the student is gone, a stranger in

    run = sweep(Deadline(20))

    assert run.counts["seat_missing"] == {"found": 1, "healed": 1}
    assert run.counts["attendee_without_seat"]["found"] == 1
    guests = {a["email"] for a in client.event(event_id)["attendees"]}
    assert "estudiante0@example.com" in guests


def test_the_admin_listing_shows_a_session_once_with_its_seats(client: StackClient) -> None:
    session = _new_session(client, 5)
    for n in range(2):
        _, payment_id = _seat(client, session["sessionId"], n)
        client.notify(payment_id)

    listed = requests.get(
        client.doc["functions"]["list_events"],
        params={"from": iso(SESSION_DAY, 0), "to": iso(SESSION_DAY + 1, 0)},
        headers={"X-API-Key": client.doc["secrets"]["admin_api_key"]},
        timeout=30,
    ).json()["events"]

    assert len(listed) == 1
    assert listed[0]["session"]["sessionId"] == session["sessionId"]
    assert (listed[0]["session"]["capacity"], listed[0]["session"]["seatsTaken"]) == (5, 2)
