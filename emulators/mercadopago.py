"""Local Mercado Pago API emulator with a webhook sender.

Mercado Pago ships no emulator, and its sandbox cannot be driven into a chosen payment status on
demand, so the platform's payment code is tested against this server instead. It answers the two
read endpoints the platform uses, with Mercado Pago's field names and error bodies:

- `GET /v1/payments/{id}`          (`Authorization: Bearer <access_token>`)
- `GET /merchant_orders/{id}`      (same)

Errors look like Mercado Pago's: `{"message", "error", "status", "cause": [...]}`; an unknown
payment is a 404 "Payment not found" with cause code 2000.

Control routes (never part of the real API; no token needed, no faults injected):

- `POST  /_emulator/mercadopago/payments`
  {"status": "approved", "status_detail"?: str, "external_reference"?: str|null,
  "preference_id"?: str, "transaction_amount": 1500.0, "currency_id"?: "ARS",
  "payer"?: {"email": ...}, "metadata"?: {...}, "description"?: str,
  "payment_method_id"?: str, "payment_type_id"?: str}
  -> 201 with the payment JSON. The payment joins the merchant order of its `preference_id`
  (created on first use; a preference id is generated when absent) and points to it through
  `order.id`.
- `PATCH /_emulator/mercadopago/payments/{id}` {"status": ..., "status_detail"?: ...}
  -> the payment JSON, with `date_approved` / `date_last_updated` moved as Mercado Pago does.
- `POST  /_emulator/mercadopago/payments/{id}/notify`
  {"url": ..., "secret": ..., "action"?: "payment.updated" | "payment.created",
  "format"?: "webhook" | "ipn", "requestId"?: str, "tsUnit"?: "s" | "ms",
  "lowercaseId"?: false, "signature"?: "valid" | "forged" | "missing", "ts"?: int,
  "dataId"?: str}
  -> {"status": <receiver's HTTP status, null if unreachable>, "body": <receiver's text>,
  "headers": <headers sent>, "url": <url posted to>, "payload": <JSON sent, or null>,
  "error"?: <why the delivery failed>}
- `POST  /_emulator/mercadopago/reset` forgets every payment and merchant order.

The same operations exist as methods for in-process use: `create_payment`, `set_status`,
`notify`, `reset`; `sign` is the signing rule as a pure function.
"""

from __future__ import annotations

import copy
import hashlib
import hmac
import itertools
import json
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

WEBHOOK_TIMEOUT_SECONDS = 22.0  # how long Mercado Pago waits for the receiver's answer
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
        # Realistic magnitudes so ids never collide with small test integers.
        self._payment_ids = itertools.count(1_320_000_001)
        self._order_ids = itertools.count(21_000_000_001)
        self._notification_ids = itertools.count(118_000_000_001)
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
                "transaction_amount_refunded": amount if status == "refunded" else 0,
                "installments": 1,
                "transaction_details": {
                    "net_received_amount": amount,
                    "total_paid_amount": amount,
                    "installment_amount": amount,
                },
            }
            self._payments[payment_id] = payment
            order["payment_ids"].append(payment_id)
            return copy.deepcopy(payment)

    def set_status(
        self, payment_id: int, status: str, status_detail: str | None = None
    ) -> dict[str, Any]:
        """Move a payment to another status, stamping the dates Mercado Pago would stamp."""
        _check_status(status)
        with self._lock:
            payment = self._payments.get(int(payment_id))
            if payment is None:
                raise KeyError(payment_id)
            now = _now_mp()
            if status in _APPROVED_AT_SOME_POINT:
                payment["date_approved"] = payment["date_approved"] or now
            else:
                payment["date_approved"] = None
            payment["status"] = status
            payment["status_detail"] = status_detail or DEFAULT_STATUS_DETAIL[status]
            payment["transaction_amount_refunded"] = (
                payment["transaction_amount"] if status == "refunded" else 0
            )
            payment["date_last_updated"] = now
            order = self._orders[int(payment["order"]["id"])]
            order["last_updated"] = now
            return copy.deepcopy(payment)

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
        """Forget all payments and merchant orders (ids keep increasing, as upstream)."""
        with self._lock:
            self._payments.clear()
            self._orders.clear()
            self._order_by_preference.clear()

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
        refunded = sum(p["transaction_amount"] for p in payments if p["status"] == "refunded")
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
            result: dict[str, Any] = {
                "status": None,
                "body": "",
                "headers": headers,
                "url": target,
                "payload": _json_loads(body),
            }
            try:
                answer = requests.request(
                    method, target, headers=headers, data=body, timeout=self.webhook_timeout
                )
            except requests.RequestException as exc:
                result["error"] = f"{type(exc).__name__}: {exc}"
            else:
                result["status"] = answer.status_code
                result["body"] = answer.text
            return json_response(result)

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


def _json_object() -> dict[str, Any]:
    raw = request.get_json(force=True, silent=True)
    return dict(raw) if isinstance(raw, dict) else {}
