"""Local Mercado Pago API emulator with a webhook sender.

Mercado Pago ships no emulator, and its sandbox cannot be driven into a chosen payment status on
demand, so the platform's payment code is tested against this server instead. It answers the
endpoints the platform and its tests use, with Mercado Pago's field names and error bodies; each
needs `Authorization: Bearer <access_token>`:

- `GET  /v1/payments/{id}`
- `POST /v1/payments/{id}/refunds`            (`X-Idempotency-Key` required)
  no body, `{}` or `{"amount": null}`: refund what remains; `{"amount": x}`: a partial refund
  -> 201 with the refund `{id, payment_id, amount, metadata, source, date_created,
  unique_sequence_number, refund_mode, adjustment_amount, status, reason, label,
  partition_details}`
- `GET  /v1/payments/{id}/refunds`            -> the payment's refunds, a JSON array
- `GET  /v1/payments/{id}/refunds/{refund_id}`
- `GET  /merchant_orders/{id}`

Errors look like Mercado Pago's: `{"message", "error", "status", "cause": [...]}`; an unknown
payment is a 404 "Payment not found" with cause code 2000, an unknown refund a 404 with cause
code 2032.

Refunds follow Mercado Pago's documented rules: only an `approved` payment can be refunded
(anything else, a fully refunded payment included, is a 400 with cause code 2063); a refund is
`approved` at once; a partial refund keeps the payment `approved` with `status_detail:
partially_refunded`; once the refunds reach `transaction_amount` the payment is `refunded` /
`refunded`. `transaction_amount_refunded` is always the sum of the payment's `refunds`. An
amount that is not a number is a 400 with cause 4041, one not above zero cause 4040, one above
what remains a 400, a body that is not a JSON object a 400. Without `X-Idempotency-Key` the
answer is 400 with cause 4292. Sending a key again with the same request answers the same
refund again and refunds nothing more; the same key with another request (other payment or
amount) is a 409.

Control routes (never part of the real API; no token needed, no faults injected):

- `POST  /_emulator/mercadopago/payments`
  {"status": "approved", "status_detail"?: str, "external_reference"?: str|null,
  "preference_id"?: str, "transaction_amount": 1500.0, "currency_id"?: "ARS",
  "payer"?: {"email": ...}, "metadata"?: {...}, "description"?: str,
  "payment_method_id"?: str, "payment_type_id"?: str}
  -> 201 with the payment JSON. The payment joins the merchant order of its `preference_id`
  (created on first use; a preference id is generated when absent) and points to it through
  `order.id`. A payment created `refunded` carries one refund of its whole amount.
- `PATCH /_emulator/mercadopago/payments/{id}` {"status": ..., "status_detail"?: ...}
  -> the payment JSON, with `date_approved` / `date_last_updated` moved as Mercado Pago does.
  Moving a payment to `refunded` refunds what remains (one more entry in `refunds`) and is
  notified like a refund made through the API; earlier refunds are never erased.
- `POST  /_emulator/mercadopago/payments/{id}/notify`
  {"url": ..., "secret": ..., "action"?: "payment.updated" | "payment.created",
  "format"?: "webhook" | "ipn", "requestId"?: str, "tsUnit"?: "s" | "ms",
  "lowercaseId"?: false, "signature"?: "valid" | "forged" | "missing", "ts"?: int,
  "dataId"?: str}
  -> {"status": <receiver's HTTP status, null if unreachable>, "body": <receiver's text>,
  "headers": <headers sent>, "url": <url posted to>, "payload": <JSON sent, or null>,
  "error"?: <why the delivery failed>}
- `POST   /_emulator/mercadopago/webhook` {"url": ..., "secret": ...} sets the merchant's
  webhook, where the emulator notifies by itself (Mercado Pago's "Your integrations" setting)
  -> {"url": ...}. `GET` answers {"url": <url or null>} (never the secret); `DELETE` stops
  the automatic notifications.
- `GET   /_emulator/mercadopago/deliveries?wait=N&timeout=S` the automatic notifications, oldest
  first: {"deliveries": [{"paymentId", "trigger": "refund" | "status", "action", "url",
  "status", "body", "error", "payload"}, ...], "pending": <still in flight>}. With `wait`, the
  answer waits (up to `timeout` seconds, default 10, at most 60) until at least N deliveries
  have finished.
- `POST  /_emulator/mercadopago/reset` forgets every payment, refund, merchant order,
  idempotency key and delivery (after waiting for those in flight); the webhook stays set.

Automatic notifications: with a webhook set, every refund (through the API or the PATCH
control route) makes the emulator deliver, from a background thread so the refund's answer never
waits for the merchant, one signed webhook `payment.updated` about the payment (topic
`payment`, `data.id` = the payment id), built exactly like `/notify` builds it. One attempt, no
retries. Other changes are notified only on demand, through `/notify`.

The same operations exist as methods for in-process use: `create_payment`, `set_status`,
`refund`, `list_refunds`, `notify`, `configure_webhook`, `deliveries`, `reset`; `sign` is the
signing rule as a pure function.
"""

from __future__ import annotations

import copy
import hashlib
import hmac
import itertools
import json
import math
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from urllib.parse import quote

import requests
from flask import Response, request

from emulators._base import EmulatorApp, json_response

PAYMENT_STATUSES = (
    "pending",
    "approved",
    "authorized",
    "in_process",
    "in_mediation",
    "rejected",
    "cancelled",
    "refunded",
    "charged_back",
)

# The status_detail Mercado Pago most commonly pairs with each status.
DEFAULT_STATUS_DETAIL = {
    "pending": "pending_waiting_payment",
    "approved": "accredited",
    "authorized": "pending_capture",
    "in_process": "pending_contingency",
    "in_mediation": "in_process",
    "rejected": "cc_rejected_other_reason",
    "cancelled": "by_collector",
    "refunded": "refunded",
    "charged_back": "settled",
}

# Statuses a payment only reaches after it was approved, so `date_approved` stays set.
_APPROVED_AT_SOME_POINT = frozenset({"approved", "in_mediation", "refunded", "charged_back"})

# A partial refund leaves the payment approved with this detail (Mercado Pago's payment statuses).
PARTIALLY_REFUNDED = "partially_refunded"

WEBHOOK_TIMEOUT_SECONDS = 22.0  # how long Mercado Pago waits for the receiver's answer
DELIVERIES_WAIT_MAX_SECONDS = 60.0
WEBHOOK_USER_AGENT = "MercadoPago WebHook v1.0 payment"
IPN_USER_AGENT = "MercadoPago Feed v2.0 payment"

# Mercado Pago stamps dates in the seller's zone; Buenos Aires has no DST.
_ART = timezone(timedelta(hours=-3))


def sign(secret: str, data_id: str | None, request_id: str | None, ts: int | str) -> str:
    """Return the `v1` hex HMAC-SHA256 of a webhook, as Mercado Pago computes it.

    The manifest is `id:<data.id>;request-id:<x-request-id>;ts:<ts>;`, leaving out any part whose
    value is empty (the rule the official SDKs follow).
    """
    parts = []
    if data_id:
        parts.append(f"id:{data_id}")
    if request_id:
        parts.append(f"request-id:{request_id}")
    parts.append(f"ts:{ts}")
    manifest = ";".join(parts) + ";"
    return hmac.new(secret.encode(), manifest.encode(), hashlib.sha256).hexdigest()


def mp_error(
    status: int, error: str, message: str, cause: list[dict[str, Any]] | None = None
) -> Response:
    """Build an error response in Mercado Pago's shape."""
    return json_response(_error_body(status, error, message, cause), status)


def _error_body(
    status: int, error: str, message: str, cause: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    return {"message": message, "error": error, "status": status, "cause": cause or []}


def _cause(code: int, description: str) -> list[dict[str, Any]]:
    return [{"code": code, "description": description, "data": None}]


def _now_mp() -> str:
    """A timestamp as Mercado Pago writes payment dates: millis and a -03:00 offset."""
    return datetime.now(_ART).isoformat(timespec="milliseconds")


class ControlError(ValueError):
    """A bad control request; carries the message the control route answers with."""


class ApiError(Exception):
    """An answer Mercado Pago gives instead of the resource; routes render it unchanged."""

    def __init__(
        self, status: int, error: str, message: str, cause: list[dict[str, Any]] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.error = error
        self.message = message
        self.cause = cause or []

    def response(self) -> Response:
        return mp_error(self.status, self.error, self.message, self.cause)


def _payment_not_found() -> ApiError:
    return ApiError(404, "not_found", "Payment not found", _cause(2000, "Payment not found"))


class MercadoPagoEmulator:
    """In-memory Mercado Pago: payments, merchant orders and a webhook sender.

    All state sits behind one lock because the server is threaded and tests also mutate it
    in-process while requests are in flight.
    """

    def __init__(
        self,
        access_token: str,
        *,
        user_id: int | None = None,
        live_mode: bool = False,
        webhook_timeout: float = WEBHOOK_TIMEOUT_SECONDS,
    ) -> None:
        self._access_token = access_token.encode()
        # Mercado Pago access tokens end in the seller's user id; reuse it when present.
        tail = access_token.rsplit("-", 1)[-1]
        self.user_id = (
            user_id if user_id is not None else int(tail) if tail.isdigit() else 1_234_567_890
        )
        self.live_mode = live_mode
        self.webhook_timeout = webhook_timeout
        self._lock = threading.RLock()
        self._payments: dict[int, dict[str, Any]] = {}
        self._orders: dict[int, dict[str, Any]] = {}
        self._order_by_preference: dict[str, int] = {}
        # X-Idempotency-Key -> (payment id, requested cents or None for "all", refund id).
        self._idempotency: dict[str, tuple[int, int | None, int]] = {}
        # Realistic magnitudes so ids never collide with small test integers.
        self._payment_ids = itertools.count(1_320_000_001)
        self._order_ids = itertools.count(21_000_000_001)
        self._notification_ids = itertools.count(118_000_000_001)
        self._refund_ids = itertools.count(1_240_000_001)
        # The merchant's webhook (url, secret) and the log of automatic deliveries. They have a
        # lock of their own so that waiting for a delivery never blocks the API it calls back.
        self._webhook: tuple[str, str] | None = None
        self._deliveries: list[dict[str, Any]] = []
        self._pending_deliveries = 0
        self._deliveries_changed = threading.Condition()
        self.app = EmulatorApp("mercadopago", _error_body)
        self._install_routes()

    # -- auth -------------------------------------------------------------------------
    def check_access_token(self, authorization: str | None) -> Response | None:
        """Return a 401 response unless the header carries our token (compared in constant time)."""
        if not authorization:
            return mp_error(
                401,
                "unauthorized",
                "Must provide your access_token to proceed",
                _cause(5, "Must provide your access_token to proceed"),
            )
        scheme, _, token = authorization.partition(" ")
        ok = hmac.compare_digest(token.strip().encode(), self._access_token)
        if scheme.lower() != "bearer" or not ok:
            return mp_error(401, "unauthorized", "invalid access token")
        return None

    # -- in-process API ---------------------------------------------------------------
    def create_payment(
        self,
        *,
        status: str,
        transaction_amount: float,
        currency_id: str = "ARS",
        payer: dict[str, Any] | None = None,
        external_reference: str | None = None,
        preference_id: str | None = None,
        status_detail: str | None = None,
        metadata: dict[str, Any] | None = None,
        description: str | None = None,
        payment_method_id: str = "account_money",
        payment_type_id: str = "account_money",
    ) -> dict[str, Any]:
        """Store a payment in any status and attach it to its preference's merchant order."""
        _check_status(status)
        amount = _check_amount(transaction_amount)
        if not isinstance(payer or {}, dict) or not isinstance(metadata or {}, dict):
            raise ControlError("payer and metadata must be objects")
        payer = dict(payer or {})
        payer.setdefault("email", "test_user@testuser.com")
        payer.setdefault("id", None)
        payer.setdefault("type", None)
        payer.setdefault("first_name", None)
        payer.setdefault("last_name", None)
        now = _now_mp()
        with self._lock:
            payment_id = next(self._payment_ids)
            if preference_id is None:
                preference_id = f"{self.user_id}-{uuid.uuid4()}"
            order = self._order_for(preference_id, external_reference, amount, currency_id, now)
            payment: dict[str, Any] = {
                "id": payment_id,
                "date_created": now,
                "date_approved": now if status in _APPROVED_AT_SOME_POINT else None,
                "date_last_updated": now,
                "money_release_date": None,
                "operation_type": "regular_payment",
                "payment_method_id": payment_method_id,
                "payment_type_id": payment_type_id,
                "status": status,
                "status_detail": status_detail or DEFAULT_STATUS_DETAIL[status],
                "currency_id": currency_id,
                "description": description,
                "live_mode": self.live_mode,
                "collector_id": self.user_id,
                "payer": payer,
                "metadata": dict(metadata or {}),
                "order": {"id": str(order["id"]), "type": "mercadopago"},
                "external_reference": external_reference,
                "transaction_amount": amount,
                "transaction_amount_refunded": 0,
                "installments": 1,
                "transaction_details": {
                    "net_received_amount": amount,
                    "total_paid_amount": amount,
                    "installment_amount": amount,
                },
                "refunds": [],
            }
            if status == "refunded":
                self._add_refund(payment, _cents(amount), now)
            self._payments[payment_id] = payment
            order["payment_ids"].append(payment_id)
            return copy.deepcopy(payment)

    def set_status(
        self, payment_id: int, status: str, status_detail: str | None = None
    ) -> dict[str, Any]:
        """Move a payment to another status, stamping the dates Mercado Pago would stamp.

        Moving to `refunded` refunds what remains, so the payment reads like one refunded
        through the API (and is notified like one); refunds already made are history and stay.
        """
        _check_status(status)
        with self._lock:
            payment = self._payments.get(int(payment_id))
            if payment is None:
                raise KeyError(payment_id)
            now = _now_mp()
            newly_refunded = status == "refunded" and payment["status"] != "refunded"
            if status in _APPROVED_AT_SOME_POINT:
                payment["date_approved"] = payment["date_approved"] or now
            else:
                payment["date_approved"] = None
            if status == "refunded" and _remaining_cents(payment) > 0:
                self._add_refund(payment, _remaining_cents(payment), now)
            payment["status"] = status
            default_detail = DEFAULT_STATUS_DETAIL[status]
            if status == "approved" and payment["refunds"]:
                default_detail = PARTIALLY_REFUNDED
            payment["status_detail"] = status_detail or default_detail
            payment["date_last_updated"] = now
            order = self._orders[int(payment["order"]["id"])]
            order["last_updated"] = now
            changed = copy.deepcopy(payment)
        if newly_refunded:
            self._schedule_delivery(changed["id"], "status")
        return changed

    def refund(
        self, payment_id: int, amount: Any = None, *, idempotency_key: str | None
    ) -> dict[str, Any]:
        """Refund a payment as `POST /v1/payments/{id}/refunds` does; None refunds what remains.

        Raises ApiError with Mercado Pago's answer when the refund is refused. A key seen before
        with the same request returns that refund again and moves no money.
        """
        if not idempotency_key:
            raise ApiError(
                400,
                "bad_request",
                "Header X-Idempotency-Key can't be null",
                _cause(4292, "Header X-Idempotency-Key can't be null"),
            )
        requested = None if amount is None else _refund_cents(amount)
        with self._lock:
            seen = self._idempotency.get(idempotency_key)
            if seen is not None:
                return self._replay(seen, int(payment_id), requested)
            payment = self._payments.get(int(payment_id))
            if payment is None:
                raise _payment_not_found()
            if payment["status"] != "approved":
                raise ApiError(
                    400,
                    "bad_request",
                    "The action requested is not valid for the current payment state",
                    _cause(2063, "The action requested is not valid for the current payment state"),
                )
            remaining = _remaining_cents(payment)
            cents = remaining if requested is None else requested
            if cents > remaining:
                raise ApiError(
                    400,
                    "bad_request",
                    f"Invalid refund amount: {cents / 100:.2f} is more than the "
                    f"{remaining / 100:.2f} left to refund",
                )
            now = _now_mp()
            refund = self._add_refund(payment, cents, now)
            if _remaining_cents(payment) == 0:
                payment["status"] = payment["status_detail"] = "refunded"
            else:
                payment["status_detail"] = PARTIALLY_REFUNDED
            payment["date_last_updated"] = now
            self._orders[int(payment["order"]["id"])]["last_updated"] = now
            self._idempotency[idempotency_key] = (payment["id"], requested, refund["id"])
            created = copy.deepcopy(refund)
        self._schedule_delivery(created["payment_id"], "refund")
        return created

    def list_refunds(self, payment_id: int) -> list[dict[str, Any]]:
        """The refunds of a payment, oldest first; raises ApiError for an unknown payment."""
        with self._lock:
            payment = self._payments.get(int(payment_id))
            if payment is None:
                raise _payment_not_found()
            return copy.deepcopy(payment["refunds"])

    def get_refund(self, payment_id: int, refund_id: int) -> dict[str, Any]:
        """One refund of a payment; raises ApiError when the payment or the refund is unknown."""
        for refund in self.list_refunds(payment_id):
            if refund["id"] == int(refund_id):
                return refund
        raise ApiError(404, "not_found", "Refund not found", _cause(2032, "Refund not found"))

    def configure_webhook(self, url: str, secret: str) -> None:
        """Set where refunds are notified without being asked (the merchant's webhook)."""
        if not url.startswith(("http://", "https://")):
            raise ControlError("url must be an http(s) URL")
        with self._deliveries_changed:
            self._webhook = (url, secret)

    def clear_webhook(self) -> None:
        """Stop the automatic notifications."""
        with self._deliveries_changed:
            self._webhook = None

    @property
    def webhook_url(self) -> str | None:
        with self._deliveries_changed:
            return self._webhook[0] if self._webhook else None

    def deliveries(self, wait: int = 0, timeout: float = 10.0) -> tuple[list[dict[str, Any]], int]:
        """The automatic deliveries so far and how many are in flight.

        Waits up to `timeout` seconds for at least `wait` finished deliveries, so a test can
        follow a notification that is sent in the background.
        """
        with self._deliveries_changed:
            self._deliveries_changed.wait_for(lambda: len(self._deliveries) >= wait, timeout)
            return copy.deepcopy(self._deliveries), self._pending_deliveries

    def get_payment(self, payment_id: int) -> dict[str, Any] | None:
        """A copy of a stored payment, or None."""
        with self._lock:
            payment = self._payments.get(int(payment_id))
            return copy.deepcopy(payment) if payment else None

    def get_merchant_order(self, order_id: int) -> dict[str, Any] | None:
        """A merchant order as `GET /merchant_orders/{id}` renders it, or None."""
        with self._lock:
            order = self._orders.get(int(order_id))
            return self._render_order(order) if order else None

    def reset(self) -> None:
        """Forget payments, refunds, merchant orders, idempotency keys and deliveries.

        Ids keep increasing, as upstream. Deliveries in flight are waited for first, so none
        lands in the next test; the webhook setting stays, like the merchant's configuration.
        """
        with self._deliveries_changed:
            self._deliveries_changed.wait_for(
                lambda: self._pending_deliveries == 0, self.webhook_timeout + 5
            )
        with self._lock:
            self._payments.clear()
            self._orders.clear()
            self._order_by_preference.clear()
            self._idempotency.clear()
        with self._deliveries_changed:
            self._deliveries.clear()

    def notify(self, payment_id: int, url: str, secret: str, **options: Any) -> requests.Response:
        """Deliver one notification about a payment, exactly as Mercado Pago would.

        Options (the control route's JSON keys): action, format, requestId, tsUnit, lowercaseId,
        signature, ts, dataId. Raises KeyError for an unknown payment, ControlError for bad
        options and `requests` exceptions when the receiver does not answer in time.
        """
        method, target, headers, body = self.build_notification(payment_id, url, secret, **options)
        return requests.request(
            method, target, headers=headers, data=body, timeout=self.webhook_timeout
        )

    def build_notification(
        self, payment_id: int, url: str, secret: str, **options: Any
    ) -> tuple[str, str, dict[str, str], bytes]:
        """Return (method, url, headers, body) of a notification without sending it."""
        unknown = set(options) - _NOTIFY_OPTIONS
        if unknown:
            raise ControlError(f"unknown notify options: {sorted(unknown)}")
        with self._lock:
            if int(payment_id) not in self._payments:
                raise KeyError(payment_id)
            notification_id = next(self._notification_ids)
        data_id = str(options.get("dataId") or payment_id)
        fmt = options.get("format", "webhook")
        if fmt == "ipn":
            target = _append_query(url, f"topic=payment&id={quote(data_id, safe='')}")
            return "POST", target, {"User-Agent": IPN_USER_AGENT, "Accept": "*/*"}, b""
        if fmt != "webhook":
            raise ControlError("format must be 'webhook' or 'ipn'")

        action = options.get("action", "payment.updated")
        if action not in ("payment.created", "payment.updated"):
            raise ControlError("action must be 'payment.created' or 'payment.updated'")
        ts_unit = options.get("tsUnit", "s")
        if ts_unit not in ("s", "ms"):
            raise ControlError("tsUnit must be 's' or 'ms'")
        mode = options.get("signature", "valid")
        if mode not in ("valid", "forged", "missing"):
            raise ControlError("signature must be 'valid', 'forged' or 'missing'")
        if options.get("ts") is not None:
            if isinstance(options["ts"], bool) or not isinstance(options["ts"], int):
                raise ControlError("ts must be an integer")
            ts = options["ts"]
        else:
            ts = int(time.time() * 1000) if ts_unit == "ms" else int(time.time())
        request_id = str(options.get("requestId") or uuid.uuid4())

        payload = {
            "id": notification_id,
            "live_mode": self.live_mode,
            "type": "payment",
            "date_created": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "user_id": self.user_id,
            "api_version": "v1",
            "action": action,
            "data": {"id": data_id},
        }
        headers = {
            "Content-Type": "application/json",
            "User-Agent": WEBHOOK_USER_AGENT,
            "Accept": "application/json",
            "x-request-id": request_id,
        }
        manifest_id = data_id.lower() if options.get("lowercaseId") else data_id
        if mode == "valid":
            headers["x-signature"] = f"ts={ts},v1={sign(secret, manifest_id, request_id, ts)}"
        elif mode == "forged":
            # Right shape, wrong key: what an attacker without the secret can produce.
            forged = sign(secret + "-not-the-secret", manifest_id, request_id, ts)
            headers["x-signature"] = f"ts={ts},v1={forged}"
        query = f"data.id={quote(data_id, safe='')}&type=payment"
        body = _compact_json(payload)
        return "POST", _append_query(url, query), headers, body

    # -- internals --------------------------------------------------------------------
    def _add_refund(self, payment: dict[str, Any], cents: int, now: str) -> dict[str, Any]:
        """Record an approved refund on a payment; the caller holds the lock and sets status."""
        refund = {
            "id": next(self._refund_ids),
            "payment_id": payment["id"],
            "amount": cents / 100,
            "metadata": {},
            "source": {"id": str(self.user_id), "name": "Test Seller", "type": "collector"},
            "date_created": now,
            "unique_sequence_number": None,
            "refund_mode": "standard",
            "adjustment_amount": 0,
            "status": "approved",
            "reason": None,
            "label": [],
            "partition_details": [],
        }
        payment["refunds"].append(refund)
        refunded = sum(_cents(r["amount"]) for r in payment["refunds"])
        payment["transaction_amount_refunded"] = refunded / 100
        return refund

    def _replay(
        self, seen: tuple[int, int | None, int], payment_id: int, requested: int | None
    ) -> dict[str, Any]:
        """Answer a repeated X-Idempotency-Key: the same refund, or 409 for another request."""
        seen_payment, seen_requested, refund_id = seen
        if (seen_payment, seen_requested) != (payment_id, requested):
            raise ApiError(
                409,
                "idempotency_key_already_used",
                "X-Idempotency-Key already used with a different request",
            )
        refunds = self._payments[seen_payment]["refunds"]
        return copy.deepcopy(next(r for r in refunds if r["id"] == refund_id))

    def _schedule_delivery(self, payment_id: int, trigger: str) -> None:
        """Notify the merchant's webhook from a thread of its own, as Mercado Pago does."""
        with self._deliveries_changed:
            if self._webhook is None:
                return
            url, secret = self._webhook
            self._pending_deliveries += 1
        threading.Thread(
            target=self._deliver,
            args=(payment_id, url, secret, trigger),
            name=f"mercadopago-webhook-{payment_id}",
            daemon=True,
        ).start()

    def _deliver(self, payment_id: int, url: str, secret: str, trigger: str) -> None:
        action = "payment.updated"
        entry: dict[str, Any] = {"paymentId": payment_id, "trigger": trigger, "action": action}
        try:
            method, target, headers, body = self.build_notification(
                payment_id, url, secret, action=action
            )
            result = _send(method, target, headers, body, self.webhook_timeout)
            entry.update(
                url=target,
                status=result["status"],
                body=result["body"],
                error=result.get("error"),
                payload=result["payload"],
            )
        except Exception as exc:  # the log must say why, whatever went wrong
            entry.update(
                url=url, status=None, body="", error=f"{type(exc).__name__}: {exc}", payload=None
            )
        finally:
            with self._deliveries_changed:
                self._deliveries.append(entry)
                self._pending_deliveries -= 1
                self._deliveries_changed.notify_all()

    def _order_for(
        self,
        preference_id: str,
        external_reference: str | None,
        amount: float,
        currency_id: str,
        now: str,
    ) -> dict[str, Any]:
        """The merchant order of a preference: one per checkout, shared by its retries."""
        order_id = self._order_by_preference.get(preference_id)
        if order_id is not None:
            return self._orders[order_id]
        order_id = next(self._order_ids)
        order = {
            "id": order_id,
            "preference_id": preference_id,
            "external_reference": external_reference,
            "total_amount": amount,
            "currency_id": currency_id,
            "date_created": now,
            "last_updated": now,
            "payment_ids": [],
        }
        self._orders[order_id] = order
        self._order_by_preference[preference_id] = order_id
        return order

    def _render_order(self, order: dict[str, Any]) -> dict[str, Any]:
        payments = [self._payments[pid] for pid in order["payment_ids"] if pid in self._payments]
        paid = sum(p["transaction_amount"] for p in payments if p["status"] == "approved")
        refunded = sum(p["transaction_amount_refunded"] for p in payments)
        total = order["total_amount"]
        if paid >= total:
            order_status = "paid"
        elif refunded:
            order_status = "reverted"
        elif paid:
            order_status = "partially_paid"
        else:
            order_status = "payment_required"
        return {
            "id": order["id"],
            "status": "closed" if paid >= total else "opened",
            "external_reference": order["external_reference"],
            "preference_id": order["preference_id"],
            "payments": [
                {
                    "id": p["id"],
                    "transaction_amount": p["transaction_amount"],
                    "total_paid_amount": p["transaction_amount"]
                    if p["status"] in _APPROVED_AT_SOME_POINT
                    else 0,
                    "currency_id": p["currency_id"],
                    "status": p["status"],
                    "status_detail": p["status_detail"],
                    "operation_type": p["operation_type"],
                    "date_approved": p["date_approved"],
                    "date_created": p["date_created"],
                    "last_modified": p["date_last_updated"],
                    "amount_refunded": p["transaction_amount_refunded"],
                }
                for p in payments
            ],
            "collector": {"id": self.user_id},
            "site_id": "MLA",
            "is_test": not self.live_mode,
            "order_status": order_status,
            "total_amount": total,
            "paid_amount": paid,
            "refunded_amount": refunded,
            "date_created": order["date_created"],
            "last_updated": order["last_updated"],
        }

    def _install_routes(self) -> None:
        app = self.app.app

        @app.get("/v1/payments/<payment_id>")
        def get_payment(payment_id: str) -> Response:
            denied = self.check_access_token(request.headers.get("Authorization"))
            if denied is not None:
                return denied
            payment = self.get_payment(int(payment_id)) if payment_id.isdigit() else None
            if payment is None:
                return mp_error(
                    404, "not_found", "Payment not found", _cause(2000, "Payment not found")
                )
            return json_response(payment)

        @app.post("/v1/payments/<payment_id>/refunds")
        def create_refund(payment_id: str) -> Response:
            denied = self.check_access_token(request.headers.get("Authorization"))
            if denied is not None:
                return denied
            body = _refund_body()
            if body is None:
                return mp_error(400, "bad_request", "The request body must be a JSON object")
            try:
                if not payment_id.isdigit():
                    raise _payment_not_found()
                refund = self.refund(
                    int(payment_id),
                    body.get("amount"),
                    idempotency_key=request.headers.get("X-Idempotency-Key"),
                )
            except ApiError as exc:
                return exc.response()
            return json_response(refund, 201)

        @app.get("/v1/payments/<payment_id>/refunds")
        def list_refunds(payment_id: str) -> Response:
            denied = self.check_access_token(request.headers.get("Authorization"))
            if denied is not None:
                return denied
            try:
                if not payment_id.isdigit():
                    raise _payment_not_found()
                return json_response(self.list_refunds(int(payment_id)))
            except ApiError as exc:
                return exc.response()

        @app.get("/v1/payments/<payment_id>/refunds/<refund_id>")
        def get_refund(payment_id: str, refund_id: str) -> Response:
            denied = self.check_access_token(request.headers.get("Authorization"))
            if denied is not None:
                return denied
            try:
                if not payment_id.isdigit():
                    raise _payment_not_found()
                refund = self.get_refund(
                    int(payment_id), int(refund_id) if refund_id.isdigit() else -1
                )
            except ApiError as exc:
                return exc.response()
            return json_response(refund)

        @app.get("/merchant_orders/<order_id>")
        def get_merchant_order(order_id: str) -> Response:
            denied = self.check_access_token(request.headers.get("Authorization"))
            if denied is not None:
                return denied
            order = self.get_merchant_order(int(order_id)) if order_id.isdigit() else None
            if order is None:
                return mp_error(404, "not_found", "Merchant Order not found")
            return json_response(order)

        @app.post("/_emulator/mercadopago/payments")
        def control_create() -> Response:
            raw = _json_object()
            fields = {k: raw[k] for k in _CREATE_FIELDS if k in raw}
            if "status" not in fields or "transaction_amount" not in fields:
                return mp_error(400, "bad_request", "status and transaction_amount are required")
            try:
                return json_response(self.create_payment(**fields), 201)
            except ControlError as exc:
                return mp_error(400, "bad_request", str(exc))

        @app.patch("/_emulator/mercadopago/payments/<int:payment_id>")
        def control_set_status(payment_id: int) -> Response:
            raw = _json_object()
            try:
                return json_response(
                    self.set_status(payment_id, raw.get("status", ""), raw.get("status_detail"))
                )
            except ControlError as exc:
                return mp_error(400, "bad_request", str(exc))
            except KeyError:
                return mp_error(
                    404, "not_found", "Payment not found", _cause(2000, "Payment not found")
                )

        @app.post("/_emulator/mercadopago/payments/<int:payment_id>/notify")
        def control_notify(payment_id: int) -> Response:
            raw = _json_object()
            url, secret = raw.pop("url", None), raw.pop("secret", None)
            if not url or secret is None:
                return mp_error(400, "bad_request", "url and secret are required")
            try:
                method, target, headers, body = self.build_notification(
                    payment_id, url, secret, **raw
                )
            except ControlError as exc:
                return mp_error(400, "bad_request", str(exc))
            except KeyError:
                return mp_error(
                    404, "not_found", "Payment not found", _cause(2000, "Payment not found")
                )
            return json_response(_send(method, target, headers, body, self.webhook_timeout))

        @app.post("/_emulator/mercadopago/webhook")
        def control_set_webhook() -> Response:
            raw = _json_object()
            url, secret = raw.get("url"), raw.get("secret")
            if not isinstance(url, str) or not isinstance(secret, str):
                return mp_error(400, "bad_request", "url and secret are required strings")
            try:
                self.configure_webhook(url, secret)
            except ControlError as exc:
                return mp_error(400, "bad_request", str(exc))
            return json_response({"url": url})

        @app.get("/_emulator/mercadopago/webhook")
        def control_get_webhook() -> Response:
            return json_response({"url": self.webhook_url})

        @app.delete("/_emulator/mercadopago/webhook")
        def control_clear_webhook() -> Response:
            self.clear_webhook()
            return json_response({"url": None})

        @app.get("/_emulator/mercadopago/deliveries")
        def control_deliveries() -> Response:
            try:
                wait = int(request.args.get("wait", 0))
                timeout = float(request.args.get("timeout", 10))
            except ValueError:
                return mp_error(400, "bad_request", "wait must be an integer, timeout a number")
            timeout = min(max(timeout, 0.0), DELIVERIES_WAIT_MAX_SECONDS)
            log, pending = self.deliveries(wait, timeout)
            return json_response({"deliveries": log, "pending": pending})

        @app.post("/_emulator/mercadopago/reset")
        def control_reset() -> Response:
            self.reset()
            return json_response({})


_CREATE_FIELDS = (
    "status",
    "status_detail",
    "external_reference",
    "preference_id",
    "transaction_amount",
    "currency_id",
    "payer",
    "metadata",
    "description",
    "payment_method_id",
    "payment_type_id",
)
_NOTIFY_OPTIONS = frozenset(
    {"action", "format", "requestId", "tsUnit", "lowercaseId", "signature", "ts", "dataId"}
)


def _check_status(status: str) -> None:
    if status not in PAYMENT_STATUSES:
        raise ControlError(f"status must be one of {', '.join(PAYMENT_STATUSES)}")


def _check_amount(amount: Any) -> float:
    if isinstance(amount, bool) or not isinstance(amount, int | float) or amount <= 0:
        raise ControlError("transaction_amount must be a positive number")
    return amount


def _send(
    method: str, target: str, headers: dict[str, str], body: bytes, timeout: float
) -> dict[str, Any]:
    """Deliver a built notification and describe what happened, failures included."""
    result: dict[str, Any] = {
        "status": None,
        "body": "",
        "headers": headers,
        "url": target,
        "payload": _json_loads(body),
    }
    try:
        answer = requests.request(method, target, headers=headers, data=body, timeout=timeout)
    except requests.RequestException as exc:
        result["error"] = f"{type(exc).__name__}: {exc}"
    else:
        result["status"] = answer.status_code
        result["body"] = answer.text
    return result


def _cents(amount: float) -> int:
    """Money as whole cents, so that refunds add up exactly."""
    return round(amount * 100)


def _remaining_cents(payment: dict[str, Any]) -> int:
    return _cents(payment["transaction_amount"]) - _cents(payment["transaction_amount_refunded"])


def _refund_cents(amount: Any) -> int:
    """Validate a requested refund amount the way Mercado Pago documents (causes 4041, 4040)."""
    if isinstance(amount, bool) or not isinstance(amount, int | float) or not math.isfinite(amount):
        raise ApiError(
            400,
            "bad_request",
            "amount attribute must be numeric",
            _cause(4041, "amount attribute must be numeric"),
        )
    if _cents(amount) <= 0:
        raise ApiError(
            400,
            "bad_request",
            "amount attribute must be positive",
            _cause(4040, "amount attribute must be positive"),
        )
    return _cents(amount)


def _append_query(url: str, query: str) -> str:
    """Add Mercado Pago's parameters after any the notification URL already carries."""
    base, hash_sign, fragment = url.partition("#")
    sep = "&" if "?" in base else "?"
    if base.endswith(("?", "&")):
        sep = ""
    return f"{base}{sep}{query}{hash_sign}{fragment}"


def _compact_json(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload, separators=(",", ":")).encode()


def _json_loads(body: bytes) -> Any:
    return json.loads(body) if body else None


def _refund_body() -> dict[str, Any] | None:
    """The refund request's JSON object; an empty body means a full refund; None if malformed."""
    raw = request.get_data()
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


def _json_object() -> dict[str, Any]:
    raw = request.get_json(force=True, silent=True)
    return dict(raw) if isinstance(raw, dict) else {}
