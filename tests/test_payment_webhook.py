"""payment_webhook against the emulators: exactly one event per paid booking."""

from __future__ import annotations

import concurrent.futures
import hashlib
import hmac
import json
import time

import pytest
import requests
from google.cloud.firestore_v1.base_query import FieldFilter

from devstack.client import StackClient
from devstack.when import CLASS_DAYS_AHEAD, iso
from shared.domain.bookings import event_id_for_booking

pytestmark = pytest.mark.usefixtures("stack")


def _deliver(client: StackClient, payment_id: object, **options: object) -> dict[str, object]:
    return client.notify(payment_id, **options)


def test_approved_payment_creates_one_event_with_meet_link(client: StackClient) -> None:
    booking_id = client.seed_booking()
    payment = client.create_payment(booking_id)

    delivery = _deliver(client, payment["id"])

    assert delivery["status"] == 200
    booking = client.booking(booking_id)
    assert booking["status"] == "scheduled"
    assert booking["googleEventId"] == event_id_for_booking(booking_id)
    assert booking["meetLink"].startswith("https://meet.google.com/")
    assert booking["htmlLink"]
    assert booking["calendarStatus"] == "confirmed"
    assert booking["paymentId"] == str(payment["id"])
    assert booking["paymentStatus"] == "approved"
    assert booking["paidAt"] is not None
    [event] = client.events_for_booking(booking_id)
    assert event["hangoutLink"] == booking["meetLink"]
    assert event["start"]["timeZone"] == "America/Argentina/Buenos_Aires"
    assert {a["email"] for a in event["attendees"]} == {
        "ana.gomez@example.com",
        "juan.perez@example.com",
    }
    assert event["transparency"] == "opaque"
    assert event["extendedProperties"]["private"] == {
        "bookingId": booking_id,
        "paymentId": str(payment["id"]),
    }


def test_duplicate_approved_webhooks_create_one_event(client: StackClient) -> None:
    booking_id = client.seed_booking()
    payment = client.create_payment(booking_id)

    first = _deliver(client, payment["id"], action="payment.created")
    client.reset_stats("calendar")
    second = _deliver(client, payment["id"], action="payment.updated")
    ipn = _deliver(client, payment["id"], format="ipn")

    assert [first["status"], second["status"], ipn["status"]] == [200, 200, 200]
    assert json.loads(second["body"])["outcome"] == "already_scheduled"
    assert client.stats("calendar") == {}  # a duplicate costs no Calendar call
    assert len(client.events_for_booking(booking_id)) == 1


def test_twenty_concurrent_deliveries_create_one_event(client: StackClient) -> None:
    booking_id = client.seed_booking()
    payment = client.create_payment(booking_id)

    with concurrent.futures.ThreadPoolExecutor(20) as pool:
        results = list(pool.map(lambda _: _deliver(client, payment["id"]), range(20)))

    assert all(r["status"] == 200 for r in results), [r["status"] for r in results]
    assert len(client.events_for_booking(booking_id)) == 1
    assert client.booking(booking_id)["status"] == "scheduled"


def test_lost_calendar_answer_is_repaired_without_a_second_event(client: StackClient) -> None:
    booking_id = client.seed_booking()
    payment = client.create_payment(booking_id)
    client.set_faults(
        "calendar",
        {
            "rules": [
                {"method": "POST", "pathContains": "/events", "dropResponse": True, "count": 1}
            ]
        },
    )

    first = _deliver(client, payment["id"])
    if first["status"] != 200:  # the handler may have given up: Mercado Pago retries
        assert first["status"] == 503
        first = _deliver(client, payment["id"])

    assert first["status"] == 200
    assert len(client.events_for_booking(booking_id)) == 1
    booking = client.booking(booking_id)
    assert booking["status"] == "scheduled"
    assert booking["googleEventId"] == event_id_for_booking(booking_id)


@pytest.mark.parametrize("status", ["pending", "in_process", "rejected"])
def test_payment_not_approved_updates_payment_state_only(client: StackClient, status: str) -> None:
    booking_id = client.seed_booking()
    payment = client.create_payment(booking_id, status=status)

    delivery = _deliver(client, payment["id"])

    assert delivery["status"] == 200
    booking = client.booking(booking_id)
    assert booking["status"] == "awaiting_payment"
    assert booking["paymentStatus"] == status
    assert "googleEventId" not in booking
    assert client.events_for_booking(booking_id) == []


def test_booking_found_by_preference_when_payment_has_no_external_reference(
    client: StackClient,
) -> None:
    booking_id = client.seed_booking()
    payment = client.create_payment(None, preference_id=f"pref-{booking_id}")

    assert _deliver(client, payment["id"])["status"] == 200
    assert client.booking(booking_id)["status"] == "scheduled"


def test_unknown_booking_is_acknowledged_and_recorded(client: StackClient) -> None:
    payment = client.create_payment("no-such-booking")

    delivery = _deliver(client, payment["id"])

    assert delivery["status"] == 200
    issue = client.db.collection("payment_issues").document(f"{payment['id']}-unknown_booking")
    assert issue.get().exists


def test_amount_mismatch_creates_no_event(client: StackClient) -> None:
    booking_id = client.seed_booking()
    payment = client.create_payment(booking_id, transaction_amount=10)

    assert _deliver(client, payment["id"])["status"] == 200
    assert client.booking(booking_id)["status"] == "awaiting_payment"
    assert client.events_for_booking(booking_id) == []
    issues = client.db.collection("payment_issues").where(
        filter=FieldFilter("kind", "==", "amount_mismatch")
    )
    assert len(list(issues.stream())) == 1


def test_booking_with_invalid_time_zone_gets_no_event(client: StackClient) -> None:
    booking_id = client.seed_booking(timeZone="America/Nowhere")
    payment = client.create_payment(booking_id)

    assert _deliver(client, payment["id"])["status"] == 200
    booking = client.booking(booking_id)
    assert booking["status"] == "paid"
    assert booking["calendarStatus"] == "rejected"  # an admin fixes the booking first
    assert client.events_for_booking(booking_id) == []


def test_booking_ending_before_it_starts_gets_no_event(client: StackClient) -> None:
    booking_id = client.seed_booking(end=iso(CLASS_DAYS_AHEAD, 17))  # the class starts at 18:00
    payment = client.create_payment(booking_id)

    assert _deliver(client, payment["id"])["status"] == 200
    assert client.events_for_booking(booking_id) == []


def test_second_booking_cannot_be_paid_by_the_same_payment(client: StackClient) -> None:
    first = client.seed_booking(preferenceId="pref-shared")
    payment = client.create_payment(None, preference_id="pref-shared")
    assert _deliver(client, payment["id"])["status"] == 200
    # The preference now leads to another booking (edited or re-created by the platform).
    client.db.collection("bookings").document(first).update({"preferenceId": "pref-old"})
    second = client.seed_booking(preferenceId="pref-shared")

    delivery = _deliver(client, payment["id"])

    assert json.loads(delivery["body"])["outcome"] == "payment_already_used"
    assert client.booking(second)["status"] == "awaiting_payment"
    assert client.events_for_booking(second) == []
    claim = client.db.collection("payment_claims").document(str(payment["id"])).get()
    assert claim.to_dict()["bookingId"] == first


def test_burst_of_rate_limits_is_absorbed_by_backoff(client: StackClient) -> None:
    booking_id = client.seed_booking()
    payment = client.create_payment(booking_id)
    client.set_faults(
        "calendar",
        {
            "rules": [
                {"status": 429, "reason": "rateLimitExceeded", "count": 2, "method": "POST"},
                {"status": 403, "reason": "rateLimitExceeded", "count": 1, "method": "POST"},
                {"status": 503, "reason": "backendError", "count": 1, "method": "POST"},
            ]
        },
    )

    assert _deliver(client, payment["id"])["status"] == 200
    assert client.booking(booking_id)["status"] == "scheduled"
    assert len(client.events_for_booking(booking_id)) == 1


def test_budget_exceeded_answers_503_and_marks_booking_paid(
    client: StackClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HANDLER_BUDGET_SECONDS", "1.5")
    from shared.adapters.clients import reset_clients

    reset_clients()
    booking_id = client.seed_booking()
    payment = client.create_payment(booking_id)
    client.set_faults("calendar", {"rules": [{"status": 503, "method": "POST"}]})

    delivery = _deliver(client, payment["id"])

    assert delivery["status"] == 503
    booking = client.booking(booking_id)
    assert booking["status"] == "paid"
    assert booking["calendarStatus"] == "pending_creation"
    assert booking["paymentId"] == str(payment["id"])

    client.clear_faults("calendar")
    assert _deliver(client, payment["id"])["status"] == 200  # Mercado Pago's retry finishes it
    assert client.booking(booking_id)["status"] == "scheduled"


def test_meet_link_exists_because_conference_data_version_is_sent(client: StackClient) -> None:
    booking_id = client.seed_booking()
    payment = client.create_payment(booking_id)
    _deliver(client, payment["id"])

    [event] = client.events_for_booking(booking_id)
    assert event["conferenceData"]["conferenceSolution"]["key"]["type"] == "hangoutsMeet"
    # The same body without conferenceDataVersion=1 gets no conference, as Google does.
    body = {k: v for k, v in event.items() if k in ("summary", "start", "end")}
    body["conferenceData"] = {
        "createRequest": {"requestId": "x1", "conferenceSolutionKey": {"type": "hangoutsMeet"}}
    }
    plain = client.calendar.events().insert(calendarId=client.doc["calendar_id"], body=body)
    assert "hangoutLink" not in plain.execute()


# -- authentication and bad input: 4xx, nothing read or written ------------------------


def _signed_post(
    client: StackClient,
    *,
    data_id: str = "123",
    body: bytes | None = None,
    ts: int | None = None,
    content_type: str = "application/json",
    secret: str | None = None,
    sign_id: str | None = None,
    extra_headers: dict[str, str] | None = None,
    topic: str = "payment",
) -> requests.Response:
    secret = secret or client.doc["secrets"]["mercadopago_webhook_secret"]
    ts = int(time.time()) if ts is None else ts
    request_id = "req-1"
    manifest = f"id:{sign_id if sign_id is not None else data_id};request-id:{request_id};ts:{ts};"
    v1 = hmac.new(secret.encode(), manifest.encode(), hashlib.sha256).hexdigest()
    if body is None:
        body = json.dumps(
            {"type": topic, "action": f"{topic}.updated", "data": {"id": data_id}}
        ).encode()
    return requests.post(
        client.doc["functions"]["payment_webhook"],
        params={"data.id": data_id, "type": topic},
        data=body,
        headers={
            "Content-Type": content_type,
            "x-request-id": request_id,
            "x-signature": f"ts={ts},v1={v1}",
            **(extra_headers or {}),
        },
        timeout=30,
    )


def _nothing_written(client: StackClient) -> bool:
    return (
        list(client.db.collection("bookings").stream()) == []
        and list(client.db.collection("payment_issues").stream()) == []
        and client.stats("mercadopago") == {}
    )


@pytest.mark.parametrize(
    ("case", "kwargs", "status"),
    [
        ("wrong secret", {"secret": "not-the-secret"}, 401),
        ("stale timestamp", {"ts": int(time.time()) - 3600}, 401),
        ("malformed json", {"body": b"{not json"}, 400),
        ("wrong content type", {"content_type": "text/plain"}, 415),
        ("huge body", {"body": b"{" + b" " * 70_000 + b"}"}, 413),
    ],
)
def test_bad_deliveries_are_rejected_and_write_nothing(
    client: StackClient, case: str, kwargs: dict[str, object], status: int
) -> None:
    response = _signed_post(client, **kwargs)  # type: ignore[arg-type]

    assert response.status_code == status, case
    assert response.json()["error"]["code"]
    assert _nothing_written(client)


def test_missing_signature_headers_are_401(client: StackClient) -> None:
    response = requests.post(
        client.doc["functions"]["payment_webhook"],
        params={"data.id": "1", "type": "payment"},
        json={"type": "payment", "data": {"id": "1"}},
        timeout=10,
    )
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "unauthenticated"
    assert _nothing_written(client)


@pytest.mark.parametrize(
    ("unit", "lowercase"), [("s", False), ("ms", False), ("s", True), ("ms", True)]
)
def test_signature_accepted_in_either_casing_and_unit(
    client: StackClient, unit: str, lowercase: bool
) -> None:
    data_id = "AbC123"  # alphanumeric ids are other topics' (payment ids are numbers)
    now = time.time()
    ts = int(now * 1000) if unit == "ms" else int(now)
    response = _signed_post(
        client,
        data_id=data_id,
        ts=ts,
        sign_id=data_id.lower() if lowercase else data_id,
        topic="topic_merchant_order_wh",
    )
    # Authenticated: then ignored, as every topic but payments is.
    assert response.status_code == 200
    assert response.json() == {"outcome": "ignored", "topic": "topic_merchant_order_wh"}


def test_a_signed_unknown_payment_is_acknowledged(client: StackClient) -> None:
    response = _signed_post(client, data_id="98765432101")

    assert response.status_code == 200
    assert response.json() == {"outcome": "payment_not_found"}


@pytest.mark.parametrize(
    "signature",
    [
        "ts=1700000000,v1=\xe9",
        "ts=1700000000,v1=" + "a" * 63 + "\xe9",
        "ts=\xb2,v1=" + "a" * 64,
        "ts=1700000000,ts=1700000001,v1=" + "a" * 64,
        "ts=1700000000",
        "v1=" + "a" * 64,
        "ts=1700000000,v1=" + "a" * 300,
    ],
    ids=["latin-1 byte", "latin-1 last", "superscript ts", "two ts", "no v1", "no ts", "long"],
)
def test_a_malformed_or_non_ascii_signature_header_is_a_401(
    client: StackClient, signature: str
) -> None:
    response = _signed_post(client, extra_headers={"x-signature": signature})

    assert response.status_code == 401
    assert response.json()["error"]["code"] == "unauthenticated"
    assert _nothing_written(client)


def test_a_validly_signed_body_of_thirty_thousand_brackets_is_a_400(client: StackClient) -> None:
    response = _signed_post(client, body=b"[" * 30_000)

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_request"
    assert _nothing_written(client)


@pytest.mark.parametrize("payment_id", ["²", "١٢٣", "ⅷ", "12a", "1" * 21, "-1"])
@pytest.mark.parametrize("source", ["webhook", "ipn"])
def test_a_payment_id_that_is_not_ascii_digits_is_a_400_without_calling_mercado_pago(
    client: StackClient, payment_id: str, source: str
) -> None:
    if source == "webhook":
        response = _signed_post(client, data_id=payment_id)
    else:
        response = requests.post(
            client.doc["functions"]["payment_webhook"],
            params={"topic": "payment", "id": payment_id},
            timeout=30,
        )

    assert response.status_code == 400, response.text
    assert "payment id" in response.json()["error"]["message"]
    assert _nothing_written(client)


def test_other_topics_are_ignored(client: StackClient) -> None:
    response = requests.post(
        client.doc["functions"]["payment_webhook"],
        params={"topic": "merchant_order", "id": "55"},
        timeout=10,
    )
    assert response.status_code == 200
    assert response.json()["outcome"] == "ignored"
    assert _nothing_written(client)


def test_pending_conference_is_fetched_again_until_the_meet_link_exists(
    client: StackClient,
) -> None:
    calendar = client.doc["emulators"]["calendar"].split("/calendar/v3/")[0]
    requests.post(f"{calendar}/_emulator/calendar/conference", json={"pendingGets": 2}, timeout=5)
    booking_id = client.seed_booking()
    payment = client.create_payment(booking_id)

    assert _deliver(client, payment["id"])["status"] == 200

    booking = client.booking(booking_id)
    assert booking["conferenceStatus"] == "success"
    assert booking["meetLink"].startswith("https://meet.google.com/")


def test_mercado_pago_outage_is_retried_within_the_budget(client: StackClient) -> None:
    booking_id = client.seed_booking()
    payment = client.create_payment(booking_id)
    client.set_faults(
        "mercadopago", {"rules": [{"status": 503, "pathContains": "/v1/payments/", "count": 2}]}
    )

    assert _deliver(client, payment["id"])["status"] == 200
    assert client.booking(booking_id)["status"] == "scheduled"


def test_calendar_rejection_is_acknowledged_and_left_for_admins(client: StackClient) -> None:
    booking_id = client.seed_booking()
    payment = client.create_payment(booking_id)
    client.set_faults(
        "calendar", {"rules": [{"status": 400, "reason": "invalid", "method": "POST"}]}
    )

    delivery = _deliver(client, payment["id"])

    assert delivery["status"] == 200  # a retry cannot help: no retry storm
    booking = client.booking(booking_id)
    assert booking["status"] == "paid"
    assert booking["calendarStatus"] == "rejected"
    issue = client.db.collection("payment_issues").document(f"{payment['id']}-calendar_rejected")
    assert issue.get().exists


def test_logs_carry_ids_but_never_a_secret(
    client: StackClient, capfd: pytest.CaptureFixture[str]
) -> None:
    booking_id = client.seed_booking()
    payment = client.create_payment(booking_id)

    _deliver(client, payment["id"])
    _signed_post(client, secret="wrong")

    out, err = capfd.readouterr()
    lines = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    handled = [line for line in lines if line.get("booking_id") == booking_id]
    assert handled and handled[0]["severity"] == "INFO"
    assert handled[0]["payment_id"] == str(payment["id"])
    assert "duration_ms" in handled[0]
    secrets = [
        client.doc["secrets"]["mercadopago_webhook_secret"],
        client.doc["oauth"]["refresh_token"],
    ]
    secrets.append(client.doc["oauth"]["client_secret"])
    for secret in secrets:
        assert secret not in out and secret not in err


def test_log_lines_carry_the_cloud_trace_of_the_request(
    client: StackClient, capfd: pytest.CaptureFixture[str]
) -> None:
    trace = {"X-Cloud-Trace-Context": "0af7651916cd43dd8448eb211c80319c/1;o=1"}

    _signed_post(client, data_id="777", extra_headers=trace)

    out, _ = capfd.readouterr()
    lines = [json.loads(x) for x in out.splitlines() if '"payment_id": "777"' in x]
    assert len(lines) == 2  # the unknown payment's warning, and the request's own line
    for line in lines:
        assert line["logging.googleapis.com/trace"] == (
            f"projects/{client.doc['project_id']}/traces/0af7651916cd43dd8448eb211c80319c"
        )


def test_refused_mercado_pago_token_answers_503_so_the_payment_is_not_lost(
    client: StackClient,
) -> None:
    booking_id = client.seed_booking()
    payment = client.create_payment(booking_id)
    client.set_faults("mercadopago", {"rules": [{"status": 401, "pathContains": "/v1/payments/"}]})

    delivery = _deliver(client, payment["id"])

    assert delivery["status"] == 503
    assert client.booking(booking_id)["status"] == "awaiting_payment"
    client.clear_faults("mercadopago")
    assert _deliver(client, payment["id"])["status"] == 200
    assert client.booking(booking_id)["status"] == "scheduled"


def test_webhook_answer_names_no_booking_event_or_meet_link(client: StackClient) -> None:
    booking_id = client.seed_booking()
    payment = client.create_payment(booking_id)

    ipn = _deliver(client, payment["id"], format="ipn")  # unsigned: anyone could send it

    assert json.loads(ipn["body"]) == {"outcome": "scheduled"}


def test_unsigned_ipn_can_be_refused(client: StackClient, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MERCADOPAGO_ACCEPT_IPN", "false")
    from shared.adapters.clients import reset_clients

    reset_clients()
    payment = client.create_payment(client.seed_booking())

    assert _deliver(client, payment["id"], format="ipn")["status"] == 401
    assert client.stats("mercadopago") == {}


def test_webhook_without_signed_data_id_in_query_is_400(client: StackClient) -> None:
    secret = client.doc["secrets"]["mercadopago_webhook_secret"]
    ts = str(int(time.time()))
    manifest = f"request-id:r1;ts:{ts};"
    v1 = hmac.new(secret.encode(), manifest.encode(), hashlib.sha256).hexdigest()

    response = requests.post(
        client.doc["functions"]["payment_webhook"],
        params={"type": "payment"},
        json={"type": "payment", "data": {"id": "123"}},
        headers={"x-request-id": "r1", "x-signature": f"ts={ts},v1={v1}"},
        timeout=10,
    )

    assert response.status_code == 400
    assert _nothing_written(client)


def test_external_reference_that_cannot_name_a_booking_is_an_unknown_booking(
    client: StackClient,
) -> None:
    payment = client.create_payment(None, external_reference="bookings/../x")

    delivery = _deliver(client, payment["id"])

    assert delivery["status"] == 200
    assert json.loads(delivery["body"])["outcome"] == "unknown_booking"


def test_booking_without_a_price_is_not_scheduled(client: StackClient) -> None:
    booking_id = client.seed_booking(price=None)
    payment = client.create_payment(booking_id)

    assert json.loads(_deliver(client, payment["id"])["body"])["outcome"] == "amount_mismatch"
    assert client.events_for_booking(booking_id) == []


def test_booking_is_committed_before_waiting_for_a_slow_meet_link(
    client: StackClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HANDLER_BUDGET_SECONDS", "2")
    from shared.adapters.clients import reset_clients

    reset_clients()
    calendar = client.doc["emulators"]["calendar"].split("/calendar/v3/")[0]
    requests.post(
        f"{calendar}/_emulator/calendar/conference", json={"pendingGets": 1000}, timeout=5
    )
    booking_id = client.seed_booking()
    payment = client.create_payment(booking_id)

    assert _deliver(client, payment["id"])["status"] == 200

    booking = client.booking(booking_id)
    assert booking["status"] == "scheduled"
    assert booking["googleEventId"]
    assert booking["conferenceStatus"] == "pending"
    assert booking["meetLink"] is None
