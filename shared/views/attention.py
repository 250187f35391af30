"""The "needs attention" queue of the admin console, and marking an item handled.

Two sources feed it, both written by the payment and calendar paths, never by the console:
bookings whose `needsAttention` says an admin must act (a refund, a chargeback, a class
cancelled in Google Calendar, a Meet link that failed...) and `payment_issues` (a payment
that matched no booking, an amount that differs...). The console only reads them, and
says what happened, when, and what the admin can do (`actions`).

Marking an item handled never changes or deletes what happened: it creates a marker in
`attention_handled/{key}` (who, when, an optional note), one per item and kind. The marker
lives apart because the producers overwrite their own documents (an issue recorded again
by a redelivered notification, for one) and must not erase that an admin dealt with it;
a booking whose attention changes to another kind is open again under that kind.
"""

from __future__ import annotations

import contextvars
import hashlib
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any
from zoneinfo import ZoneInfo

from shared import clock, logs
from shared.adapters import firestore
from shared.clock import ZONE, Deadline, local_iso, zone_named
from shared.domain.bookings import APPROVED, BookingStatus
from shared.domain.commands import HandledRequest
from shared.domain.writes import SERVER_TIME
from shared.errors import (
    Conflict,
    NotFound,
    UpstreamConflict,
)

__all__ = [
    "BOOKING_LIMIT",
    "ISSUE_LIMIT",
    "booking_item",
    "issue_item",
    "mark_handled",
    "read_attention",
]

BOOKING_LIMIT = 300
"""Bookings read per view: every booking that ever needed attention keeps its field, so the
query is bounded and the answer says when it was cut (`truncated`)."""
ISSUE_LIMIT = 200
"""The most recent payment issues read per view."""
HANDLED_SHOWN = 50
BOOKING_FIELDS = (
    "needsAttention",
    "classTitle",
    "status",
    "start",
    "end",
    "student",
    "teacher",
    "price",
    "paymentId",
    "paymentStatus",
    "refundId",
    "refundStatus",
    "meetLink",
    "htmlLink",
    "calendarStatus",
    "calendarCancelledAt",
    "endedAt",
    "updatedAt",
    "amountRefunded",
    "timeZone",
)
_pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="attention")


# -- reading ------------------------------------------------------------------------------


def read_attention(deadline: Deadline) -> dict[str, Any]:
    """Open items (newest first) and the ones handled lately, each with its actions."""
    flagged = firestore.bookings_needing_attention(BOOKING_FIELDS, BOOKING_LIMIT + 1)
    recent = firestore.recent_issues(ISSUE_LIMIT + 1)
    bookings = _background(lambda: firestore.stream(flagged, deadline, "read bookings to look at"))
    issues = firestore.stream(recent, deadline, "read payment issues")
    booking_snaps = bookings.result()
    truncated = len(booking_snaps) > BOOKING_LIMIT or len(issues) > ISSUE_LIMIT
    items = [booking_item(s.id, s.to_dict() or {}) for s in booking_snaps[:BOOKING_LIMIT]]
    items += [issue_item(s.id, s.to_dict() or {}) for s in issues[:ISSUE_LIMIT]]
    items = [item for item in items if item["kind"]]
    markers = firestore.get_many(
        [_marker_ref(item["id"], item["kind"]) for item in items],
        deadline,
        "read handled markers",
    )
    for item in items:
        marker = markers.get(_marker_ref(item["id"], item["kind"]).path)
        item["handled"] = _handled(marker.to_dict() or {}) if marker and marker.exists else None
        if item["handled"]:
            item["actions"] = [a for a in item["actions"] if a != "mark_handled"]
    open_items = sorted(
        (i for i in items if not i["handled"]), key=lambda i: i["when"] or "", reverse=True
    )
    handled = sorted(
        (i for i in items if i["handled"]), key=lambda i: i["handled"]["at"] or "", reverse=True
    )
    return {
        "items": open_items,
        "handled": handled[:HANDLED_SHOWN],
        "truncated": truncated,
        "checkedAt": local_iso(clock.now()),
    }


def booking_item(booking_id: str, data: dict[str, Any]) -> dict[str, Any]:
    """A booking that needs an admin: what happened, when, what can be done (mapper)."""
    kind = str(data.get("needsAttention") or "")
    status = str(data.get("status") or "")
    refundable = bool(
        data.get("paymentId") and data.get("paymentStatus") == APPROVED and not data.get("refundId")
    )
    actions = []
    if status in (BookingStatus.SCHEDULED, BookingStatus.PAID):
        actions.append("cancel")
    elif status in (BookingStatus.CANCELLED, BookingStatus.PAID_LATE) and refundable:
        actions.append("refund")
    if data.get("htmlLink"):
        actions.append("open_event")
    actions.append("mark_handled")
    when = data.get("updatedAt")
    if kind == "event_cancelled":
        when = data.get("calendarCancelledAt") or when
    elif kind.startswith("payment_"):
        when = data.get("endedAt") or when
    raw_price = data.get("price")
    price: dict[str, Any] = raw_price if isinstance(raw_price, dict) else {}
    return {
        "id": f"booking:{booking_id}",
        "source": "booking",
        "kind": kind,
        "when": local_iso(when),
        "bookingId": booking_id,
        "paymentId": _text(data.get("paymentId")),
        "booking": {
            "classTitle": _text(data.get("classTitle")),
            "status": status or None,
            "start": local_iso(data.get("start"), _zone(data)),
            "end": local_iso(data.get("end"), _zone(data)),
            "student": _person(data.get("student")),
            "teacher": _person(data.get("teacher")),
            "price": {
                "amount": _text(price.get("amount")),
                "currency": _text(price.get("currency")),
            },
            "paymentStatus": _text(data.get("paymentStatus")),
            "refundId": _text(data.get("refundId")),
            "refundStatus": _text(data.get("refundStatus")),
            "amountRefunded": _text(data.get("amountRefunded")),
            "calendarStatus": _text(data.get("calendarStatus")),
            "meetLink": _text(data.get("meetLink")),
            "htmlLink": _text(data.get("htmlLink")),
        },
        "details": {},
        "actions": actions,
        "handled": None,
    }


def issue_item(document_id: str, data: dict[str, Any]) -> dict[str, Any]:
    """A payment issue: the kind, the payment, the booking if any, and its details."""
    kind = str(data.get("kind") or "")
    booking_id = _text(data.get("bookingId"))
    actions = []
    # The booking was cancelled before this payment arrived and now carries it: refunding
    # the booking refunds exactly this payment (manage_booking, cancel with refund).
    if kind == "paid_cancelled_booking" and booking_id:
        actions.append("refund")
    actions.append("mark_handled")
    details = {
        key: _text(value)
        for key, value in sorted(data.items())
        if key not in ("kind", "paymentId", "bookingId", "createdAt")
        and isinstance(value, str | int | float)
        and not isinstance(value, bool)
    }
    return {
        "id": f"issue:{document_id}",
        "source": "payment_issue",
        "kind": kind,
        "when": local_iso(data.get("createdAt")),
        "bookingId": booking_id,
        "paymentId": _text(data.get("paymentId")),
        "booking": None,
        "details": details,
        "actions": actions,
        "handled": None,
    }


def _zone(data: dict[str, Any]) -> ZoneInfo:
    try:
        return zone_named(str(data.get("timeZone") or ZONE.key))
    except ValueError:
        return ZONE


def _text(value: Any) -> str | None:
    if value is None or isinstance(value, bool) or value == "":
        return None
    return str(value) if isinstance(value, str | int | float) else None


def _person(raw: Any) -> dict[str, str | None] | None:
    if not isinstance(raw, dict):
        return None
    return {"name": _text(raw.get("name")), "email": _text(raw.get("email"))}


def _handled(marker: dict[str, Any]) -> dict[str, Any]:
    return {"by": marker.get("by"), "at": local_iso(marker.get("at")), "note": marker.get("note")}


# -- marking handled ------------------------------------------------------------------------


def mark_handled(request: HandledRequest, admin: str, deadline: Deadline) -> dict[str, Any]:
    """Record that `admin` dealt with the item as it is now; the same request again answers
    the marker already made (who and when stay the first ones)."""
    ref = (
        firestore.booking_ref(request.document_id)
        if request.source == "booking"
        else firestore.issue_ref(request.document_id)
    )
    snap = firestore.get(ref, deadline, "read the item to mark handled")
    data = snap.to_dict() or {} if snap.exists else None
    if data is None:
        raise NotFound("no such item", itemId=request.item_id)
    current = data.get("needsAttention" if request.source == "booking" else "kind")
    if current != request.kind:
        raise Conflict(
            "this item changed since it was listed; reload the list", itemId=request.item_id
        )
    marker = _marker_ref(request.item_id, request.kind)
    document = {
        "itemId": request.item_id,
        "source": request.source,
        "kind": request.kind,
        "bookingId": request.document_id
        if request.source == "booking"
        else _text(data.get("bookingId")),
        "paymentId": _text(data.get("paymentId")),
        "by": admin,
        "at": SERVER_TIME,
        "note": request.note or None,
    }
    try:
        firestore.create(marker, document, deadline, "mark attention item handled")
        outcome = "handled"
    except UpstreamConflict:
        outcome = "already_handled"  # the first marker stays: who dealt with it, and when
    logs.info("attention item marked", item=request.item_id, kind=request.kind, outcome=outcome)
    made = firestore.get(marker, deadline, "read handled marker")
    return {
        "itemId": request.item_id,
        "kind": request.kind,
        "outcome": outcome,
        "handled": _handled(made.to_dict() or {}),
    }


def _marker_ref(item_id: str, kind: str) -> Any:
    """One marker per item and kind; hashed, because booking ids may be long."""
    key = hashlib.sha256(f"{item_id}\n{kind}".encode()).hexdigest()[:40]
    return firestore.handled_marker_ref(key)


def _background[R](work: Callable[[], R]) -> Future[R]:
    return _pool.submit(contextvars.copy_context().run, work)
