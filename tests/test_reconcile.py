"""The reconcile sweep finishes paid bookings that have no Calendar event yet."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import requests

from devstack.client import StackClient
from devstack.when import CLASS_DAYS_AHEAD, iso
from shared.clock import Deadline
from shared.services.reconcile import sweep

# The seeded booking's class (client.seed_booking), as its Calendar event says it.
CLASS_START = iso(CLASS_DAYS_AHEAD, 18)
CLASS_END = iso(CLASS_DAYS_AHEAD, 19)


def _paid_without_event(client: StackClient, monkeypatch: pytest.MonkeyPatch) -> str:
    from shared.adapters.clients import reset_clients

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

    first = sweep(Deadline(10)).outcomes
    second = sweep(Deadline(10)).outcomes

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

    outcomes = sweep(Deadline(2.5)).outcomes

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

    outcomes = sweep(Deadline(10)).outcomes

    assert outcomes == []  # the refund took it out of the queue
    booking = client.booking(booking_id)
    assert (booking["status"], booking["paymentStatus"]) == ("refunded", "refunded")
    assert client.events_for_booking(booking_id) == []


def test_reconcile_adopting_a_cancelled_event_cancels_the_booking(
    client: StackClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    from shared.domain.bookings import event_id_for_booking

    booking_id = _paid_without_event(client, monkeypatch)
    events = client.calendar.events()
    calendar_id = client.doc["calendar_id"]
    body = {
        "id": event_id_for_booking(booking_id),
        "summary": "created, then deleted by a teacher",
        "start": {"dateTime": CLASS_START},
        "end": {"dateTime": CLASS_END},
        "extendedProperties": {"private": {"bookingId": booking_id}},
    }
    events.insert(calendarId=calendar_id, body=body).execute()
    events.delete(calendarId=calendar_id, eventId=body["id"]).execute()

    sweep(Deadline(10))

    booking = client.booking(booking_id)
    assert booking["status"] == "cancelled"
    assert booking["calendarStatus"] == "cancelled"
    assert booking["needsAttention"] == "event_cancelled"


def test_reconcile_records_a_meet_link_that_was_still_pending(
    client: StackClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    from shared.adapters.clients import reset_clients

    monkeypatch.setenv("HANDLER_BUDGET_SECONDS", "1.5")
    reset_clients()
    requests.post(f"{_calendar_control(client)}/conference", json={"pendingGets": 4}, timeout=5)
    booking_id = client.seed_booking()
    assert client.notify(client.create_payment(booking_id)["id"])["status"] == 200
    assert client.booking(booking_id)["conferenceStatus"] == "pending"

    # Each sweep looks once (no insert, no waiting) until Meet has the link.
    sweeps = [sweep(Deadline(10)).outcomes for _ in range(5)]

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

    assert sweep(Deadline(10)).outcomes == []


def _healed(run: object) -> int:
    return sum(kind["healed"] for kind in run.counts.values())  # type: ignore[attr-defined]


def test_one_call_heals_a_backlog_of_120_left_by_a_calendar_outage(client: StackClient) -> None:
    backlog = [
        client.seed_booking(
            status="paid",
            calendarStatus="pending_creation",
            paymentId=str(9000 + n),
            paymentStatus="approved",
        )
        for n in range(120)
    ]

    run = sweep(Deadline(50))
    again = sweep(Deadline(50))

    assert run.counts["waiting_for_event"] == {"found": 120, "healed": 120}
    assert not run.remaining
    assert {client.booking(b)["status"] for b in backlog} == {"scheduled"}
    assert _healed(again) == 0  # a run right after another changes nothing


def test_an_event_whose_booking_is_refunded_or_missing_is_cancelled(client: StackClient) -> None:
    from shared.domain.bookings import event_id_for_booking

    refunded = client.seed_booking(status="refunded", paymentId="1", paymentStatus="refunded")
    missing = "bk-deleted-since"
    for booking_id in (refunded, missing):
        client.calendar.events().insert(
            calendarId=client.doc["calendar_id"],
            body={
                "id": event_id_for_booking(booking_id),
                "summary": "a class nobody should attend",
                "start": {"dateTime": CLASS_START},
                "end": {"dateTime": CLASS_END},
                "extendedProperties": {"private": {"bookingId": booking_id}},
            },
        ).execute()

    run = sweep(Deadline(20))

    assert run.counts["orphan_event"] == {"found": 2, "healed": 2}
    assert client.events_for_booking(refunded) == []
    assert client.events_for_booking(missing) == []


def test_a_scheduled_class_whose_event_is_gone_is_flagged_for_admins(client: StackClient) -> None:
    booking_id = client.seed_booking(  # its class is upcoming: CLASS_START
        status="scheduled",
        googleEventId="nosucheventinthecalendar",
        calendarStatus="confirmed",
    )

    run = sweep(Deadline(20))
    again = sweep(Deadline(20))

    assert run.counts["event_missing"]["found"] == 1
    booking = client.booking(booking_id)
    assert (booking["calendarStatus"], booking["needsAttention"]) == ("missing", "event_missing")
    assert "event_missing" not in again.counts


def test_a_payment_that_came_before_its_booking_is_applied_once_the_booking_exists(
    client: StackClient,
) -> None:
    booking_id = "bk-created-late"
    payment = client.create_payment(booking_id)
    assert client.notify(payment["id"])["status"] == 200  # unknown_booking, recorded
    client.seed_booking(booking_id)

    run = sweep(Deadline(20))

    assert run.counts["unknown_booking"] == {"found": 1, "healed": 1}
    assert client.booking(booking_id)["status"] == "scheduled"
    issue = client.db.collection("payment_issues").document(f"{payment['id']}-unknown_booking")
    assert issue.get().to_dict()["resolution"] == "scheduled"
    assert "unknown_booking" not in sweep(Deadline(20)).counts


def test_a_payment_left_pending_is_read_again(client: StackClient) -> None:
    booking_id = client.seed_booking()
    payment = client.create_payment(booking_id, status="pending")
    assert client.notify(payment["id"])["status"] == 200
    assert client.booking(booking_id)["paymentStatus"] == "pending"
    client.db.collection("bookings").document(booking_id).update(
        {"updatedAt": datetime.now(UTC) - timedelta(hours=2)}
    )
    requests.patch(
        f"{client.doc['emulators']['mercadopago']}/_emulator/mercadopago/payments/{payment['id']}",
        json={"status": "approved"},
        timeout=10,
    ).raise_for_status()

    run = sweep(Deadline(20))

    assert run.counts["payment_pending"] == {"found": 1, "healed": 1}
    assert client.booking(booking_id)["status"] == "scheduled"
