"""A class that has begun is never scheduled: late approvals, late seats, reconcile, admins.

Mercado Pago may approve a cash voucher days after the class it paid for. Every class time
here is computed from the clock (a class "that began 10 minutes ago"), so these tests mean
the same on any date.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest
import requests

from devstack.client import StackClient
from devstack.when import ZONE
from shared.adapters.clients import reset_clients
from shared.clock import Deadline
from shared.domain.seats import event_id_for_session
from shared.services.reconcile import sweep

pytestmark = pytest.mark.usefixtures("stack")


def _class_at(start: datetime, minutes: int = 60) -> dict[str, str]:
    return {"start": start.isoformat(), "end": (start + timedelta(minutes=minutes)).isoformat()}


def _began(ago: timedelta) -> dict[str, str]:
    """The times of a class that began `ago` before now, in Buenos Aires time."""
    return _class_at((datetime.now(ZONE) - ago).replace(microsecond=0))


def _in_days(days: int, hour: int = 18) -> dict[str, str]:
    start = (datetime.now(ZONE) + timedelta(days=days)).replace(
        hour=hour, minute=0, second=0, microsecond=0
    )
    return _class_at(start)


def _refunds(client: StackClient, payment_id: object) -> list[dict[str, Any]]:
    answer = requests.get(
        f"{client.doc['emulators']['mercadopago']}/v1/payments/{payment_id}/refunds",
        headers={"Authorization": f"Bearer {client.mercadopago_access_token()}"},
        timeout=10,
    )
    answer.raise_for_status()
    refunds: list[dict[str, Any]] = answer.json()
    return refunds


def _issue(client: StackClient, payment_id: object) -> dict[str, Any]:
    snapshot = client.db.collection("payment_issues").document(f"{payment_id}-late_payment").get()
    assert snapshot.exists, "no late_payment issue was recorded"
    return snapshot.to_dict() or {}


def _assert_paid_late(
    client: StackClient, booking_id: str, payment_id: object, invited_before: int = 0
) -> None:
    booking = client.booking(booking_id)
    assert booking["status"] == "paid_late"
    assert booking["calendarStatus"] == "too_late"
    assert booking["needsAttention"] == "late_payment"
    assert booking["paymentId"] == str(payment_id)
    assert "googleEventId" not in booking and "meetLink" not in booking
    assert client.events_for_booking(booking_id) == []
    assert len(client.invitations()) == invited_before  # nobody was invited
    issue = _issue(client, payment_id)
    assert issue["bookingId"] == booking_id
    assert issue["classStart"] == datetime.fromisoformat(booking["start"]).isoformat()
    assert issue["approvedAt"] and issue["decidedAt"]


def test_a_payment_approved_the_day_after_its_class_creates_no_event(
    client: StackClient,
) -> None:
    booking_id = client.seed_booking(**_began(timedelta(days=1)))
    payment = client.create_payment(booking_id)

    delivery = client.notify(payment["id"])

    assert delivery["status"] == 200
    assert '"paid_late"' in delivery["body"]
    _assert_paid_late(client, booking_id, payment["id"])


def test_a_payment_approved_ten_minutes_into_the_class_creates_no_event(
    client: StackClient,
) -> None:
    booking_id = client.seed_booking(**_began(timedelta(minutes=10)))
    payment = client.create_payment(booking_id)

    assert client.notify(payment["id"])["status"] == 200
    assert client.notify(payment["id"])["status"] == 200  # Mercado Pago delivers again

    _assert_paid_late(client, booking_id, payment["id"])
    assert _refunds(client, payment["id"]) == []  # an admin decides: the refund is offered


def test_a_cash_voucher_approved_after_its_class_has_passed_creates_no_event(
    client: StackClient,
) -> None:
    # The preference was made three days ago for a class that took place yesterday; the
    # student printed a Rapipago voucher and paid it only now.
    booking_id = client.seed_booking(
        **_began(timedelta(days=1)),
        createdAt=datetime.now(ZONE) - timedelta(days=3),
    )
    voucher = client.create_payment(
        booking_id,
        status="pending",
        status_detail="pending_waiting_payment",
        payment_type_id="ticket",
        payment_method_id="rapipago",
    )
    assert client.notify(voucher["id"])["status"] == 200
    assert client.booking(booking_id)["status"] == "awaiting_payment"

    client._mp("PATCH", f"/_emulator/mercadopago/payments/{voucher['id']}", {"status": "approved"})
    assert client.notify(voucher["id"])["status"] == 200

    _assert_paid_late(client, booking_id, voucher["id"])


def test_a_late_payment_is_refunded_once_when_configured(
    client: StackClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AUTO_REFUND_LATE_PAYMENTS", "true")
    reset_clients()
    booking_id = client.seed_booking(**_began(timedelta(hours=2)))
    payment = client.create_payment(booking_id)

    assert client.notify(payment["id"])["status"] == 200
    client.webhook_deliveries(wait=1)  # the refund's own notification reached the webhook
    assert client.notify(payment["id"])["status"] == 200  # a late redelivery of the approval

    assert len(_refunds(client, payment["id"])) == 1
    booking = client.booking(booking_id)
    assert booking["status"] == "refunded"
    assert booking["paymentStatus"] == "refunded"
    assert client.events_for_booking(booking_id) == []
    assert client.invitations() == []
    assert _issue(client, payment["id"])["bookingId"] == booking_id


def _as_admin(client: StackClient, function: str, body: dict[str, Any]) -> requests.Response:
    return requests.post(
        client.doc["functions"][function],
        json=body,
        headers={"X-API-Key": client.doc["secrets"]["admin_api_key"]},
        timeout=60,
    )


def _sessions(client: StackClient, body: dict[str, Any]) -> requests.Response:
    return _as_admin(client, "class_sessions", body)


def _session_body(times: dict[str, str], **overrides: Any) -> dict[str, Any]:
    return {
        "title": "Guitarra en grupo",
        "teacher": {"name": "Ana Gómez", "email": "ana.gomez@example.com"},
        "capacity": 5,
        "price": {"amount": 15000, "currency": "ARS"},
        **times,
        **overrides,
    }


def test_a_seat_paid_after_its_session_began_takes_no_seat(client: StackClient) -> None:
    created = _sessions(client, _session_body(_in_days(3)))
    assert created.status_code == 201, created.text
    session_id = created.json()["sessionId"]
    # Time passes: the session began five minutes ago when the seat's payment is approved.
    began = _began(timedelta(minutes=5))
    client.db.collection("class_sessions").document(session_id).update(began)
    booking_id = client.seed_booking(
        sessionId=session_id,
        student={"name": "Tardía", "email": "tardia@example.com"},
        **began,
    )
    payment = client.create_payment(booking_id)
    invited = len(client.invitations())  # the teacher, when the session was created

    assert client.notify(payment["id"])["status"] == 200

    _assert_paid_late(client, booking_id, payment["id"], invited)
    session = client.db.collection("class_sessions").document(session_id).get().to_dict() or {}
    assert session["seats"] == {} and session["seatsTaken"] == 0
    guests = {a["email"] for a in client.event(event_id_for_session(session_id))["attendees"]}
    assert "tardia@example.com" not in guests
    assert _issue(client, payment["id"])["sessionId"] == session_id


def test_reconcile_reports_a_paid_class_that_has_begun_instead_of_creating_it(
    client: StackClient,
) -> None:
    # Paid in time, but Calendar was down until after the class began.
    booking_id = client.seed_booking(
        **_began(timedelta(minutes=30)),
        status="paid",
        paymentId="4242",
        paymentStatus="approved",
        calendarStatus="pending_creation",
    )

    run = sweep(Deadline(10))

    assert [o.outcome for o in run.outcomes] == ["paid_late"]
    assert run.counts["waiting_for_event"] == {"found": 1, "healed": 0}
    booking = client.booking(booking_id)
    assert booking["status"] == "paid_late"
    assert booking["needsAttention"] == "late_payment"
    assert client.events_for_booking(booking_id) == []
    assert client.invitations() == []
    assert _issue(client, "4242")["bookingId"] == booking_id
    assert sweep(Deadline(10)).outcomes == []  # reported once, never healed


def _manage(client: StackClient, body: dict[str, Any]) -> requests.Response:
    return _as_admin(client, "manage_booking", body)


def test_a_class_cannot_be_rescheduled_to_a_time_that_has_begun(client: StackClient) -> None:
    booking_id = client.seed_booking()
    payment = client.create_payment(booking_id)
    assert client.notify(payment["id"])["status"] == 200
    before = client.booking(booking_id)
    [event] = client.events_for_booking(booking_id)

    answer = _manage(
        client,
        {"bookingId": booking_id, "action": "reschedule", **_began(timedelta(hours=1))},
    )

    assert answer.status_code == 400
    assert answer.json()["error"]["parameter"] == "start"
    assert client.booking(booking_id)["start"] == before["start"]
    [unchanged] = client.events_for_booking(booking_id)
    assert unchanged["start"] == event["start"]


def test_a_session_cannot_be_created_or_moved_to_a_time_that_has_begun(
    client: StackClient,
) -> None:
    past = _sessions(client, _session_body(_began(timedelta(minutes=1))))
    assert past.status_code == 400
    assert past.json()["error"]["parameter"] == "start"
    assert list(client.db.collection("class_sessions").stream()) == []

    created = _sessions(client, _session_body(_in_days(4)))
    assert created.status_code == 201, created.text
    session_id = created.json()["sessionId"]
    moved = _sessions(
        client,
        {"sessionId": session_id, "action": "reschedule", **_began(timedelta(days=1))},
    )
    assert moved.status_code == 400
    assert moved.json()["error"]["parameter"] == "start"
    stored = client.db.collection("class_sessions").document(session_id).get().to_dict() or {}
    assert stored["start"] == created.json()["start"]
