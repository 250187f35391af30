"""What every part of the Calendar emulator shares: Google's error shape, time and etag helpers.

Why a module of its own: the discovery checks, the usage limits, the store and the routes all
raise the same `CalendarError`, worded the way Google words it, and read times and etags the
same way; none of them should have to import another part to do so.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from flask import Response
from werkzeug.http import parse_etags, unquote_etag

from emulators._base import json_response
from emulators._status import HTTP_TO_GRPC

API_PREFIX = "/calendar/v3/"

_CANONICAL_MESSAGES = {
    "rateLimitExceeded": "Rate Limit Exceeded",
    "userRateLimitExceeded": "User Rate Limit Exceeded",
    "quotaExceeded": "Calendar usage limits exceeded.",
    "conditionNotMet": "Precondition Failed",
    # Not in Google's errors guide; the body public clients quote when they meet it.
    "forbiddenForServiceAccounts": (
        "Service accounts cannot invite attendees without Domain-Wide Delegation of Authority."
    ),
    "backendError": "Backend Error",
    "internalError": "Internal Error",
    "notFound": "Not Found",
    "forbidden": "Forbidden",
}
_USAGE_LIMIT_REASONS = frozenset(
    {"rateLimitExceeded", "userRateLimitExceeded", "quotaExceeded", "dailyLimitExceeded"}
)
_CALENDAR_REASONS = frozenset(
    {"timeRangeEmpty", "fullSyncRequired", "requiredAccessLevel", "forbiddenForServiceAccounts"}
)


def error_body(
    status: int,
    reason: str,
    message: str,
    *,
    domain: str | None = None,
    location: str | None = None,
    location_type: str | None = None,
) -> dict[str, Any]:
    """Google's JSON error shape; also the `error_body` of the shared fault injection.

    Injected faults arrive with a generic "Injected fault: ..." message; Google's own
    wording is used instead so client code sees what production would send.
    """
    if message.startswith("Injected fault") and reason in _CANONICAL_MESSAGES:
        message = _CANONICAL_MESSAGES[reason]
    if domain is None:
        if reason in _USAGE_LIMIT_REASONS:
            domain = "usageLimits"
        elif reason in _CALENDAR_REASONS:
            domain = "calendar"
        else:
            domain = "global"
    item: dict[str, Any] = {"domain": domain, "reason": reason, "message": message}
    if location:
        item["locationType"] = location_type or "parameter"
        item["location"] = location
    body: dict[str, Any] = {"code": status, "message": message, "errors": [item]}
    if status in HTTP_TO_GRPC:
        body["status"] = HTTP_TO_GRPC[status]
    return {"error": body}


class CalendarError(Exception):
    """An API error raised anywhere below the routes; rendered with `error_body`."""

    def __init__(
        self,
        status: int,
        reason: str,
        message: str,
        *,
        location: str | None = None,
        location_type: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason
        self.message = message
        self.location = location
        self.location_type = location_type

    def response(self) -> Response:
        body = error_body(
            self.status,
            self.reason,
            self.message,
            location=self.location,
            location_type=self.location_type,
        )
        return json_response(body, self.status)


def bad_request(
    message: str, location: str | None = None, reason: str = "invalid"
) -> CalendarError:
    """A 400, by default Google's `invalid` reason, naming the parameter at fault."""
    return CalendarError(400, reason, message, location=location)


def google_error(status: int, reason: str, **kw: Any) -> CalendarError:
    """An error worded exactly as Google words it (see `_CANONICAL_MESSAGES`)."""
    return CalendarError(status, reason, _CANONICAL_MESSAGES[reason], **kw)


def now_utc() -> datetime:
    return datetime.now(UTC)


def rfc3339(dt: datetime) -> str:
    """RFC 3339 in UTC with milliseconds, like Google's `created`/`updated`."""
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


def parse_query_time(value: str, name: str) -> datetime:
    """timeMin/timeMax/updatedMin: RFC 3339 with a mandatory offset."""
    try:
        dt = datetime.fromisoformat(value)
    except ValueError:
        raise bad_request("Bad Request", name, reason="badRequest") from None
    if dt.tzinfo is None:
        raise bad_request("Bad Request", name, reason="badRequest")
    return dt


def time_zone(name: str, which: str) -> ZoneInfo:
    """An IANA zone named in a request; a 400 naming `{which}.timeZone` when unknown."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise bad_request(
            f"Invalid time zone definition for {which} time.", f"{which}.timeZone"
        ) from None


def etag_listed(header: str, etag: str, *, weak: bool) -> bool:
    """Whether an If-Match (strong comparison) or If-None-Match (weak) header names `etag`.

    `*` names any existing resource, as in HTTP.
    """
    tags = parse_etags(header)
    value, _ = unquote_etag(etag)
    return tags.contains_weak(value) if weak else tags.contains(value)


def calendar_hash(calendar_id: str) -> str:
    """A short stable digest of a calendar id: etags and the tokens bound to one calendar."""
    return hashlib.sha256(calendar_id.encode()).hexdigest()[:12]


def email_domain(email: str) -> str:
    """The domain of an address, lowercased."""
    return email.rpartition("@")[2].lower()


__all__ = [
    "API_PREFIX",
    "CalendarError",
    "bad_request",
    "calendar_hash",
    "email_domain",
    "error_body",
    "etag_listed",
    "google_error",
    "now_utc",
    "parse_query_time",
    "rfc3339",
    "time_zone",
]
