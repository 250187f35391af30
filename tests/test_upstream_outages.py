"""One upstream down at a time: every function answers within its budget, 503 where the
sender should retry, and nothing is written half-done."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator

import pytest
import requests

from devstack.client import StackClient
from shared.adapters.clients import reset_clients

pytestmark = pytest.mark.usefixtures("stack")

BUDGET = 3.0
SLACK = 6.0  # one upstream attempt may still be running when the budget ends (its timeout)


@pytest.fixture(autouse=True)
def short_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HANDLER_BUDGET_SECONDS", str(BUDGET))
    monkeypatch.setenv("UPSTREAM_TIMEOUT_SECONDS", "1")
    reset_clients()


@contextlib.contextmanager
def black_hole() -> Iterator[str]:
    """A loopback port that accepts connections and never answers (a hung upstream)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(64)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            with contextlib.suppress(OSError):
                held.append(server.accept()[0])

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.getsockname()[1]}"
    finally:
        stop.set()
        thread.join()
        for conn in held:
            conn.close()
        server.close()


def _timed(call: object) -> tuple[requests.Response, float]:
    started = time.monotonic()
    response = call()  # type: ignore[operator]
    return response, time.monotonic() - started


def _list(client: StackClient) -> requests.Response:
    return requests.get(
        client.doc["functions"]["list_events"],
        headers={"X-API-Key": client.doc["secrets"]["admin_api_key"]},
        timeout=60,
    )


def test_secret_manager_down_answers_503_within_the_budget_and_writes_nothing(
    client: StackClient,
) -> None:
    booking_id = client.seed_booking()
    payment = client.create_payment(booking_id)
    client.set_faults("secretmanager", {"rules": [{"status": 503}]})

    delivery, webhook_seconds = _timed(lambda: client.notify(payment["id"]))
    listing, listing_seconds = _timed(lambda: _list(client))

    assert delivery["status"] == 503
    assert listing.status_code == 503
    assert max(webhook_seconds, listing_seconds) < BUDGET + SLACK
    assert client.booking(booking_id)["status"] == "awaiting_payment"
    assert client.events_for_booking(booking_id) == []


def test_mercado_pago_down_answers_503_within_the_budget_and_writes_nothing(
    client: StackClient,
) -> None:
    booking_id = client.seed_booking()
    payment = client.create_payment(booking_id)
    client.set_faults("mercadopago", {"rules": [{"status": 503, "pathContains": "/v1/payments/"}]})

    delivery, seconds = _timed(lambda: client.notify(payment["id"]))

    assert delivery["status"] == 503
    assert seconds < BUDGET + SLACK
    assert client.booking(booking_id)["status"] == "awaiting_payment"
    assert client.events_for_booking(booking_id) == []


def test_firestore_hung_answers_503_within_the_budget_and_creates_no_event(
    client: StackClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    listed = client.seed_booking()  # a class on the calendar: listing it needs its booking
    assert client.notify(client.create_payment(listed)["id"])["status"] == 200
    booking_id = client.seed_booking()
    payment = client.create_payment(booking_id)
    with black_hole() as address:
        monkeypatch.setenv("FIRESTORE_EMULATOR_HOST", address)
        reset_clients()
        delivery, webhook_seconds = _timed(lambda: client.notify(payment["id"]))
        listing, listing_seconds = _timed(lambda: _list(client))
    monkeypatch.setenv("FIRESTORE_EMULATOR_HOST", client.doc["emulators"]["firestore"])
    reset_clients()

    assert delivery["status"] == 503
    assert listing.status_code == 503
    assert max(webhook_seconds, listing_seconds) < BUDGET + SLACK
    assert client.booking(booking_id)["status"] == "awaiting_payment"
    assert client.events_for_booking(booking_id) == []


def test_calendar_down_keeps_the_payment_and_answers_503_within_the_budget(
    client: StackClient,
) -> None:
    booking_id = client.seed_booking()
    payment = client.create_payment(booking_id)
    client.set_faults("calendar", {"rules": [{"status": 503}]})

    delivery, webhook_seconds = _timed(lambda: client.notify(payment["id"]))
    listing, listing_seconds = _timed(lambda: _list(client))

    assert delivery["status"] == 503
    assert listing.status_code == 503
    assert max(webhook_seconds, listing_seconds) < BUDGET + SLACK
    booking = client.booking(booking_id)
    assert (booking["status"], booking["calendarStatus"]) == ("paid", "pending_creation")


def test_google_token_endpoint_down_keeps_the_payment_and_answers_503(
    client: StackClient,
) -> None:
    booking_id = client.seed_booking()
    payment = client.create_payment(booking_id)
    client.set_faults("oauth", {"rules": [{"status": 503, "pathContains": "token"}]})

    delivery, seconds = _timed(lambda: client.notify(payment["id"]))

    assert delivery["status"] == 503
    assert seconds < BUDGET + SLACK
    booking = client.booking(booking_id)
    assert (booking["status"], booking["calendarStatus"]) == ("paid", "pending_creation")
    client.clear_faults("oauth")
    assert client.events_for_booking(booking_id) == []
