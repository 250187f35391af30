"""Mercado Pago: reading payments, and turning a webhook delivery into a trusted notification.

A notification is only a hint: it carries a payment id, and the payment itself is always
read back from Mercado Pago with our access token. Webhooks are authenticated by their
`x-signature` before anything is read or written.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from mercadopago.webhook import InvalidWebhookSignatureError, WebhookSignatureValidator

from shared import clock
from shared.adapters.boundary import Upstream, call
from shared.adapters.clients import http_session
from shared.adapters.secret_manager import matching_secret, read_secret
from shared.clock import Deadline
from shared.config import get_settings
from shared.domain.bookings import Payment, amount_of
from shared.errors import (
    CredentialsRejected,
    Unauthenticated,
)

__all__ = [
    "Refund",
    "payment_from_api",
    "read_payment",
    "refund_payment",
    "signature_parts",
    "verify_signature",
]

MAX_SIGNATURE_CHARS = 256
_SIGNATURE_TS = re.compile(r"[0-9]{1,16}")  # seconds or milliseconds
_SIGNATURE_V1 = re.compile(r"[0-9a-fA-F]{64}")  # hex HMAC-SHA256


def payment_from_api(raw: dict[str, Any]) -> Payment:
    """The payment as the platform reads it, from Mercado Pago's JSON."""
    order = raw["order"] if isinstance(raw.get("order"), dict) else {}
    return Payment(
        id=str(raw.get("id", "")),
        status=str(raw.get("status") or ""),
        status_detail=str(raw.get("status_detail") or ""),
        external_reference=str(raw.get("external_reference") or ""),
        amount=amount_of(raw.get("transaction_amount")),
        currency=str(raw.get("currency_id") or ""),
        order_id=str(order.get("id") or ""),
        date_approved=raw.get("date_approved"),
        amount_refunded=amount_of(raw.get("transaction_amount_refunded")) or Decimal(0),
    )


def signature_parts(header: str) -> tuple[str, str]:
    """`ts` and `v1` of a well-formed `x-signature` (`ts=<digits>,v1=<hex>`), or 401.

    Checked before the SDK sees the header: its comparison raises TypeError on non-ASCII
    text. Other `key=value` parts (a future `v2`) are allowed and ignored.
    """
    if not header.isascii() or len(header) > MAX_SIGNATURE_CHARS:
        raise Unauthenticated("malformed x-signature header")
    parts: dict[str, str] = {}
    for part in header.split(","):
        key, equals, value = part.partition("=")
        key = key.strip().lower()
        if not equals or key in parts:
            raise Unauthenticated("malformed x-signature header")
        parts[key] = value.strip()
    ts, v1 = parts.get("ts", ""), parts.get("v1", "")
    if not _SIGNATURE_TS.fullmatch(ts) or not _SIGNATURE_V1.fullmatch(v1):
        raise Unauthenticated("malformed x-signature header")
    return ts, v1


def verify_signature(
    headers: dict[str, str], data_id: str | None, deadline: Deadline | None, now: float | None
) -> None:
    """Check `x-signature` with the webhook secret, in constant time, against replays.

    Mercado Pago's docs and SDKs disagree on two points, so each accepted reading still
    needs the secret: the id as sent or lower-cased, and `ts` in seconds or milliseconds.
    """
    signature = headers.get("x-signature", "")
    if not signature:
        raise Unauthenticated("missing x-signature header")
    ts, v1 = signature_parts(signature)
    # Before the secret: a replayed delivery costs no Secret Manager read.
    current = clock.now().timestamp() if now is None else now
    drift = min(abs(current - int(ts)), abs(current - int(ts) / 1000))
    if drift > get_settings().webhook_tolerance_seconds:
        raise Unauthenticated("webhook signature timestamp is outside the tolerance")
    checked = f"ts={ts},v1={v1}"  # what was validated above is exactly what the SDK reads
    request_id = headers.get("x-request-id") or None
    candidates = (
        [data_id] if not data_id or data_id == data_id.lower() else [data_id, data_id.lower()]
    )

    def signed_with(secret: str) -> bool:
        for candidate in candidates:
            try:
                WebhookSignatureValidator.validate(checked, request_id, candidate, secret)
            except InvalidWebhookSignatureError:
                continue
            return True
        return False

    # A warm instance may hold a rotated-out secret: a mismatch reads it once more.
    secret_id = get_settings().secrets.mercadopago_webhook_secret
    if matching_secret(secret_id, signed_with, deadline) is None:
        raise Unauthenticated("invalid webhook signature")


# -- Mercado Pago API ------------------------------------------------------------------


def _call(
    method: str,
    path: str,
    deadline: Deadline,
    *,
    body: dict[str, Any] | None = None,
    idempotency_key: str = "",
) -> dict[str, Any]:
    """One Mercado Pago API call with our access token, bounded by `deadline`.

    A refused token is read once more from Secret Manager, bypassing the cache (it may have
    been rotated meanwhile), before the refusal stands. Writes carry an idempotency key, so
    retrying them after a lost answer is safe.
    """
    settings = get_settings()
    url = f"{settings.mercadopago_api_base}{path}"

    def with_token(fresh: bool) -> dict[str, Any]:
        token = read_secret(settings.secrets.mercadopago_access_token, deadline, fresh=fresh)
        headers = {"Authorization": f"Bearer {token}"}
        if idempotency_key:
            headers["X-Idempotency-Key"] = idempotency_key

        def attempt(timeout: float) -> dict[str, Any]:
            response = http_session().request(
                method, url, headers=headers, json=body, timeout=timeout
            )
            response.raise_for_status()
            result: dict[str, Any] = response.json()
            return result

        return call(
            Upstream.MERCADO_PAGO,
            attempt,
            deadline,
            f"{method} {path.split('/')[1]}",
            attempt_timeout=settings.upstream_timeout_seconds,
        )

    try:
        return with_token(fresh=False)
    except CredentialsRejected:
        return with_token(fresh=True)


def read_payment(payment_id: str, deadline: Deadline) -> tuple[Payment, str]:
    """The payment, and the Checkout Pro preference it paid when it names no booking."""
    payment = payment_from_api(_call("GET", f"/v1/payments/{payment_id}", deadline))
    if payment.external_reference or not payment.order_id:
        return payment, ""
    order = _call("GET", f"/merchant_orders/{payment.order_id}", deadline)
    return payment, str(order.get("preference_id") or "")


@dataclass(frozen=True)
class Refund:
    """What Mercado Pago answered to a refund."""

    id: str
    status: str
    amount: str


def refund_payment(payment_id: str, idempotency_key: str, deadline: Deadline) -> Refund:
    """Refund the whole payment; the same key again returns the same refund, never a second.

    Mercado Pago then notifies the webhook of the refunded payment like any other change.
    """
    raw = _call(
        "POST",
        f"/v1/payments/{payment_id}/refunds",
        deadline,
        body={},
        idempotency_key=idempotency_key,
    )
    return Refund(str(raw.get("id") or ""), str(raw.get("status") or ""), str(raw.get("amount")))
