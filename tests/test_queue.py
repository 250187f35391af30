"""The queue between payments and Calendar: the webhook answers at once, Cloud Tasks (the
emulator, dispatching with OIDC tokens) calls schedule_class at its pace."""

from __future__ import annotations

import time
from typing import Any

import pytest
import requests

from devstack.client import StackClient
from shared.adapters.clients import reset_clients

pytestmark = pytest.mark.usefixtures("stack")


@pytest.fixture
def queued(client: StackClient, monkeypatch: pytest.MonkeyPatch) -> str:
    queue: str = client.doc["cloud_tasks"]["queues"]["schedule_class"]
    monkeypatch.setenv("SCHEDULING_QUEUE", queue)
    reset_clients()
    return queue


def _idle(client: StackClient) -> dict[str, Any]:
    base = client.doc["cloud_tasks"]["endpoint"]
    answer: dict[str, Any] = requests.get(
        f"{base}/_emulator/cloudtasks/idle", params={"timeout": 20}, timeout=30
    ).json()
    return answer


def _dispatches(client: StackClient) -> list[dict[str, Any]]:
    base = client.doc["cloud_tasks"]["endpoint"]
    log: list[dict[str, Any]] = requests.get(
        f"{base}/_emulator/cloudtasks/dispatches", timeout=30
    ).json()["dispatches"]
    return log


def _integration_once_limited(client: StackClient) -> dict[str, Any]:
    """The integration status as soon as it records the limit (a paused queue is never idle)."""
    ref = client.db.collection("integrations").document("google_calendar")
    deadline = time.monotonic() + 15
    status: dict[str, Any] = {}
    while time.monotonic() < deadline:
        status = ref.get().to_dict() or {}
        if "limited" in status:
            break
        time.sleep(0.1)
    return status


def _schedule(client: StackClient, booking_id: str, headers: dict[str, str] | None = None) -> Any:
    return requests.post(
        client.doc["functions"]["schedule_class"],
        json={"bookingId": booking_id},
        headers={"X-API-Key": client.doc["secrets"]["admin_api_key"]}
        if headers is None
        else headers,
        timeout=30,
    )


def test_the_webhook_answers_at_once_and_the_queue_creates_the_class(
    client: StackClient, queued: str
) -> None:
    booking_id = client.seed_booking()
    payment = client.create_payment(booking_id)

    deliveries = [
        client.notify(payment["id"], action=a) for a in ("payment.created", "payment.updated")
    ]

    assert [d["status"] for d in deliveries] == [200, 200]
    assert '"queued"' in deliveries[0]["body"]
    assert _idle(client)["idle"]
    booking = client.booking(booking_id)
    assert booking["status"] == "scheduled"
    assert len(client.events_for_booking(booking_id)) == 1
    dispatched = [d for d in _dispatches(client) if d.get("outcome") == "acknowledged"]
    assert len(dispatched) == 1  # two deliveries, one named task


def test_a_rate_limit_tells_the_queue_to_back_off(client: StackClient) -> None:
    booking_id = client.seed_booking(
        status="paid", calendarStatus="pending_creation", paymentId="77", paymentStatus="approved"
    )
    client.set_faults(
        "calendar", {"rules": [{"status": 429, "reason": "rateLimitExceeded", "method": "POST"}]}
    )

    answer = _schedule(client, booking_id)

    assert answer.status_code == 429
    assert int(answer.headers["Retry-After"]) > 0
    assert client.booking(booking_id)["status"] == "paid"


def test_googles_usage_limit_pauses_the_queue_and_nothing_is_lost(
    client: StackClient, queued: str
) -> None:
    calendar = client.doc["emulators"]["calendar"].split("/calendar/v3/")[0]
    requests.post(
        f"{calendar}/_emulator/calendar/quota",
        json={"invitationsPerWindow": 1, "invitationWindowSeconds": 3600},
        timeout=10,
    ).raise_for_status()
    bookings = [client.seed_booking() for _ in range(3)]
    for booking_id in bookings:
        assert client.notify(client.create_payment(booking_id)["id"])["status"] == 200
    status = _integration_once_limited(client)

    assert status["limited"]["reason"] == "quotaExceeded"
    statuses = [client.booking(b)["status"] for b in bookings]
    assert statuses.count("paid") >= 1  # waiting, not lost
    requests.delete(f"{calendar}/_emulator/calendar/quota", timeout=10)

    resumed = requests.post(
        client.doc["functions"]["reconcile"] + "?resumeQueue=1",
        headers={"X-API-Key": client.doc["secrets"]["admin_api_key"]},
        timeout=60,
    )
    # The task refused at the limit was told Retry-After: 600; reconcile finished its booking.
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and any(
        client.booking(b)["status"] != "scheduled" for b in bookings
    ):
        time.sleep(0.1)

    assert resumed.status_code == 200
    assert {client.booking(b)["status"] for b in bookings} == {"scheduled"}
    assert all(len(client.events_for_booking(b)) == 1 for b in bookings)
    status = client.db.collection("integrations").document("google_calendar").get().to_dict()
    assert "limited" not in status


def test_only_the_queue_or_an_admin_may_schedule(client: StackClient) -> None:
    booking_id = client.seed_booking()
    assert _schedule(client, booking_id, headers={}).status_code == 401
    assert _schedule(client, "a/b").status_code == 400
