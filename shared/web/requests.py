"""Requests turned into the platform's commands: one body limit, one JSON reader, and a
parser per kind of request. Anything wrong is a 4xx naming the field; nothing here reads or
writes any store, so a refused request has changed nothing.
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from flask import Request

from shared import clock
from shared.adapters import firestore
from shared.adapters.mercadopago import verify_signature
from shared.clock import Deadline
from shared.config import get_settings
from shared.domain.commands import (
    BookingAction,
    HandledRequest,
    PaymentNotification,
    SessionAction,
    SessionRequest,
)
from shared.errors import InvalidRequest, PayloadTooLarge, Unauthenticated, UnsupportedMediaType

__all__ = [
    "MAX_BODY_BYTES",
    "IgnoredNotification",
    "json_object",
    "parse_booking_action",
    "parse_handled",
    "parse_notification",
    "parse_session_body",
    "parse_time",
    "read_body",
]

MAX_BODY_BYTES = 64 * 1024
"""Every request body, any function: far above any valid one (a payment notification is
under 1 KiB), far below what could hold a thread reading it."""


def json_object(body: bytes, content_type: str) -> dict[str, Any]:
    """A request body that must be one JSON object; anything else is a 4xx naming why.

    `RecursionError` too: thousands of nested brackets fit in any body limit.
    """
    if content_type.split(";")[0].strip().lower() != "application/json":
        raise UnsupportedMediaType("the body must be application/json")
    try:
        parsed = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise InvalidRequest("the body is not valid JSON") from exc
    if not isinstance(parsed, dict):
        raise InvalidRequest("the body must be a JSON object")
    return parsed


def read_body(request: Request, limit: int = MAX_BODY_BYTES) -> bytes:
    """At most `limit` bytes of the body; longer bodies are refused before being read."""
    if request.content_length is not None and request.content_length > limit:
        raise PayloadTooLarge(f"body larger than {limit} bytes")
    body = request.stream.read(limit + 1)
    if len(body) > limit:
        raise PayloadTooLarge(f"body larger than {limit} bytes")
    return body


MAX_REASON_CHARS = 500


ACTIONS = ("cancel", "reschedule")


_FIELDS = {
    "cancel": {"bookingId", "action", "reason", "refund"},
    "reschedule": {"bookingId", "action", "start", "end"},
}


def parse_booking_action(body: bytes, content_type: str) -> BookingAction:
    """The request's JSON, checked field by field; any problem is a 400 naming the field."""
    raw = json_object(body, content_type)
    kind = raw.get("action")
    if kind not in ACTIONS:
        raise InvalidRequest("action must be cancel or reschedule", parameter="action")
    unknown = sorted(set(raw) - _FIELDS[kind])
    if unknown:
        raise InvalidRequest(f"unknown field for {kind}: {unknown[0]}", parameter=unknown[0])
    booking_id = raw.get("bookingId")
    if not isinstance(booking_id, str) or not firestore.is_booking_id(booking_id):
        raise InvalidRequest("bookingId must name a booking", parameter="bookingId")
    if kind == "cancel":
        reason = raw.get("reason", "")
        refund = raw.get("refund", False)
        if not isinstance(reason, str) or len(reason) > MAX_REASON_CHARS:
            raise InvalidRequest(
                f"reason must be text of at most {MAX_REASON_CHARS} characters", parameter="reason"
            )
        if not isinstance(refund, bool):
            raise InvalidRequest("refund must be true or false", parameter="refund")
        return BookingAction(booking_id, kind, reason=reason.strip(), refund=refund)
    start, end = parse_time(raw.get("start"), "start"), parse_time(raw.get("end"), "end")
    if end <= start:
        raise InvalidRequest("end must be after start", parameter="end")
    return BookingAction(booking_id, kind, start=start, end=end)


def parse_time(raw: Any, name: str) -> datetime:
    """ISO 8601 date and time; without an offset it is Buenos Aires wall-clock time."""
    readable = isinstance(raw, str) and raw.isascii() and "T" in raw.upper() and len(raw) <= 40
    value = clock.parse_local(raw) if readable else None
    if value is None or not 2000 <= value.year <= 2200:
        raise InvalidRequest(
            f"{name} must be an ISO 8601 date and time, e.g. 2026-12-01T18:00:00-03:00",
            parameter=name,
        )
    return value


MAX_CAPACITY = 500


_CREATE_FIELDS = {"sessionId", "title", "teacher", "start", "end", "capacity", "price"}


_ACTION_FIELDS = {"sessionId", "action", "refund", "reason", "start", "end"}


def parse_session_body(body: bytes, content_type: str) -> SessionRequest | SessionAction:
    raw = json_object(body, content_type)
    return _action(raw) if "action" in raw else _new_session(raw)


def _field_error(name: str, what: str) -> InvalidRequest:
    return InvalidRequest(f"{name} must be {what}", parameter=name)


def _session_id(raw: Any, required: bool) -> str:
    if raw is None and not required:
        return ""
    if not isinstance(raw, str) or not firestore.is_booking_id(raw) or len(raw) > 128:
        raise _field_error("sessionId", "a short id without slashes")
    return raw


def _times(raw: dict[str, Any]) -> tuple[datetime, datetime]:
    start, end = parse_time(raw.get("start"), "start"), parse_time(raw.get("end"), "end")
    if not start < end <= start + timedelta(hours=12):
        raise _field_error("end", "after start, at most 12 hours later")
    return start, end


def _new_session(raw: dict[str, Any]) -> SessionRequest:
    unknown = sorted(set(raw) - _CREATE_FIELDS)
    if unknown:
        raise InvalidRequest(f"unknown field: {unknown[0]}", parameter=unknown[0])
    title = raw.get("title")
    if not isinstance(title, str) or not 0 < len(title.strip()) <= 200:
        raise _field_error("title", "text of 1 to 200 characters")
    teacher = raw.get("teacher")
    if not isinstance(teacher, dict) or not isinstance(teacher.get("email"), str):
        raise _field_error("teacher", "an object with name and email")
    email, name = teacher["email"].strip(), teacher.get("name", "")
    if "@" not in email or len(email) > 254 or not isinstance(name, str) or len(name) > 200:
        raise _field_error("teacher", "an object with a name and a valid email")
    capacity = raw.get("capacity")
    if not isinstance(capacity, int) or isinstance(capacity, bool):
        raise _field_error("capacity", f"an integer from 1 to {MAX_CAPACITY}")
    if not 1 <= capacity <= MAX_CAPACITY:
        raise _field_error("capacity", f"an integer from 1 to {MAX_CAPACITY}")
    price = raw.get("price")
    amount = price.get("amount") if isinstance(price, dict) else None
    currency = price.get("currency") if isinstance(price, dict) else None
    try:
        valid_amount = (
            not isinstance(amount, bool)
            and isinstance(amount, int | float | str)
            and Decimal(str(amount)).is_finite()
            and Decimal(str(amount)) > 0
        )
    except InvalidOperation:
        valid_amount = False
    if not valid_amount or not isinstance(currency, str) or len(currency) != 3:
        raise _field_error("price", "an object with a positive amount and a currency code")
    start, end = _times(raw)
    chosen = _session_id(raw.get("sessionId"), required=False)
    return SessionRequest(
        session_id=chosen or f"ses-{uuid.uuid4().hex[:16]}",
        title=title.strip(),
        teacher={"name": name.strip(), "email": email.lower()},
        start=start,
        end=end,
        capacity=capacity,
        price={"amount": amount, "currency": currency.upper()},
        chosen_id=bool(chosen),
    )


def _action(raw: dict[str, Any]) -> SessionAction:
    unknown = sorted(set(raw) - _ACTION_FIELDS)
    if unknown:
        raise InvalidRequest(f"unknown field: {unknown[0]}", parameter=unknown[0])
    session_id = _session_id(raw.get("sessionId"), required=True)
    kind = raw.get("action")
    if kind == "cancel":
        refund, reason = raw.get("refund", False), raw.get("reason", "")
        if not isinstance(refund, bool):
            raise _field_error("refund", "true or false")
        if not isinstance(reason, str) or len(reason) > 500:
            raise _field_error("reason", "text of at most 500 characters")
        return SessionAction(session_id, kind, refund=refund, reason=reason.strip())
    if kind == "reschedule":
        start, end = _times(raw)
        return SessionAction(session_id, kind, start=start, end=end)
    raise _field_error("action", "cancel or reschedule")


MAX_NOTE_CHARS = 500


_KIND = re.compile(r"[a-z0-9_]{1,64}")


_SOURCES = {"booking": "booking", "issue": "payment_issue"}


def parse_handled(body: bytes, content_type: str) -> HandledRequest:
    """The request's JSON, field by field; anything wrong is a 400 naming the field."""
    raw = json_object(body, content_type)
    if raw.get("action") != "mark_handled":
        raise InvalidRequest("action must be mark_handled", parameter="action")
    unknown = sorted(set(raw) - {"action", "itemId", "kind", "note"})
    if unknown:
        raise InvalidRequest(f"unknown field: {unknown[0]}", parameter=unknown[0])
    item_id = raw.get("itemId")
    if not isinstance(item_id, str):
        item_id = ""
    prefix, _, document_id = item_id.partition(":")
    if prefix not in _SOURCES or not firestore.is_booking_id(document_id):
        raise InvalidRequest(
            "itemId must be booking:<booking id> or issue:<issue id>", parameter="itemId"
        )
    kind = raw.get("kind")
    if not isinstance(kind, str) or not _KIND.fullmatch(kind):
        raise InvalidRequest("kind must be the item's kind, as listed", parameter="kind")
    note = raw.get("note", "")
    if not isinstance(note, str) or len(note) > MAX_NOTE_CHARS:
        raise InvalidRequest(
            f"note must be text of at most {MAX_NOTE_CHARS} characters", parameter="note"
        )
    return HandledRequest(item_id, _SOURCES[prefix], document_id, kind, note.strip())


_PAYMENT_ID = re.compile(r"[0-9]{1,20}")  # ASCII digits: str.isdigit accepts "²" and "١٢٣"


@dataclass(frozen=True)
class IgnoredNotification:
    """A delivery about something other than a payment (merchant orders, tests...)."""

    topic: str


def parse_notification(
    args: dict[str, str],
    headers: dict[str, str],
    body: bytes,
    content_type: str,
    *,
    deadline: Deadline | None = None,
    now: float | None = None,
) -> PaymentNotification | IgnoredNotification:
    """Authenticate and parse one delivery; raises a `RequestError` for anything bad.

    `headers` must have lower-case keys. Nothing here touches Firestore or Mercado Pago,
    so a rejected delivery has read and written nothing; reading the webhook secret stays
    within `deadline`.
    """
    if len(body) > MAX_BODY_BYTES:
        raise InvalidRequest("notification body is too large")
    settings = get_settings()
    topic = args.get("topic")
    if topic is not None and "data.id" not in args:
        # Legacy IPN: `?topic=payment&id=...`, no body worth reading and no signature.
        if topic != "payment":
            return IgnoredNotification(topic or "unknown")
        payment_id = _payment_id(args.get("id"))
        if headers.get("x-signature"):
            verify_signature(headers, args.get("id"), deadline, now)
        elif not settings.accept_unsigned_ipn:
            raise Unauthenticated("unsigned IPN deliveries are not accepted here")
        return PaymentNotification(payment_id, "ipn", "ipn", headers.get("x-request-id", ""))

    verify_signature(headers, args.get("data.id"), deadline, now)
    payload = json_object(body, content_type) if body.strip() else {}
    kind = str(args.get("type") or payload.get("type") or "unknown")
    if kind != "payment":
        return IgnoredNotification(kind)
    data = payload["data"] if isinstance(payload.get("data"), dict) else {}
    body_id = data.get("id")
    query_id = args.get("data.id")
    if not query_id:
        raise InvalidRequest("data.id is missing from the query string (the signed id)")
    if body_id is not None and str(body_id) != query_id:
        raise InvalidRequest("data.id differs between query string and body")
    return PaymentNotification(
        _payment_id(query_id),
        "webhook",
        str(payload.get("action") or "payment"),
        headers.get("x-request-id", ""),
    )


def _payment_id(raw: Any) -> str:
    """Mercado Pago payment ids are numbers: anything else is refused before any call."""
    value = str(raw or "").strip()
    if not _PAYMENT_ID.fullmatch(value):
        raise InvalidRequest("notification does not name a valid payment id (ASCII digits)")
    return value
