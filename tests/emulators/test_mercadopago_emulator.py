"""Conformance tests of the Mercado Pago emulator, driven with `requests` like production.

The webhook tests post to a small receiver served in this process and check what arrived
against the official SDK's signature validator, so the emulator cannot drift from the rule the
platform's receiver will enforce. The refund tests drive `POST /v1/payments/{id}/refunds` the
way a merchant's server does, idempotency key included, and read the effects back.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from flask import Flask, Response, request
from mercadopago.webhook import (
    InvalidWebhookSignatureError,
    SignatureFailureReason,
    WebhookSignatureValidator,
)

from emulators._base import ServerThread
from emulators.mercadopago import MercadoPagoEmulator, sign

TOKEN = "TEST-0000000000000000-000000-emulator-token"
SECRET = "webhook-secret-for-tests"
TIMEOUT = 5


class Receiver:
    """Records every delivery and answers with a status the test chooses."""

    def __init__(self) -> None:
        self.app = Flask("receiver")
        self.requests: list[dict[str, Any]] = []
        self.answer_status = 200
        self.delay = 0.0
        self._lock = threading.Lock()

        @self.app.post("/hooks/mp")
        def hook() -> Response:
            time.sleep(self.delay)
            with self._lock:
                self.requests.append(
                    {
                        "query_string": request.query_string.decode(),
                        "args": request.args.to_dict(),
                        "headers": {k.lower(): v for k, v in request.headers.items()},
                        "body": request.get_data(),
                    }
                )
            return Response("got it", status=self.answer_status)

    def last(self) -> dict[str, Any]:
        with self._lock:
            return self.requests[-1]


@pytest.fixture(scope="module")
def emulator() -> Iterator[tuple[MercadoPagoEmulator, str]]:
    emu = MercadoPagoEmulator(access_token=TOKEN)
    server = ServerThread(emu.app.app).start()
    yield emu, server.url
    server.stop()


@pytest.fixture(scope="module")
def receiver_server() -> Iterator[tuple[Receiver, str]]:
    receiver = Receiver()
    server = ServerThread(receiver.app).start()
    yield receiver, server.url + "/hooks/mp"
    server.stop()


@pytest.fixture
def receiver(receiver_server: tuple[Receiver, str]) -> tuple[Receiver, str]:
    rec, url = receiver_server
    rec.answer_status = 200
    rec.delay = 0.0
    return rec, url


@pytest.fixture
def base(emulator: tuple[MercadoPagoEmulator, str]) -> str:
    return emulator[1]


def auth(token: str = TOKEN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def create(base: str, **fields: Any) -> dict[str, Any]:
    body = {
        "status": "approved",
        "transaction_amount": 15000.0,
        "currency_id": "ARS",
        "payer": {"email": "alumno@example.com"},
        **fields,
    }
    resp = requests.post(f"{base}/_emulator/mercadopago/payments", json=body, timeout=TIMEOUT)
    assert resp.status_code == 201, resp.text
    created: dict[str, Any] = resp.json()
    return created


def notify(base: str, payment_id: int, url: str, **options: Any) -> dict[str, Any]:
    resp = requests.post(
        f"{base}/_emulator/mercadopago/payments/{payment_id}/notify",
        json={"url": url, "secret": SECRET, **options},
        timeout=TIMEOUT,
    )
    assert resp.status_code == 200, resp.text
    result: dict[str, Any] = resp.json()
    return result


# -- payments API ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "detail"),
    [
        ("approved", "accredited"),
        ("pending", "pending_waiting_payment"),
        ("in_process", "pending_contingency"),
        ("rejected", "cc_rejected_other_reason"),
        ("cancelled", "by_collector"),
        ("refunded", "refunded"),
    ],
)
def test_payment_in_each_status_is_readable_with_the_token(
    base: str, status: str, detail: str
) -> None:
    created = create(
        base,
        status=status,
        external_reference="booking-42",
        preference_id=f"pref-{status}",
        metadata={"booking_id": "42"},
    )

    resp = requests.get(f"{base}/v1/payments/{created['id']}", headers=auth(), timeout=TIMEOUT)

    assert resp.status_code == 200
    assert resp.headers["Content-Type"].startswith("application/json")
    payment = resp.json()
    assert payment == created
    assert isinstance(payment["id"], int)
    assert payment["status"] == status
    assert payment["status_detail"] == detail
    assert payment["external_reference"] == "booking-42"
    assert payment["transaction_amount"] == 15000.0
    assert payment["currency_id"] == "ARS"
    assert payment["payer"]["email"] == "alumno@example.com"
    assert payment["metadata"] == {"booking_id": "42"}
    assert payment["order"]["type"] == "mercadopago"
    assert payment["live_mode"] is False
    for field in ("date_created", "date_last_updated", "description", "payment_method_id"):
        assert field in payment
    assert payment["payment_type_id"]
    approved_once = status in ("approved", "refunded")
    assert (payment["date_approved"] is not None) is approved_once


def test_explicit_status_detail_and_absent_external_reference(base: str) -> None:
    created = create(base, status="rejected", status_detail="cc_rejected_insufficient_amount")

    payment = requests.get(
        f"{base}/v1/payments/{created['id']}", headers=auth(), timeout=TIMEOUT
    ).json()

    assert payment["status_detail"] == "cc_rejected_insufficient_amount"
    assert payment["external_reference"] is None


@pytest.mark.parametrize(
    ("headers", "message"),
    [
        ({}, "Must provide your access_token to proceed"),
        (auth("TEST-wrong"), "invalid access token"),
        ({"Authorization": TOKEN}, "invalid access token"),  # no Bearer scheme
    ],
)
def test_payment_needs_the_access_token(base: str, headers: dict[str, str], message: str) -> None:
    created = create(base)

    resp = requests.get(f"{base}/v1/payments/{created['id']}", headers=headers, timeout=TIMEOUT)

    assert resp.status_code == 401
    body = resp.json()
    assert body["status"] == 401
    assert body["error"] == "unauthorized"
    assert body["message"] == message
    assert isinstance(body["cause"], list)


def test_merchant_order_needs_the_access_token(base: str) -> None:
    order_id = create(base)["order"]["id"]

    resp = requests.get(f"{base}/merchant_orders/{order_id}", timeout=TIMEOUT)

    assert resp.status_code == 401
    assert resp.json()["error"] == "unauthorized"


@pytest.mark.parametrize("payment_id", ["1", "999999999999", "not-a-number"])
def test_unknown_payment_is_404_with_cause_2000(base: str, payment_id: str) -> None:
    resp = requests.get(f"{base}/v1/payments/{payment_id}", headers=auth(), timeout=TIMEOUT)

    assert resp.status_code == 404
    assert resp.json() == {
        "message": "Payment not found",
        "error": "not_found",
        "status": 404,
        "cause": [{"code": 2000, "description": "Payment not found", "data": None}],
    }


def test_unknown_merchant_order_is_404(base: str) -> None:
    resp = requests.get(f"{base}/merchant_orders/424242", headers=auth(), timeout=TIMEOUT)

    assert resp.status_code == 404
    body = resp.json()
    assert body["status"] == 404
    assert body["error"] == "not_found"
    assert "Merchant Order" in body["message"]


def test_merchant_order_links_back_to_preference_and_payments(base: str) -> None:
    rejected = create(
        base,
        status="rejected",
        preference_id="123-pref-linking",
        external_reference="booking-7",
        transaction_amount=8000,
    )
    approved = create(
        base,
        status="approved",
        preference_id="123-pref-linking",
        external_reference="booking-7",
        transaction_amount=8000,
    )
    assert rejected["order"]["id"] == approved["order"]["id"]

    resp = requests.get(
        f"{base}/merchant_orders/{approved['order']['id']}", headers=auth(), timeout=TIMEOUT
    )

    assert resp.status_code == 200
    order = resp.json()
    assert str(order["id"]) == approved["order"]["id"]
    assert order["preference_id"] == "123-pref-linking"
    assert order["external_reference"] == "booking-7"
    assert [(p["id"], p["status"]) for p in order["payments"]] == [
        (rejected["id"], "rejected"),
        (approved["id"], "approved"),
    ]
    assert all(p["transaction_amount"] == 8000 for p in order["payments"])
    assert order["total_amount"] == 8000
    assert order["paid_amount"] == 8000
    assert order["status"] == "closed"


def test_merchant_order_stays_open_until_paid(base: str) -> None:
    pending = create(base, status="pending", preference_id="123-pref-open")
    url = f"{base}/merchant_orders/{pending['order']['id']}"

    assert requests.get(url, headers=auth(), timeout=TIMEOUT).json()["status"] == "opened"
    requests.patch(
        f"{base}/_emulator/mercadopago/payments/{pending['id']}",
        json={"status": "approved"},
        timeout=TIMEOUT,
    )
    order = requests.get(url, headers=auth(), timeout=TIMEOUT).json()
    assert order["status"] == "closed"
    assert order["paid_amount"] == pending["transaction_amount"]


def test_status_change_moves_the_dates(base: str) -> None:
    created = create(base, status="pending")
    assert created["date_approved"] is None
    time.sleep(0.005)  # dates carry milliseconds

    resp = requests.patch(
        f"{base}/_emulator/mercadopago/payments/{created['id']}",
        json={"status": "approved"},
        timeout=TIMEOUT,
    )

    assert resp.status_code == 200
    changed = resp.json()
    assert changed["status"] == "approved"
    assert changed["status_detail"] == "accredited"
    assert changed["date_approved"] is not None
    assert changed["date_last_updated"] != created["date_last_updated"]
    read = requests.get(f"{base}/v1/payments/{created['id']}", headers=auth(), timeout=TIMEOUT)
    assert read.json() == changed


def test_status_change_in_process(emulator: tuple[MercadoPagoEmulator, str]) -> None:
    emu, base = emulator
    created = emu.create_payment(
        status="in_process", transaction_amount=100, payer={"email": "a@example.com"}
    )

    emu.set_status(created["id"], "rejected", "cc_rejected_high_risk")

    payment = requests.get(
        f"{base}/v1/payments/{created['id']}", headers=auth(), timeout=TIMEOUT
    ).json()
    assert payment["status"] == "rejected"
    assert payment["status_detail"] == "cc_rejected_high_risk"
    assert payment["date_approved"] is None


@pytest.mark.parametrize(
    "body",
    [
        {"status": "paid", "transaction_amount": 10},
        {"status": "approved"},
        {"status": "approved", "transaction_amount": -1},
        {"status": "approved", "transaction_amount": 10, "payer": "nobody"},
    ],
)
def test_control_route_rejects_bad_payments(base: str, body: dict[str, Any]) -> None:
    resp = requests.post(f"{base}/_emulator/mercadopago/payments", json=body, timeout=TIMEOUT)

    assert resp.status_code == 400
    assert resp.json()["error"] == "bad_request"


def test_patch_unknown_payment_is_404(base: str) -> None:
    resp = requests.patch(
        f"{base}/_emulator/mercadopago/payments/5", json={"status": "approved"}, timeout=TIMEOUT
    )
    assert resp.status_code == 404


def test_injected_fault_answers_503_once(base: str) -> None:
    created = create(base)
    plan = {"rules": [{"status": 503, "count": 1, "pathContains": "/v1/payments/"}]}
    assert requests.post(f"{base}/_emulator/faults", json=plan, timeout=TIMEOUT).ok
    try:
        url = f"{base}/v1/payments/{created['id']}"
        failed = requests.get(url, headers=auth(), timeout=TIMEOUT)
        assert failed.status_code == 503
        assert failed.json()["status"] == 503
        assert set(failed.json()) == {"message", "error", "status", "cause"}
        assert requests.get(url, headers=auth(), timeout=TIMEOUT).status_code == 200
    finally:
        requests.delete(f"{base}/_emulator/faults", timeout=TIMEOUT)


# -- webhook sender -------------------------------------------------------------------


def test_webhook_is_sent_like_mercadopago(base: str, receiver: tuple[Receiver, str]) -> None:
    rec, url = receiver
    payment = create(base, status="approved")

    result = notify(base, payment["id"], url)

    assert result["status"] == 200
    assert result["body"] == "got it"
    got = rec.last()
    assert got["query_string"] == f"data.id={payment['id']}&type=payment"
    body = json.loads(got["body"])
    assert set(body) == {
        "id",
        "live_mode",
        "type",
        "date_created",
        "user_id",
        "api_version",
        "action",
        "data",
    }
    assert isinstance(body["id"], int)
    assert isinstance(body["user_id"], int)
    assert body["live_mode"] is False
    assert body["type"] == "payment"
    assert body["api_version"] == "v1"
    assert body["action"] == "payment.updated"
    assert body["data"] == {"id": str(payment["id"])}
    headers = got["headers"]
    assert headers["content-type"] == "application/json"
    assert len(headers["x-request-id"]) == 36  # a UUID
    assert headers["x-signature"].startswith("ts=")
    assert result["headers"]["x-signature"] == headers["x-signature"]
    WebhookSignatureValidator.validate(
        headers["x-signature"],
        headers["x-request-id"],
        got["args"]["data.id"],
        SECRET,
        tolerance_seconds=300,
    )


def test_webhook_signature_matches_the_pure_function(
    base: str, receiver: tuple[Receiver, str]
) -> None:
    rec, url = receiver
    payment = create(base)

    notify(base, payment["id"], url, requestId="fixed-request-id", ts=1_700_000_000)

    header = rec.last()["headers"]["x-signature"]
    expected = sign(SECRET, str(payment["id"]), "fixed-request-id", 1_700_000_000)
    assert header == f"ts=1700000000,v1={expected}"
    assert rec.last()["headers"]["x-request-id"] == "fixed-request-id"


def test_sign_leaves_out_empty_parts() -> None:
    def mac(manifest: str) -> str:
        return hmac.new(b"s", manifest.encode(), hashlib.sha256).hexdigest()

    assert sign("s", "123", "r", 5) == mac("id:123;request-id:r;ts:5;")
    assert sign("s", None, "r", 5) == mac("request-id:r;ts:5;")
    assert sign("s", "123", "", 5) == mac("id:123;ts:5;")


def test_webhook_appends_to_an_existing_query(base: str, receiver: tuple[Receiver, str]) -> None:
    rec, url = receiver
    payment = create(base)

    result = notify(base, payment["id"], url + "?source_news=webhooks", action="payment.created")

    expected = f"source_news=webhooks&data.id={payment['id']}&type=payment"
    assert rec.last()["query_string"] == expected
    assert result["url"].endswith("?" + expected)
    assert result["payload"]["action"] == "payment.created"


@pytest.mark.parametrize(
    ("mode", "reason"),
    [
        ("forged", SignatureFailureReason.SIGNATURE_MISMATCH),
        ("missing", SignatureFailureReason.MISSING_SIGNATURE_HEADER),
    ],
)
def test_bad_signatures_fail_the_official_validator(
    base: str, receiver: tuple[Receiver, str], mode: str, reason: SignatureFailureReason
) -> None:
    rec, url = receiver
    payment = create(base)

    notify(base, payment["id"], url, signature=mode)

    got = rec.last()
    assert ("x-signature" in got["headers"]) is (mode == "forged")
    assert "x-request-id" in got["headers"]
    with pytest.raises(InvalidWebhookSignatureError) as err:
        WebhookSignatureValidator.validate(
            got["headers"].get("x-signature"),
            got["headers"]["x-request-id"],
            got["args"]["data.id"],
            SECRET,
        )
    assert err.value.reason is reason


def test_ipn_format(base: str, receiver: tuple[Receiver, str]) -> None:
    rec, url = receiver
    payment = create(base)

    result = notify(base, payment["id"], url, format="ipn")

    assert result["status"] == 200
    got = rec.last()
    assert got["query_string"] == f"topic=payment&id={payment['id']}"
    assert got["body"] == b""
    assert "x-signature" not in got["headers"]
    assert result["payload"] is None


def test_millisecond_timestamps_pass_the_hmac_but_not_the_sdk_tolerance(
    base: str, receiver: tuple[Receiver, str]
) -> None:
    rec, url = receiver
    payment = create(base)

    notify(base, payment["id"], url, tsUnit="ms")

    got = rec.last()
    ts = got["headers"]["x-signature"].split(",")[0].removeprefix("ts=")
    assert len(ts) == 13
    args = (got["headers"]["x-signature"], got["headers"]["x-request-id"], got["args"]["data.id"])
    WebhookSignatureValidator.validate(*args, SECRET)  # the HMAC itself is right
    with pytest.raises(InvalidWebhookSignatureError) as err:
        WebhookSignatureValidator.validate(*args, SECRET, tolerance_seconds=300)
    assert err.value.reason is SignatureFailureReason.TIMESTAMP_OUT_OF_TOLERANCE


def test_stale_timestamp_override(base: str, receiver: tuple[Receiver, str]) -> None:
    rec, url = receiver
    payment = create(base)

    notify(base, payment["id"], url, ts=int(time.time()) - 3600)

    got = rec.last()
    with pytest.raises(InvalidWebhookSignatureError) as err:
        WebhookSignatureValidator.validate(
            got["headers"]["x-signature"],
            got["headers"]["x-request-id"],
            got["args"]["data.id"],
            SECRET,
            tolerance_seconds=300,
        )
    assert err.value.reason is SignatureFailureReason.TIMESTAMP_OUT_OF_TOLERANCE


def test_lowercased_alphanumeric_id_in_the_manifest(
    base: str, receiver: tuple[Receiver, str]
) -> None:
    rec, url = receiver
    payment = create(base)

    notify(base, payment["id"], url, dataId="ORD01ABC", lowercaseId=True)

    got = rec.last()
    assert got["args"]["data.id"] == "ORD01ABC"
    assert json.loads(got["body"])["data"]["id"] == "ORD01ABC"
    signature, request_id = got["headers"]["x-signature"], got["headers"]["x-request-id"]
    WebhookSignatureValidator.validate(signature, request_id, "ord01abc", SECRET)
    with pytest.raises(InvalidWebhookSignatureError):
        WebhookSignatureValidator.validate(signature, request_id, "ORD01ABC", SECRET)


def test_receiver_status_is_reported(base: str, receiver: tuple[Receiver, str]) -> None:
    rec, url = receiver
    rec.answer_status = 500
    payment = create(base)

    result = notify(base, payment["id"], url)

    assert result["status"] == 500


def test_unreachable_receiver_is_reported(base: str) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    payment = create(base)

    result = notify(base, payment["id"], f"http://127.0.0.1:{port}/hooks/mp")

    assert result["status"] is None
    assert result["error"]


def test_notify_rejects_bad_options(base: str, receiver: tuple[Receiver, str]) -> None:
    _, url = receiver
    payment = create(base)
    route = f"{base}/_emulator/mercadopago/payments/{payment['id']}/notify"

    for body in (
        {"url": url, "secret": SECRET, "tsUnit": "us"},
        {"url": url, "secret": SECRET, "signature": "maybe"},
        {"url": url, "secret": SECRET, "colour": "blue"},
        {"secret": SECRET},
    ):
        assert requests.post(route, json=body, timeout=TIMEOUT).status_code == 400
    unknown = f"{base}/_emulator/mercadopago/payments/7/notify"
    resp = requests.post(unknown, json={"url": url, "secret": SECRET}, timeout=TIMEOUT)
    assert resp.status_code == 404


def test_python_notify_returns_the_response(
    emulator: tuple[MercadoPagoEmulator, str], receiver: tuple[Receiver, str]
) -> None:
    emu, _ = emulator
    rec, url = receiver
    payment = emu.create_payment(status="approved", transaction_amount=10)

    resp = emu.notify(payment["id"], url, SECRET, action="payment.created")

    assert resp.status_code == 200
    assert resp.text == "got it"
    sent = resp.request.headers
    assert sent["x-signature"] == rec.last()["headers"]["x-signature"]
    WebhookSignatureValidator.validate(
        sent["x-signature"], sent["x-request-id"], str(payment["id"]), SECRET
    )


def test_user_id_comes_from_the_access_token() -> None:
    emu = MercadoPagoEmulator(access_token="TEST-1111-222222-abcdef-987654321")
    payment = emu.create_payment(status="approved", transaction_amount=1)

    _, _, _, body = emu.build_notification(payment["id"], "http://127.0.0.1:9/x", SECRET)

    assert json.loads(body)["user_id"] == 987654321
    assert payment["collector_id"] == 987654321


def test_concurrent_creation_gives_distinct_ids(base: str) -> None:
    ids: list[int] = []
    lock = threading.Lock()

    def worker() -> None:
        for _ in range(5):
            payment_id = create(base, preference_id="123-pref-concurrent")["id"]
            with lock:
                ids.append(payment_id)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert len(set(ids)) == 40
    order_id = requests.get(f"{base}/v1/payments/{ids[0]}", headers=auth(), timeout=TIMEOUT)
    order = requests.get(
        f"{base}/merchant_orders/{order_id.json()['order']['id']}", headers=auth(), timeout=TIMEOUT
    ).json()
    assert sorted(p["id"] for p in order["payments"]) == sorted(ids)


# -- refunds API ----------------------------------------------------------------------

REFUND_FIELDS = {
    "id",
    "payment_id",
    "amount",
    "metadata",
    "source",
    "date_created",
    "unique_sequence_number",
    "refund_mode",
    "adjustment_amount",
    "status",
    "reason",
    "label",
    "partition_details",
}
_NO_BODY = object()


def post_refund(
    base: str,
    payment_id: Any,
    body: Any = _NO_BODY,
    *,
    key: str | None = "fresh",
    token: str = TOKEN,
) -> requests.Response:
    """Ask for a refund like a merchant's server: bearer token, JSON body, idempotency key."""
    headers = auth(token)
    if key is not None:
        headers["X-Idempotency-Key"] = str(uuid.uuid4()) if key == "fresh" else key
    url = f"{base}/v1/payments/{payment_id}/refunds"
    if body is _NO_BODY:
        return requests.post(url, headers=headers, timeout=TIMEOUT)
    return requests.post(url, headers=headers, json=body, timeout=TIMEOUT)


def read_payment(base: str, payment_id: Any) -> dict[str, Any]:
    resp = requests.get(f"{base}/v1/payments/{payment_id}", headers=auth(), timeout=TIMEOUT)
    assert resp.status_code == 200, resp.text
    payment: dict[str, Any] = resp.json()
    return payment


def assert_mp_error(resp: requests.Response, status: int, code: int | None = None) -> None:
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert set(body) == {"message", "error", "status", "cause"}
    assert body["status"] == status
    if code is not None:
        assert [c["code"] for c in body["cause"]] == [code]


@pytest.mark.parametrize("body", [_NO_BODY, {}, {"amount": None}])
def test_full_refund_refunds_the_whole_payment(base: str, body: Any) -> None:
    payment = create(base, transaction_amount=15000.0)

    resp = post_refund(base, payment["id"], body)

    assert resp.status_code == 201, resp.text
    refund = resp.json()
    assert set(refund) == REFUND_FIELDS
    assert isinstance(refund["id"], int)
    assert refund["payment_id"] == payment["id"]
    assert refund["amount"] == 15000.0
    assert refund["status"] == "approved"
    assert refund["refund_mode"] == "standard"
    assert refund["source"]["type"] == "collector"
    assert refund["date_created"].endswith("-03:00")
    after = read_payment(base, payment["id"])
    assert after["status"] == "refunded"
    assert after["status_detail"] == "refunded"
    assert after["transaction_amount_refunded"] == 15000.0
    assert after["refunds"] == [refund]
    assert after["date_approved"] == payment["date_approved"]


def test_partial_refunds_keep_the_payment_approved_until_they_add_up(base: str) -> None:
    payment = create(base, transaction_amount=15000.0)

    first = post_refund(base, payment["id"], {"amount": 5000})
    partly = read_payment(base, payment["id"])
    second = post_refund(base, payment["id"], {"amount": 2500.5})
    rest = post_refund(base, payment["id"])  # no amount: whatever remains

    assert (first.status_code, second.status_code, rest.status_code) == (201, 201, 201)
    assert partly["status"] == "approved"
    assert partly["status_detail"] == "partially_refunded"
    assert partly["transaction_amount_refunded"] == 5000
    assert rest.json()["amount"] == 7499.5
    after = read_payment(base, payment["id"])
    assert (after["status"], after["status_detail"]) == ("refunded", "refunded")
    assert after["transaction_amount_refunded"] == 15000
    assert [r["amount"] for r in after["refunds"]] == [5000, 2500.5, 7499.5]
    order = requests.get(
        f"{base}/merchant_orders/{payment['order']['id']}", headers=auth(), timeout=TIMEOUT
    ).json()
    assert order["refunded_amount"] == 15000


def test_refunds_can_be_listed_and_read_one_by_one(base: str) -> None:
    payment = create(base, transaction_amount=300)
    made = [post_refund(base, payment["id"], {"amount": 100}).json() for _ in range(2)]
    url = f"{base}/v1/payments/{payment['id']}/refunds"

    listed = requests.get(url, headers=auth(), timeout=TIMEOUT)
    one = requests.get(f"{url}/{made[1]['id']}", headers=auth(), timeout=TIMEOUT)
    missing = requests.get(f"{url}/{made[1]['id'] + 1000}", headers=auth(), timeout=TIMEOUT)

    assert listed.status_code == 200
    assert listed.json() == made
    assert one.status_code == 200
    assert one.json() == made[1]
    assert_mp_error(missing, 404, 2032)


def test_replaying_the_idempotency_key_returns_the_same_refund_once(base: str) -> None:
    payment = create(base, transaction_amount=1000)
    key = str(uuid.uuid4())

    answers = [post_refund(base, payment["id"], {"amount": 400}, key=key) for _ in range(3)]

    assert [a.status_code for a in answers] == [201, 201, 201]
    assert answers[0].json() == answers[1].json() == answers[2].json()
    after = read_payment(base, payment["id"])
    assert len(after["refunds"]) == 1
    assert after["transaction_amount_refunded"] == 400


def test_replaying_a_full_refund_answers_it_again_not_an_error(base: str) -> None:
    payment = create(base, transaction_amount=1000)
    key = str(uuid.uuid4())

    first = post_refund(base, payment["id"], key=key)
    again = post_refund(base, payment["id"], key=key)

    assert (first.status_code, again.status_code) == (201, 201)
    assert again.json() == first.json()
    assert read_payment(base, payment["id"])["transaction_amount_refunded"] == 1000


def test_a_lost_answer_is_retried_safely_with_the_same_key(base: str) -> None:
    payment = create(base, transaction_amount=1000)
    key = str(uuid.uuid4())
    plan = {
        "rules": [{"dropResponse": True, "count": 1, "method": "POST", "pathContains": "/refunds"}]
    }
    assert requests.post(f"{base}/_emulator/faults", json=plan, timeout=TIMEOUT).ok
    try:
        with pytest.raises(requests.ConnectionError):
            post_refund(base, payment["id"], {"amount": 250}, key=key)
        retried = post_refund(base, payment["id"], {"amount": 250}, key=key)
    finally:
        requests.delete(f"{base}/_emulator/faults", timeout=TIMEOUT)

    assert retried.status_code == 201
    after = read_payment(base, payment["id"])
    assert after["refunds"] == [retried.json()]
    assert after["transaction_amount_refunded"] == 250


def test_concurrent_requests_with_one_key_refund_once(base: str) -> None:
    payment = create(base, transaction_amount=1000)
    key = str(uuid.uuid4())
    answers: list[requests.Response] = []
    lock = threading.Lock()

    def worker() -> None:
        resp = post_refund(base, payment["id"], {"amount": 100}, key=key)
        with lock:
            answers.append(resp)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert {a.status_code for a in answers} == {201}
    assert len({a.json()["id"] for a in answers}) == 1
    assert read_payment(base, payment["id"])["transaction_amount_refunded"] == 100


def test_concurrent_refunds_never_exceed_the_payment(base: str) -> None:
    payment = create(base, transaction_amount=1000)
    codes: list[int] = []
    lock = threading.Lock()

    def worker() -> None:
        resp = post_refund(base, payment["id"], {"amount": 300})
        with lock:
            codes.append(resp.status_code)

    threads = [threading.Thread(target=worker) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(codes) == [201, 201, 201, 400, 400, 400]
    after = read_payment(base, payment["id"])
    assert after["transaction_amount_refunded"] == 900
    assert after["status_detail"] == "partially_refunded"


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ({"amount": 100}, {"amount": 200}),
        ({"amount": 100}, None),  # a partial refund's key reused for a full one
    ],
)
def test_one_key_for_another_request_is_a_conflict(
    base: str, first: dict[str, Any], second: dict[str, Any] | None
) -> None:
    payment = create(base, transaction_amount=1000)
    key = str(uuid.uuid4())
    assert post_refund(base, payment["id"], first, key=key).status_code == 201

    resp = post_refund(base, payment["id"], _NO_BODY if second is None else second, key=key)

    assert_mp_error(resp, 409)
    assert read_payment(base, payment["id"])["transaction_amount_refunded"] == 100


def test_a_new_key_on_a_fully_refunded_payment_is_refused(base: str) -> None:
    payment = create(base, transaction_amount=1000)
    assert post_refund(base, payment["id"]).status_code == 201

    again = post_refund(base, payment["id"])
    partial = post_refund(base, payment["id"], {"amount": 1})

    assert_mp_error(again, 400, 2063)
    assert_mp_error(partial, 400, 2063)
    assert len(read_payment(base, payment["id"])["refunds"]) == 1


def test_refunding_more_than_remains_is_refused(base: str) -> None:
    payment = create(base, transaction_amount=1000)
    assert post_refund(base, payment["id"], {"amount": 600}).status_code == 201

    resp = post_refund(base, payment["id"], {"amount": 400.01})

    assert_mp_error(resp, 400)
    assert resp.json()["error"] == "bad_request"
    after = read_payment(base, payment["id"])
    assert after["transaction_amount_refunded"] == 600
    assert after["status_detail"] == "partially_refunded"


@pytest.mark.parametrize(
    "status", ["pending", "in_process", "authorized", "rejected", "cancelled", "charged_back"]
)
def test_only_an_approved_payment_can_be_refunded(base: str, status: str) -> None:
    payment = create(base, status=status)

    resp = post_refund(base, payment["id"])

    assert_mp_error(resp, 400, 2063)
    after = read_payment(base, payment["id"])
    assert after["status"] == status
    assert after["refunds"] == []
    assert after["transaction_amount_refunded"] == 0


@pytest.mark.parametrize(
    ("amount", "code"), [("10", 4041), (True, 4041), ([5], 4041), (0, 4040), (-5, 4040)]
)
def test_bad_amounts_are_refused(base: str, amount: Any, code: int) -> None:
    payment = create(base)

    resp = post_refund(base, payment["id"], {"amount": amount})

    assert_mp_error(resp, 400, code)
    assert read_payment(base, payment["id"])["refunds"] == []


def test_the_idempotency_key_is_required(base: str) -> None:
    payment = create(base)

    resp = post_refund(base, payment["id"], {"amount": 10}, key=None)

    assert_mp_error(resp, 400, 4292)
    assert read_payment(base, payment["id"])["status"] == "approved"


def test_a_body_that_is_not_a_json_object_is_refused(base: str) -> None:
    payment = create(base)
    headers = {**auth(), "X-Idempotency-Key": "bad-body", "Content-Type": "application/json"}

    resp = requests.post(
        f"{base}/v1/payments/{payment['id']}/refunds", headers=headers, data=b"[1]", timeout=TIMEOUT
    )

    assert_mp_error(resp, 400)
    assert read_payment(base, payment["id"])["refunds"] == []


def test_refunds_need_the_access_token(base: str) -> None:
    payment = create(base)
    url = f"{base}/v1/payments/{payment['id']}/refunds"

    refused = post_refund(base, payment["id"], token="TEST-wrong")
    listed = requests.get(url, timeout=TIMEOUT)

    assert_mp_error(refused, 401)
    assert_mp_error(listed, 401)
    assert read_payment(base, payment["id"])["refunds"] == []


@pytest.mark.parametrize("payment_id", ["1", "not-a-number"])
def test_refunds_of_an_unknown_payment_are_404(base: str, payment_id: str) -> None:
    created = post_refund(base, payment_id)
    listed = requests.get(
        f"{base}/v1/payments/{payment_id}/refunds", headers=auth(), timeout=TIMEOUT
    )

    assert_mp_error(created, 404, 2000)
    assert_mp_error(listed, 404, 2000)


def test_payment_created_refunded_carries_its_refund(base: str) -> None:
    payment = create(base, status="refunded", transaction_amount=800)

    assert payment["transaction_amount_refunded"] == 800
    assert [r["amount"] for r in payment["refunds"]] == [800]


# -- automatic notifications ----------------------------------------------------------


@pytest.fixture
def webhook(
    emulator: tuple[MercadoPagoEmulator, str], receiver: tuple[Receiver, str]
) -> Iterator[tuple[Receiver, str]]:
    """The merchant's webhook set to the test receiver (as the stack sets payment_webhook)."""
    emu, base = emulator
    rec, url = receiver
    emu.reset()  # an empty delivery log
    resp = requests.post(
        f"{base}/_emulator/mercadopago/webhook",
        json={"url": url + "?source_news=webhooks", "secret": SECRET},
        timeout=TIMEOUT,
    )
    assert resp.status_code == 200, resp.text
    yield rec, url
    requests.delete(f"{base}/_emulator/mercadopago/webhook", timeout=TIMEOUT)
    emu.reset()


def deliveries(base: str, wait: int, timeout: float = 5) -> dict[str, Any]:
    resp = requests.get(
        f"{base}/_emulator/mercadopago/deliveries",
        params={"wait": wait, "timeout": timeout},
        timeout=TIMEOUT + timeout,
    )
    assert resp.status_code == 200, resp.text
    log: dict[str, Any] = resp.json()
    return log


def test_a_refund_is_notified_with_a_signed_webhook(
    base: str, webhook: tuple[Receiver, str]
) -> None:
    rec, _ = webhook
    payment = create(base, transaction_amount=1000)

    refund = post_refund(base, payment["id"], {"amount": 300})
    log = deliveries(base, wait=1)

    assert refund.status_code == 201
    assert log["pending"] == 0
    [delivery] = log["deliveries"]
    assert delivery["paymentId"] == payment["id"]
    assert delivery["trigger"] == "refund"
    assert delivery["action"] == "payment.updated"
    assert delivery["status"] == 200
    assert delivery["error"] is None
    got = rec.last()
    assert got["query_string"] == f"source_news=webhooks&data.id={payment['id']}&type=payment"
    body = json.loads(got["body"])
    assert body["type"] == "payment"
    assert body["action"] == "payment.updated"
    assert body["data"] == {"id": str(payment["id"])}
    assert delivery["payload"] == body
    signature, request_id = got["headers"]["x-signature"], got["headers"]["x-request-id"]
    WebhookSignatureValidator.validate(
        signature, request_id, got["args"]["data.id"], SECRET, tolerance_seconds=300
    )
    with pytest.raises(InvalidWebhookSignatureError):
        WebhookSignatureValidator.validate(
            signature, request_id, got["args"]["data.id"], "another-secret"
        )


def test_the_refund_answer_does_not_wait_for_the_webhook(
    base: str, webhook: tuple[Receiver, str]
) -> None:
    rec, _ = webhook
    rec.delay = 1.5
    payment = create(base, transaction_amount=1000)

    started = time.monotonic()
    refund = post_refund(base, payment["id"])
    answered_in = time.monotonic() - started
    in_flight = deliveries(base, wait=0)
    log = deliveries(base, wait=1)

    assert refund.status_code == 201
    assert answered_in < 1.0
    assert in_flight["pending"] == 1
    assert [d["status"] for d in log["deliveries"]] == [200]


def test_every_partial_refund_is_notified(base: str, webhook: tuple[Receiver, str]) -> None:
    payment = create(base, transaction_amount=1000)

    for amount in (100, 200):
        assert post_refund(base, payment["id"], {"amount": amount}).status_code == 201
    log = deliveries(base, wait=2)

    assert [(d["paymentId"], d["status"]) for d in log["deliveries"]] == [(payment["id"], 200)] * 2


def test_setting_a_payment_refunded_is_notified_like_a_refund(
    base: str, webhook: tuple[Receiver, str]
) -> None:
    rec, _ = webhook
    payment = create(base, transaction_amount=1000)
    assert post_refund(base, payment["id"], {"amount": 250}).status_code == 201
    route = f"{base}/_emulator/mercadopago/payments/{payment['id']}"

    changed = requests.patch(route, json={"status": "refunded"}, timeout=TIMEOUT).json()
    log = deliveries(base, wait=2)

    assert changed["status"] == "refunded"
    assert changed["transaction_amount_refunded"] == 1000
    assert [r["amount"] for r in changed["refunds"]] == [250, 750]
    assert [d["trigger"] for d in log["deliveries"]] == ["refund", "status"]
    assert json.loads(rec.last()["body"])["data"] == {"id": str(payment["id"])}


def test_only_refunds_are_notified_by_themselves(base: str, webhook: tuple[Receiver, str]) -> None:
    payment = create(base, status="pending")
    route = f"{base}/_emulator/mercadopago/payments/{payment['id']}"
    requests.patch(route, json={"status": "approved"}, timeout=TIMEOUT)
    post_refund(base, payment["id"], {"amount": 999_999})  # refused
    post_refund(base, payment["id"], key=None)  # refused

    log = deliveries(base, wait=1, timeout=0.5)

    assert log == {"deliveries": [], "pending": 0}


def test_a_replayed_refund_is_not_notified_again(base: str, webhook: tuple[Receiver, str]) -> None:
    payment = create(base)
    key = str(uuid.uuid4())
    for _ in range(2):
        assert post_refund(base, payment["id"], key=key).status_code == 201

    log = deliveries(base, wait=2, timeout=0.5)

    assert len(log["deliveries"]) == 1


def test_an_unreachable_webhook_is_logged(
    emulator: tuple[MercadoPagoEmulator, str], webhook: tuple[Receiver, str]
) -> None:
    emu, base = emulator
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    emu.configure_webhook(f"http://127.0.0.1:{port}/hooks/mp", SECRET)
    payment = create(base)

    post_refund(base, payment["id"])
    [delivery] = deliveries(base, wait=1)["deliveries"]

    assert delivery["status"] is None
    assert delivery["error"]


def test_the_receivers_answer_is_logged(base: str, webhook: tuple[Receiver, str]) -> None:
    rec, _ = webhook
    rec.answer_status = 503
    payment = create(base)

    post_refund(base, payment["id"])
    [delivery] = deliveries(base, wait=1)["deliveries"]

    assert (delivery["status"], delivery["body"]) == (503, "got it")


def test_without_a_webhook_nothing_is_delivered(
    emulator: tuple[MercadoPagoEmulator, str], receiver: tuple[Receiver, str]
) -> None:
    emu, base = emulator
    emu.clear_webhook()
    emu.reset()
    payment = create(base)

    assert post_refund(base, payment["id"]).status_code == 201

    assert deliveries(base, wait=1, timeout=0.3) == {"deliveries": [], "pending": 0}
    assert requests.get(f"{base}/_emulator/mercadopago/webhook", timeout=TIMEOUT).json() == {
        "url": None
    }


def test_reset_keeps_the_webhook_and_clears_the_log(
    base: str, webhook: tuple[Receiver, str]
) -> None:
    _, url = webhook
    payment = create(base)
    post_refund(base, payment["id"])
    assert len(deliveries(base, wait=1)["deliveries"]) == 1

    requests.post(f"{base}/_emulator/mercadopago/reset", timeout=TIMEOUT)
    shown = requests.get(f"{base}/_emulator/mercadopago/webhook", timeout=TIMEOUT).json()
    again = create(base)
    post_refund(base, again["id"])
    log = deliveries(base, wait=1)

    assert shown == {"url": url + "?source_news=webhooks"}  # and never the secret
    assert [d["paymentId"] for d in log["deliveries"]] == [again["id"]]


@pytest.mark.parametrize(
    "body",
    [{"url": "http://127.0.0.1:9/x"}, {"secret": SECRET}, {"url": "ftp://x", "secret": SECRET}],
)
def test_webhook_setting_rejects_bad_input(base: str, body: dict[str, Any]) -> None:
    resp = requests.post(f"{base}/_emulator/mercadopago/webhook", json=body, timeout=TIMEOUT)

    assert resp.status_code == 400


def test_deliveries_rejects_a_bad_wait(base: str) -> None:
    resp = requests.get(
        f"{base}/_emulator/mercadopago/deliveries", params={"wait": "soon"}, timeout=TIMEOUT
    )

    assert resp.status_code == 400
