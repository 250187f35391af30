"""A class's whole life against the emulators: refunds cancel it, even mid-creation."""

from __future__ import annotations

import concurrent.futures
import time

import pytest
import requests

from devstack.client import StackClient
from shared.adapters.clients import reset_clients
from shared.clock import Deadline
from shared.domain.bookings import event_id_for_booking
from shared.services.reconcile import sweep

pytestmark = pytest.mark.usefixtures("stack")

SLOW_INSERT = {"latencyMs": 2500, "method": "POST", "pathContains": "/events", "count": 1}


def _set_payment_status(client: StackClient, payment_id: object, status: str) -> None:
    requests.patch(
        f"{client.doc['emulators']['mercadopago']}/_emulator/mercadopago/payments/{payment_id}",
        json={"status": status},
        timeout=10,
    ).raise_for_status()


def test_a_refund_after_scheduling_cancels_the_class_and_tells_both_people(
    client: StackClient,
) -> None:
    booking_id = client.seed_booking()
    payment = client.create_payment(booking_id)
    assert client.notify(payment["id"])["status"] == 200
    meet_link = client.booking(booking_id)["meetLink"]

    _set_payment_status(client, payment["id"], "refunded")
    assert client.notify(payment["id"], action="payment.updated")["status"] == 200
    assert client.notify(payment["id"], action="payment.updated")["status"] == 200

    booking = client.booking(booking_id)
    assert (booking["status"], booking["calendarStatus"]) == ("refunded", "cancelled")
    assert booking["meetLink"] == meet_link  # kept for the record
    assert client.event(event_id_for_booking(booking_id))["status"] == "cancelled"
    cancellations = [
        i for i in client.invitations(event_id_for_booking(booking_id)) if i["action"] == "cancel"
    ]
    assert len(cancellations) == 1
    assert sorted(cancellations[0]["recipients"]) == [
        "ana.gomez@example.com",
        "juan.perez@example.com",
    ]


def test_refund_during_event_creation_cancels_the_class(client: StackClient) -> None:
    booking_id = client.seed_booking()
    payment = client.create_payment(booking_id)
    client.set_faults("calendar", {"rules": [SLOW_INSERT]})

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        approval = pool.submit(client.notify, payment["id"])
        time.sleep(0.8)
        _set_payment_status(client, payment["id"], "refunded")
        refund = client.notify(payment["id"], action="payment.updated")
        approved = approval.result()

    assert (approved["status"], refund["status"]) == (200, 200)
    assert client.booking(booking_id)["status"] == "refunded"
    assert client.events_for_booking(booking_id) == []  # no confirmed event is left
    assert client.event(event_id_for_booking(booking_id))["status"] == "cancelled"


def test_refund_while_reconcile_creates_the_event_cancels_the_class(
    client: StackClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HANDLER_BUDGET_SECONDS", "1.5")
    reset_clients()
    booking_id = client.seed_booking()
    payment = client.create_payment(booking_id)
    client.set_faults("calendar", {"rules": [{"status": 503, "method": "POST"}]})
    assert client.notify(payment["id"])["status"] == 503
    assert client.booking(booking_id)["calendarStatus"] == "pending_creation"
    client.set_faults("calendar", {"rules": [SLOW_INSERT]})

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        sweep_run = pool.submit(sweep, Deadline(10))
        time.sleep(0.8)
        _set_payment_status(client, payment["id"], "refunded")
        refund = client.notify(payment["id"], action="payment.updated")
        outcomes = sweep_run.result().outcomes

    assert refund["status"] == 200
    assert [o.outcome for o in outcomes] == ["settled_meanwhile"]
    assert client.booking(booking_id)["status"] == "refunded"
    assert client.events_for_booking(booking_id) == []
    assert client.event(event_id_for_booking(booking_id))["status"] == "cancelled"


def test_a_partial_refund_keeps_the_class_and_tells_admins(client: StackClient) -> None:
    booking_id = client.seed_booking()
    payment = client.create_payment(booking_id)
    assert client.notify(payment["id"])["status"] == 200
    client.refund_payment(payment["id"], amount=5000)

    assert client.notify(payment["id"], action="payment.updated")["status"] == 200

    booking = client.booking(booking_id)
    assert booking["status"] == "scheduled"
    assert booking["amountRefunded"] == "5000.00"
    issue = client.db.collection("payment_issues").document(f"{payment['id']}-partial_refund")
    assert issue.get().to_dict()["refunded"] == "5000.00"
