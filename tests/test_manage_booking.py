"""manage_booking against the emulators: admins cancel, refund and move classes, once."""

from __future__ import annotations

import concurrent.futures
from typing import Any

import pytest
import requests

from devstack.client import StackClient
from devstack.when import CLASS_DAYS_AHEAD, day, iso, wall
from shared.domain.bookings import event_id_for_booking

pytestmark = pytest.mark.usefixtures("stack")

DAY = CLASS_DAYS_AHEAD
"""The default seeded class is on this day (in days from today), 18:00 to 19:00."""
MOVE_DAY = DAY + 2
"""A free day to move a class to."""
BUSY_DAY = DAY + 3
"""A day with other classes of the same teacher."""


def _manage(client: StackClient, body: Any, headers: dict[str, str] | None = None) -> Any:
    return requests.post(
        client.doc["functions"]["manage_booking"],
        json=body,
        headers={"X-API-Key": client.doc["secrets"]["admin_api_key"]}
        if headers is None
        else headers,
        timeout=30,
    )


def _scheduled(client: StackClient, **overrides: Any) -> str:
    booking_id = client.seed_booking(**overrides)
    assert client.notify(client.create_payment(booking_id)["id"])["status"] == 200
    assert client.booking(booking_id)["status"] == "scheduled"
    return booking_id


def test_cancel_tells_both_people_once_and_answers_the_same_twice(client: StackClient) -> None:
    booking_id = _scheduled(client)
    request = {"bookingId": booking_id, "action": "cancel", "reason": "docente enferma"}

    first, second = _manage(client, request), _manage(client, request)

    assert first.status_code == second.status_code == 200
    assert first.json() == second.json()
    assert first.json()["status"] == "cancelled"
    assert client.event(event_id_for_booking(booking_id))["status"] == "cancelled"
    assert len(client.invitations(event_id_for_booking(booking_id), "cancel")) == 1
    booking = client.booking(booking_id)
    assert booking["cancelReason"] == "docente enferma"
    assert booking["cancelledBy"] == "api-key"


def test_cancel_with_refund_refunds_once_and_the_refund_notice_finds_it_cancelled(
    client: StackClient,
) -> None:
    booking_id = _scheduled(client)
    request = {"bookingId": booking_id, "action": "cancel", "refund": True}

    first, second = _manage(client, request), _manage(client, request)

    assert first.json() == second.json()
    refund = first.json()["refund"]
    assert refund["id"] and refund["status"] == "approved"
    payment_id = client.booking(booking_id)["paymentId"]
    assert client.notify(payment_id, action="payment.updated")["status"] == 200
    booking = client.booking(booking_id)
    assert (booking["status"], booking["paymentStatus"]) == ("cancelled", "refunded")
    refunds = client.http.get(
        f"{client.doc['emulators']['mercadopago']}/v1/payments/{payment_id}/refunds",
        headers={"Authorization": f"Bearer {client.mercadopago_access_token()}"},
        timeout=10,
    ).json()
    assert len(refunds) == 1


def test_reschedule_moves_the_class_and_keeps_its_meet_link(client: StackClient) -> None:
    booking_id = _scheduled(client)
    meet_link = client.booking(booking_id)["meetLink"]
    request = {
        "bookingId": booking_id,
        "action": "reschedule",
        "start": wall(MOVE_DAY, 10),
        "end": wall(MOVE_DAY, 11),
    }

    first, second = _manage(client, request), _manage(client, request)

    assert first.status_code == second.status_code == 200
    assert first.json() == second.json()
    assert first.json()["start"] == iso(MOVE_DAY, 10)
    assert first.json()["meetLink"] == meet_link
    event = client.event(event_id_for_booking(booking_id))
    assert event["hangoutLink"] == meet_link
    assert event["start"]["dateTime"].startswith(f"{day(MOVE_DAY).isoformat()}T")
    assert len(client.invitations(event_id_for_booking(booking_id), "update")) == 1
    assert client.booking(booking_id)["start"] == iso(MOVE_DAY, 10)


def test_an_overlapping_reschedule_is_refused_naming_the_other_class(client: StackClient) -> None:
    busy = _scheduled(
        client,
        classTitle="Física",
        start=iso(BUSY_DAY, 10),
        end=iso(BUSY_DAY, 11),
    )
    moved = _scheduled(client)
    request = {
        "bookingId": moved,
        "action": "reschedule",
        "start": iso(BUSY_DAY, 10, 30),
        "end": iso(BUSY_DAY, 11, 30),
    }

    answer = _manage(client, request)

    assert answer.status_code == 409
    assert "Física" in answer.json()["error"]["message"]
    assert client.booking(moved)["start"] == iso(DAY, 18)
    assert client.invitations(event_id_for_booking(moved), "update") == []
    assert client.booking(busy)["status"] == "scheduled"


def test_two_admins_moving_two_classes_into_one_free_hour_move_only_one(
    client: StackClient,
) -> None:
    first = _scheduled(client, start=iso(BUSY_DAY, 8), end=iso(BUSY_DAY, 9))
    second = _scheduled(client, start=iso(BUSY_DAY, 12), end=iso(BUSY_DAY, 13))
    # Each move takes a second at Google: without one change per teacher at a time, both
    # overlap checks would pass before either class had moved.
    client.set_faults(
        "calendar", {"rules": [{"method": "PATCH", "pathContains": "/events", "latencyMs": 1000}]}
    )

    def move(booking_id: str) -> Any:
        return _manage(
            client,
            {
                "bookingId": booking_id,
                "action": "reschedule",
                "start": iso(BUSY_DAY, 15),
                "end": iso(BUSY_DAY, 16),
            },
        )

    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        answers = list(pool.map(move, [first, second]))

    assert sorted(a.status_code for a in answers) == [200, 409], [a.text for a in answers]
    starts = sorted(client.booking(b)["start"] for b in (first, second))
    assert iso(BUSY_DAY, 15) in starts
    assert starts.count(iso(BUSY_DAY, 15)) == 1
    refused = first if answers[0].status_code == 409 else second
    assert client.event(event_id_for_booking(refused))["start"]["dateTime"] != iso(BUSY_DAY, 15)


def test_a_class_cannot_move_into_the_teachers_group_session(client: StackClient) -> None:
    requests.post(
        client.doc["functions"]["class_sessions"],
        json={
            "title": "Guitarra en grupo",
            "teacher": {"name": "Ana Gómez", "email": "ana.gomez@example.com"},
            "start": iso(BUSY_DAY, 15),
            "end": iso(BUSY_DAY, 16),
            "capacity": 5,
            "price": {"amount": 15000, "currency": "ARS"},
        },
        headers={"X-API-Key": client.doc["secrets"]["admin_api_key"]},
        timeout=30,
    ).raise_for_status()
    booking_id = _scheduled(client, teacher={"name": "Ana Gómez", "email": "ana.gomez@example.com"})

    answer = _manage(
        client,
        {
            "bookingId": booking_id,
            "action": "reschedule",
            "start": iso(BUSY_DAY, 15, 30),
            "end": iso(BUSY_DAY, 16, 30),
        },
    )

    assert answer.status_code == 409
    assert "Guitarra en grupo" in answer.json()["error"]["message"]


def test_only_a_scheduled_class_can_be_moved(client: StackClient) -> None:
    booking_id = client.seed_booking()
    request = {
        "bookingId": booking_id,
        "action": "reschedule",
        "start": iso(MOVE_DAY, 10),
        "end": iso(MOVE_DAY, 11),
    }
    assert _manage(client, request).status_code == 409


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"bookingId": "nope", "action": "cancel"}, 404),
        ({"bookingId": "x", "action": "delete"}, 400),
        ({"bookingId": "a/b", "action": "cancel"}, 400),
        ({"bookingId": "x", "action": "cancel", "refund": "yes"}, 400),
        ({"bookingId": "x", "action": "cancel", "start": wall(MOVE_DAY, 10)}, 400),
        ({"bookingId": "x", "action": "reschedule", "start": "mañana", "end": "x"}, 400),
        (
            {
                "bookingId": "x",
                "action": "reschedule",
                "start": wall(MOVE_DAY, 11),
                "end": wall(MOVE_DAY, 10),
            },
            400,
        ),
        (
            {
                "bookingId": "x",
                "action": "reschedule",
                "start": "9999-12-31T23:59:59",
                "end": "9999-12-31T23:59:59+14:00",
            },
            400,
        ),
        (["not", "an", "object"], 400),
    ],
)
def test_bad_requests_get_a_4xx_and_change_nothing(
    client: StackClient, body: Any, status: int
) -> None:
    answer = _manage(client, body)
    assert answer.status_code == status
    assert "error" in answer.json()


def test_strangers_may_not_manage_bookings(client: StackClient) -> None:
    booking_id = _scheduled(client)
    answer = _manage(client, {"bookingId": booking_id, "action": "cancel"}, headers={})
    assert answer.status_code == 401
    assert client.booking(booking_id)["status"] == "scheduled"
