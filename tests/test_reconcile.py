"""The reconcile sweep finishes paid bookings that have no Calendar event yet."""

from __future__ import annotations

import pytest
import requests

from devstack.client import StackClient
from shared.scheduling import reconcile_bookings
from shared.upstream import Deadline


def _paid_without_event(client: StackClient, monkeypatch: pytest.MonkeyPatch) -> str:
    from shared.clients import reset_clients

    monkeypatch.setenv("HANDLER_BUDGET_SECONDS", "1")
    reset_clients()
    booking_id = client.seed_booking()
    payment = client.create_payment(booking_id)
    client.set_faults("calendar", {"rules": [{"status": 503, "method": "POST"}]})
    assert client.notify(payment["id"])["status"] == 503
    client.clear_faults("calendar")
    monkeypatch.delenv("HANDLER_BUDGET_SECONDS")
    reset_clients()
    return booking_id


def test_reconcile_creates_the_missing_event_once(
    client: StackClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    booking_id = _paid_without_event(client, monkeypatch)
    assert client.booking(booking_id)["status"] == "paid"

    first = reconcile_bookings(Deadline(10))
    second = reconcile_bookings(Deadline(10))

    assert [o.outcome for o in first] == ["scheduled"]
    assert second == []
    booking = client.booking(booking_id)
    assert booking["status"] == "scheduled"
    assert booking["meetLink"]
    assert len(client.events_for_booking(booking_id)) == 1


def test_reconcile_stops_at_a_transient_failure_and_keeps_the_booking_paid(
    client: StackClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    booking_id = _paid_without_event(client, monkeypatch)
    client.set_faults("calendar", {"rules": [{"status": 503}]})

    outcomes = reconcile_bookings(Deadline(2.5))

    assert [o.outcome for o in outcomes] == ["retry_later"]
    assert client.booking(booking_id)["status"] == "paid"


def test_reconcile_function_runs_for_an_admin_and_refuses_strangers(
    client: StackClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    booking_id = _paid_without_event(client, monkeypatch)
    url = client.doc["functions"]["reconcile"]

    stranger = requests.post(url, timeout=30)
    admin = requests.post(
        url, headers={"X-API-Key": client.doc["secrets"]["admin_api_key"]}, timeout=30
    )

    assert stranger.status_code == 401
    assert admin.status_code == 200
    assert admin.json()["bookings"][0]["bookingId"] == booking_id
    assert client.booking(booking_id)["status"] == "scheduled"


def _calendar_control(client: StackClient) -> str:
    return client.doc["emulators"]["calendar"].split("/calendar/v3/")[0] + "/_emulator/calendar"


def test_reconcile_leaves_a_refunded_booking_without_a_class(
    client: StackClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    booking_id = _paid_without_event(client, monkeypatch)
    payment_id = client.booking(booking_id)["paymentId"]
    requests.patch(
        f"{client.doc['emulators']['mercadopago']}/_emulator/mercadopago/payments/{payment_id}",
        json={"status": "refunded"},
        timeout=10,
    ).raise_for_status()
    assert client.notify(payment_id)["status"] == 200

    outcomes = reconcile_bookings(Deadline(10))

    assert outcomes == []  # the refund took it out of the queue
    booking = client.booking(booking_id)
    assert (booking["status"], booking["paymentStatus"]) == ("refunded", "refunded")
    assert client.events_for_booking(booking_id) == []


def test_reconcile_adopting_a_cancelled_event_cancels_the_booking(
    client: StackClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    from shared.bookings import event_id_for_booking

    booking_id = _paid_without_event(client, monkeypatch)
    events = client.calendar.events()
    calendar_id = client.doc["calendar_id"]
    body = {
        "id": event_id_for_booking(booking_id),
        "summary": "created, then deleted by a teacher",
        "start": {"dateTime": "2026-12-01T18:00:00-03:00"},
        "end": {"dateTime": "2026-12-01T19:00:00-03:00"},
        "extendedProperties": {"private": {"bookingId": booking_id}},
    }
    events.insert(calendarId=calendar_id, body=body).execute()
    events.delete(calendarId=calendar_id, eventId=body["id"]).execute()

    reconcile_bookings(Deadline(10))

    booking = client.booking(booking_id)
    assert booking["status"] == "cancelled"
    assert booking["calendarStatus"] == "cancelled"
    assert booking["needsAttention"] == "event_cancelled"


def test_reconcile_records_a_meet_link_that_was_still_pending(
    client: StackClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    from shared.clients import reset_clients

    monkeypatch.setenv("HANDLER_BUDGET_SECONDS", "1.5")
    reset_clients()
    requests.post(f"{_calendar_control(client)}/conference", json={"pendingGets": 4}, timeout=5)
    booking_id = client.seed_booking()
    assert client.notify(client.create_payment(booking_id)["id"])["status"] == 200
    assert client.booking(booking_id)["conferenceStatus"] == "pending"

    # Each sweep looks once (no insert, no waiting) until Meet has the link.
    sweeps = [reconcile_bookings(Deadline(10)) for _ in range(5)]

    outcomes = [o.outcome for sweep in sweeps for o in sweep]
    assert outcomes[-1] == "meet_link_recorded"
    assert set(outcomes[:-1]) <= {"meet_link_pending"}
    booking = client.booking(booking_id)
    assert booking["conferenceStatus"] == "success"
    assert booking["meetLink"].startswith("https://meet.google.com/")


def test_reconcile_never_reschedules_a_cancelled_booking(client: StackClient) -> None:
    client.seed_booking(
        status="cancelled",
        paymentId="1",
        paymentStatus="approved",
        conferenceStatus="pending",
        calendarStatus="cancelled",
        googleEventId="abcdefghij",
    )

    assert reconcile_bookings(Deadline(10)) == []
