"""The reconcile sweep finishes paid bookings that have no Calendar event yet."""

from __future__ import annotations

import pytest
import requests

from devstack.client import StackClient
from shared.retry import Deadline
from shared.scheduling import reconcile_bookings


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
