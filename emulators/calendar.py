"""Google Calendar API v3 emulator: the subset of events our platform relies on, served locally.

Why: there is no official Calendar emulator, and the booking flow depends on details that
are easy to get wrong (client-chosen ids and 409s, Meet links only with
`conferenceDataVersion=1`, incremental sync with 410s, push notifications). The production
client (`googleapiclient` built from its static discovery document) talks to this server
unchanged with `client_options={"api_endpoint": "<url>/calendar/v3/"}`.

Every request is checked against the discovery document shipped with
google-api-python-client: path template and HTTP method, known query parameters (unknown
ones answer 400 as Google does), types, enums and required parameters. Implemented:
`events.insert/get/list/patch/update/delete/watch`, `channels.stop`, `calendars.get` and
`calendarList.get`; every other discovered method answers 501. Any calendar id works
(calendars spring into existence on first use). Calls need `Authorization: Bearer <token>`
accepted by `check_access_token`, else 401; read methods of a calendar (`events.list`,
`events.get`, `calendars.get`) also accept an API key alone (`key=`), as Google does for
calendars made public (every calendar counts as public here; the key's value is not checked).

What group classes and enrollment bursts rely on, as Google documents it:

- Every event carries an `etag` that changes with every modification. `events.patch`,
  `events.update` and `events.delete` with `If-Match: <etag>` answer 412 `conditionNotMet`
  when the event changed since; `events.get` with `If-None-Match: <etag>` answers 304 (no
  body) while it has not. googleapiclient sends them when set on the request object
  (`request.headers["If-Match"] = etag`). Inserts have no conditional form.
- `events.patch` replaces any array it is given whole (`attendees` included) and merges
  objects; `null` removes a field.
- `guestsCanSeeOtherGuests` is stored and returned; the organizer's copy, the only one served
  here, always lists every attendee.
- `sendUpdates` decides who is emailed; each email is logged with its kind: `invitation` for
  a guest who is new to the event, `update` for a guest who stays on an event that changed,
  `cancel` for a guest who was removed or whose event was cancelled or deleted. `all` emails
  every guest, `externalOnly` the guests who do not use Google Calendar (here: addresses
  outside gmail.com, googlemail.com, google.com and the organizer's domain), `none` (the
  default) nobody. The organizer is never emailed.
- A token of a service account acting as itself (its email is `...gserviceaccount.com`;
  with domain-wide delegation `token_email` names the impersonated user instead) may not
  add attendees: 403 `forbiddenForServiceAccounts`.
- Usage limits are off until `/_emulator/calendar/quota` turns them on.

Control routes (never part of the emulated API; the shared ones are in `_base.py`):

- `POST /_emulator/calendar/conference` {"pendingGets": 2, "statusCode": "success"}:
  conferences created from now on stay `pending` (no hangoutLink/entryPoints) for
  `pendingGets` `events.get` calls, then turn `statusCode` ("success" or "failure").
  `GET` on the same route shows the current setting.
- `POST /_emulator/calendar/expire-sync-tokens`: every sync token (and the page tokens of
  incremental syncs) issued so far answers 410 `fullSyncRequired`.
- `GET /_emulator/calendar/deliveries`: push-notification log, oldest first:
  [{"channelId", "resourceId", "state", "messageNumber", "address", "status", "error"}]
  (`status` is the receiver's HTTP status, null when it could not be reached).
  `?wait=1` first waits (up to 5 s) until every queued delivery was attempted.
- `GET /_emulator/calendar/channels`: active channels.
- `GET /_emulator/calendar/invitations`: the emails `sendUpdates` "sent", one entry per API
  call that sent any: {"total": <emails>, "log": [{"calendarId", "eventId", "action"
  ("insert", "update", "cancel" or "delete"), "sendUpdates", "recipients": [email, ...],
  "emails": [{"to": email, "kind": "invitation" | "update" | "cancel"}, ...],
  "guestsCanSeeOtherGuests": bool}]}.
- `POST /_emulator/calendar/forbid` {"calendarId", "email"}: the account `email` (every
  account when empty) can no longer see the calendar: its bearer calls on it answer 404
  `notFound`, as Google answers for a calendar not shared with the account. Needs the
  `token_email` lookup (the OAuth emulator's) to know whose token a call carries.
- `POST /_emulator/calendar/quota` turns usage limits on, replacing the settings and clearing
  the counters; every key is optional: {"requestsPerMinute": 300 (per user; null: no
  limit), "requestWindowSeconds": 60, "rateLimitStatus": 403 | 429, "rateLimitReason":
  "rateLimitExceeded" | "userRateLimitExceeded" (403 only), "invitationsPerWindow": 50
  (emails to external guests per calendar; null: no limit), "invitationWindowSeconds": 60,
  "limitedForSeconds": 60 (default: the invitation window), "readOnlyWhenLimited": false
  (true: a limited calendar refuses every write, not only those that email external
  guests), "internalDomains": ["example.edu"] (besides the organizer's own domain)}.
  Past `requestsPerMinute` a user's calls answer `rateLimitStatus`/`rateLimitReason`;
  a call that would take a calendar past `invitationsPerWindow` answers 403 `quotaExceeded`
  and leaves the calendar limited for `limitedForSeconds`, during which every call that
  would email an external guest answers the same. Refused calls change nothing and are not
  counted. `GET` shows {"settings", "requests": {user: n}, "externalEmails": {calendarId:
  n}, "limited": {calendarId: seconds left}, "rejected": {reason: n}}; `DELETE` turns the
  limits off and clears the counters.
- `POST /_emulator/calendar/reset`: drops every event, channel, delivery, invitation and
  forbidden calendar, restores the conference setting, turns usage limits off (counters
  cleared) and expires every sync token.
"""

from __future__ import annotations

import base64
import dataclasses
import email.utils
import hashlib
import http.client
import itertools
import json
import os
import queue
import threading
import time
import uuid
from collections import Counter, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import googleapiclient
from flask import Response, request
from werkzeug.datastructures import MultiDict
from werkzeug.http import parse_etags, unquote_etag

from emulators._base import EmulatorApp, json_response

API_PREFIX = "/calendar/v3/"
DEFAULT_CHANNEL_TTL_S = 604800
DEFAULT_MAX_RESULTS = 250
MAX_RESULTS_CAP = 2500
EVENT_ID_CHARS = frozenset("abcdefghijklmnopqrstuv0123456789")
CHANNEL_ID_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_+/=")
# Standard system parameters every Google API accepts besides the discovered ones.
SYSTEM_PARAMS = frozenset({"access_token", "callback", "$.xgafv", "upload_protocol", "uploadType"})
# Read methods Google serves to `key=` callers (no OAuth) on calendars made public.
PUBLIC_READ_METHODS = frozenset(
    {"calendar.events.list", "calendar.events.get", "calendar.calendars.get"}
)
SYNC_FORBIDDEN = (
    "timeMin",
    "timeMax",
    "orderBy",
    "q",
    "privateExtendedProperty",
    "sharedExtendedProperty",
    "updatedMin",
    "iCalUID",
)
MEET_ICON = (
    "https://fonts.gstatic.com/s/i/productlogos/meet_2020q4/v6/web-512dp/"
    "logo_meet_2020q4_color_2x_web_512dp.png"
)
NOTIFY_USER_AGENT = "APIs-Google; (+https://developers.google.com/webmasters/APIs-Google.html)"

# -- errors -------------------------------------------------------------------------------

_STATUS_NAMES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    409: "ALREADY_EXISTS",
    410: "FAILED_PRECONDITION",  # Google sends no canonical status for 410; closest match
    412: "FAILED_PRECONDITION",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    501: "UNIMPLEMENTED",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}
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
# Guests at these domains use Google Calendar: `sendUpdates=externalOnly` skips them.
GOOGLE_CALENDAR_DOMAINS = frozenset({"gmail.com", "googlemail.com", "google.com"})


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
    if status in _STATUS_NAMES:
        body["status"] = _STATUS_NAMES[status]
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


def _bad(message: str, location: str | None = None, reason: str = "invalid") -> CalendarError:
    return CalendarError(400, reason, message, location=location)


def _google(status: int, reason: str, **kw: Any) -> CalendarError:
    """An error worded exactly as Google words it (see `_CANONICAL_MESSAGES`)."""
    return CalendarError(status, reason, _CANONICAL_MESSAGES[reason], **kw)


# -- discovery ----------------------------------------------------------------------------


@dataclass(frozen=True)
class ParamSpec:
    name: str
    location: str
    type: str
    repeated: bool = False
    required: bool = False
    enum: tuple[str, ...] = ()
    minimum: int | None = None
    maximum: int | None = None

    @classmethod
    def from_json(cls, name: str, raw: dict[str, Any]) -> ParamSpec:
        return cls(
            name=name,
            location=raw.get("location", "query"),
            type=raw.get("type", "string"),
            repeated=bool(raw.get("repeated", False)),
            required=bool(raw.get("required", False)),
            enum=tuple(raw.get("enum", ())),
            minimum=int(raw["minimum"]) if "minimum" in raw else None,
            maximum=int(raw["maximum"]) if "maximum" in raw else None,
        )


@dataclass(frozen=True)
class MethodSpec:
    id: str
    http_method: str
    path: str
    params: dict[str, ParamSpec]

    @property
    def flask_rule(self) -> str:
        return API_PREFIX + self.path.replace("{", "<").replace("}", ">")


def discovery_path() -> str:
    """The calendar.v3 document shipped inside google-api-python-client (static discovery)."""
    base = os.path.dirname(googleapiclient.__file__)
    return os.path.join(base, "discovery_cache", "documents", "calendar.v3.json")


def load_method_specs(path: str | None = None) -> tuple[list[MethodSpec], dict[str, ParamSpec]]:
    """All discovered methods plus the API-wide parameters (alt, fields, ...)."""
    with open(path or discovery_path(), encoding="utf-8") as fh:
        doc = json.load(fh)
    global_params = {n: ParamSpec.from_json(n, p) for n, p in doc.get("parameters", {}).items()}
    specs: list[MethodSpec] = []

    def walk(resources: dict[str, Any]) -> None:
        for resource in resources.values():
            for method in resource.get("methods", {}).values():
                params = {
                    n: ParamSpec.from_json(n, p) for n, p in method.get("parameters", {}).items()
                }
                specs.append(MethodSpec(method["id"], method["httpMethod"], method["path"], params))
            walk(resource.get("resources", {}))

    walk(doc.get("resources", {}))
    return specs, global_params


def _coerce(spec: ParamSpec, raw: str) -> Any:
    """Parse one query value the way Google's front end does (types, enums, bounds)."""
    if spec.type == "integer":
        try:
            value: Any = int(raw)
        except ValueError:
            raise _bad(
                f"Invalid value '{raw}'. Values must match the following regular "
                f"expression: '-?\\d+'",
                spec.name,
            ) from None
        if spec.minimum is not None and value < spec.minimum:
            raise _bad(
                f"Invalid value '{raw}'. Values must be greater than or equal to {spec.minimum}.",
                spec.name,
            )
        if spec.maximum is not None and value > spec.maximum:
            raise _bad(
                f"Invalid value '{raw}'. Values must be less than or equal to {spec.maximum}.",
                spec.name,
            )
        return value
    if spec.type == "boolean":
        lowered = raw.lower()
        if lowered not in ("true", "false"):
            raise _bad(f"Invalid value '{raw}'. Values must be true or false.", spec.name)
        return lowered == "true"
    if spec.enum and raw not in spec.enum:
        raise _bad(f"Invalid value for: {spec.name}", spec.name)
    return raw


def validate_query(
    spec: MethodSpec, global_params: dict[str, ParamSpec], args: MultiDict[str, str]
) -> dict[str, Any]:
    """Checks the query string against the discovery document; returns parsed values."""
    parsed: dict[str, Any] = {}
    for name in args:
        values = args.getlist(name)
        pspec = spec.params.get(name) or global_params.get(name)
        if pspec is None or pspec.location == "path":
            if name in SYSTEM_PARAMS:
                continue
            raise CalendarError(
                400,
                "badRequest",
                f'Invalid JSON payload received. Unknown name "{name}": Cannot bind query '
                f"parameter. Field '{name}' could not be found in request message.",
            )
        if pspec.repeated:
            parsed[name] = [_coerce(pspec, v) for v in values]
        else:
            if len(values) > 1:
                raise _bad(f"Parameter '{name}' cannot be repeated.", name)
            parsed[name] = _coerce(pspec, values[0])
    for pspec in spec.params.values():
        if pspec.location == "query" and pspec.required and pspec.name not in parsed:
            raise CalendarError(
                400, "required", "Required parameter is missing", location=pspec.name
            )
    if parsed.get("alt", "json") != "json":
        raise _bad("Only alt=json is supported by this API method.", "alt")
    return parsed


# -- time helpers -------------------------------------------------------------------------


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
        raise _bad("Bad Request", name, reason="badRequest") from None
    if dt.tzinfo is None:
        raise _bad("Bad Request", name, reason="badRequest")
    return dt


def _zone(name: str, which: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise _bad(f"Invalid time zone definition for {which} time.", f"{which}.timeZone") from None


def normalize_when(raw: Any, which: str) -> tuple[dict[str, Any], datetime]:
    """Validates an EventDateTime; returns it as Google would echo it, plus its instant.

    A dateTime is rendered in its timeZone when one is given (Google does the same); a
    naive dateTime needs a timeZone. All-day `date` values count from midnight UTC.
    """
    if not isinstance(raw, dict):
        raise CalendarError(400, "required", f"Missing {which} time.")
    out = {k: v for k, v in raw.items() if k in ("date", "dateTime", "timeZone")}
    tz_name = raw.get("timeZone")
    tz = _zone(tz_name, which) if tz_name else None
    if raw.get("dateTime"):
        try:
            dt = datetime.fromisoformat(str(raw["dateTime"]))
        except ValueError:
            raise _bad(f"Invalid {which} time.", f"{which}.dateTime") from None
        if dt.tzinfo is None:
            if tz is None:
                raise CalendarError(
                    400, "required", f"Missing time zone definition for {which} time."
                )
            dt = dt.replace(tzinfo=tz)
        if tz is not None:
            dt = dt.astimezone(tz)
        out["dateTime"] = dt.isoformat(timespec="seconds")
        out.pop("date", None)
        return out, dt
    if raw.get("date"):
        try:
            day = datetime.strptime(str(raw["date"]), "%Y-%m-%d").replace(tzinfo=UTC)
        except ValueError:
            raise _bad(f"Invalid {which} time.", f"{which}.date") from None
        out.pop("dateTime", None)
        return out, day
    raise CalendarError(400, "required", f"Missing {which} time.")


# -- tokens -------------------------------------------------------------------------------


def _encode_token(prefix: str, payload: dict[str, Any]) -> str:
    raw = json.dumps(payload, separators=(",", ":")).encode()
    return prefix + base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_token(prefix: str, token: str) -> dict[str, Any] | None:
    if not token.startswith(prefix):
        return None
    body = token[len(prefix) :]
    try:
        data = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    except (ValueError, TypeError):
        return None
    return data if isinstance(data, dict) else None


def etag_listed(header: str, etag: str, *, weak: bool) -> bool:
    """Whether an If-Match (strong comparison) or If-None-Match (weak) header names `etag`.

    `*` names any existing resource, as in HTTP.
    """
    tags = parse_etags(header)
    value, _ = unquote_etag(etag)
    return tags.contains_weak(value) if weak else tags.contains(value)


def _calendar_hash(calendar_id: str) -> str:
    return hashlib.sha256(calendar_id.encode()).hexdigest()[:12]


def meet_code(seed: str) -> str:
    """A deterministic xxx-xxxx-xxx Meet code derived from the conference request id."""
    digest = hashlib.sha256(seed.encode()).digest()
    letters = "".join(chr(ord("a") + b % 26) for b in digest[:10])
    return f"{letters[:3]}-{letters[3:7]}-{letters[7:10]}"


# -- callers and usage limits ---------------------------------------------------------


def _domain(email: str) -> str:
    return email.rpartition("@")[2].lower()


@dataclass(frozen=True)
class Caller:
    """Who a call comes from, as far as the bearer token tells.

    `email` is what `token_email` answers: the account, or with domain-wide delegation the
    user a service account acts as. That is how Google tells them apart too: a service
    account acting as itself is an `...gserviceaccount.com` principal.
    """

    key: str  # the per-user quota bucket
    email: str | None = None

    @property
    def undelegated_service_account(self) -> bool:
        domain = _domain(self.email or "")
        return domain == "gserviceaccount.com" or domain.endswith(".gserviceaccount.com")


def _seconds(raw: dict[str, Any], name: str, default: float | None) -> float | None:
    value = raw.get(name, default)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise ValueError(f"{name}: a positive number of seconds")
    return float(value)


def _count(raw: dict[str, Any], name: str) -> int | None:
    value = raw.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{name}: a non-negative integer or null")
    return value


@dataclass(frozen=True)
class QuotaSettings:
    """The usage limits in force; the defaults limit nothing (quota mode off)."""

    requests_per_minute: int | None = None
    request_window_s: float = 60.0
    rate_limit_status: int = 403
    rate_limit_reason: str = "rateLimitExceeded"
    invitations_per_window: int | None = None
    invitation_window_s: float = 60.0
    limited_for_s: float | None = None  # None: as long as the invitation window
    read_only_when_limited: bool = False
    internal_domains: tuple[str, ...] = ()

    _KEYS = frozenset(
        {
            "requestsPerMinute",
            "requestWindowSeconds",
            "rateLimitStatus",
            "rateLimitReason",
            "invitationsPerWindow",
            "invitationWindowSeconds",
            "limitedForSeconds",
            "readOnlyWhenLimited",
            "internalDomains",
        }
    )

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> QuotaSettings:
        """Validates a control-route body; ValueError says what is wrong."""
        unknown = sorted(set(raw) - cls._KEYS)
        if unknown:
            raise ValueError(f"unknown keys: {', '.join(unknown)}")
        status = raw.get("rateLimitStatus", 403)
        reason = raw.get("rateLimitReason", "rateLimitExceeded")
        # Google's errors guide: rateLimitExceeded comes as 403 or 429,
        # userRateLimitExceeded as 403 only.
        if (status, reason) not in {
            (403, "rateLimitExceeded"),
            (429, "rateLimitExceeded"),
            (403, "userRateLimitExceeded"),
        }:
            raise ValueError(
                "rateLimitStatus/rateLimitReason: 403 or 429 with rateLimitExceeded, "
                "403 with userRateLimitExceeded"
            )
        domains = raw.get("internalDomains", [])
        if not isinstance(domains, list) or not all(isinstance(d, str) for d in domains):
            raise ValueError("internalDomains: a list of domains")
        read_only = raw.get("readOnlyWhenLimited", False)
        if not isinstance(read_only, bool):
            raise ValueError("readOnlyWhenLimited: true or false")
        return cls(
            requests_per_minute=_count(raw, "requestsPerMinute"),
            request_window_s=_seconds(raw, "requestWindowSeconds", 60.0) or 60.0,
            rate_limit_status=int(status),
            rate_limit_reason=str(reason),
            invitations_per_window=_count(raw, "invitationsPerWindow"),
            invitation_window_s=_seconds(raw, "invitationWindowSeconds", 60.0) or 60.0,
            limited_for_s=_seconds(raw, "limitedForSeconds", None),
            read_only_when_limited=read_only,
            internal_domains=tuple(d.lower() for d in domains),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "requestsPerMinute": self.requests_per_minute,
            "requestWindowSeconds": self.request_window_s,
            "rateLimitStatus": self.rate_limit_status,
            "rateLimitReason": self.rate_limit_reason,
            "invitationsPerWindow": self.invitations_per_window,
            "invitationWindowSeconds": self.invitation_window_s,
            "limitedForSeconds": self.limited_for_s,
            "readOnlyWhenLimited": self.read_only_when_limited,
            "internalDomains": list(self.internal_domains),
        }


class Quota:
    """Sliding-window counters behind the usage limits; thread-safe, off until configured.

    Why sliding windows: Google computes its per-minute quotas that way, so a burst is
    refused until enough of it has aged out, not until the clock turns a minute.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self.settings = QuotaSettings()
        self._requests: dict[str, deque[float]] = {}
        self._emails: dict[str, deque[tuple[float, int]]] = {}
        self._limited_until: dict[str, float] = {}
        self._rejected: Counter[str] = Counter()

    def configure(self, settings: QuotaSettings) -> None:
        """New settings, fresh counters."""
        with self._lock:
            self.settings = settings
            self._requests.clear()
            self._emails.clear()
            self._limited_until.clear()
            self._rejected.clear()

    def reset(self) -> None:
        self.configure(QuotaSettings())

    def is_external(self, email: str, organizer: str) -> bool:
        """Outside the organizer's domain (and the configured internal ones)."""
        domain = _domain(email)
        return domain != _domain(organizer) and domain not in self.settings.internal_domains

    def note_rejection(self, reason: str) -> None:
        with self._lock:
            self._rejected[reason] += 1

    def admit_request(self, user: str) -> None:
        """Counts one API call of `user`; raises the rate-limit error past the limit."""
        with self._lock:
            limit = self.settings.requests_per_minute
            if limit is None:
                return
            now = self._clock()
            window = self._requests.setdefault(user, deque())
            while window and window[0] <= now - self.settings.request_window_s:
                window.popleft()
            if len(window) >= limit:
                self._rejected[self.settings.rate_limit_reason] += 1
                raise _google(self.settings.rate_limit_status, self.settings.rate_limit_reason)
            window.append(now)

    def charge_emails(self, calendar_id: str, external: int) -> None:
        """Accounts a write that emails `external` external guests, or refuses it.

        Called before the write commits, so a refused call changes nothing.
        """
        with self._lock:
            settings = self.settings
            now = self._clock()
            limited = self._limited_until.get(calendar_id, 0.0) > now
            if limited and (external or settings.read_only_when_limited):
                self._rejected["quotaExceeded"] += 1
                raise _google(403, "quotaExceeded")
            if not external:
                return
            sent = self._emails.setdefault(calendar_id, deque())
            while sent and sent[0][0] <= now - settings.invitation_window_s:
                sent.popleft()
            limit = settings.invitations_per_window
            if limit is not None and sum(n for _, n in sent) + external > limit:
                hold = settings.limited_for_s or settings.invitation_window_s
                self._limited_until[calendar_id] = now + hold
                self._rejected["quotaExceeded"] += 1
                raise _google(403, "quotaExceeded")
            sent.append((now, external))

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            now = self._clock()
            settings = self.settings
            requests = {
                user: sum(1 for t in window if t > now - settings.request_window_s)
                for user, window in self._requests.items()
            }
            emails = {
                cal: sum(n for t, n in sent if t > now - settings.invitation_window_s)
                for cal, sent in self._emails.items()
            }
            limited = {
                cal: round(until - now, 3)
                for cal, until in self._limited_until.items()
                if until > now
            }
            return {
                "settings": settings.to_json(),
                "requests": {k: v for k, v in requests.items() if v},
                "externalEmails": {k: v for k, v in emails.items() if v},
                "limited": limited,
                "rejected": dict(self._rejected),
            }


# -- store --------------------------------------------------------------------------------


@dataclass
class _Record:
    """One stored event plus the bookkeeping that is not part of the resource."""

    calendar_id: str
    event: dict[str, Any]
    order: int  # insertion order: the default stable list ordering
    change_seq: int  # global change sequence number of the last modification
    start_at: datetime
    end_at: datetime
    pending_gets: int | None = None  # conference still pending for this many gets
    final_status: str = "success"


@dataclass
class Channel:
    id: str
    resource_id: str
    resource_uri: str
    calendar_id: str
    address: str
    token: str | None
    expiration_ms: int
    message_number: int = 0

    def resource(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "kind": "api#channel",
            "id": self.id,
            "resourceId": self.resource_id,
            "resourceUri": self.resource_uri,
        }
        if self.token is not None:
            out["token"] = self.token
        out["expiration"] = str(self.expiration_ms)
        return out


@dataclass
class _Delivery:
    channel: Channel
    state: str
    number: int


@dataclass
class ConferenceSettings:
    pending_gets: int = 0
    status_code: str = "success"


class Notifier:
    """Delivers push notifications from one background thread, in order, never retried.

    Why one thread: messages of a channel must arrive in order (`sync` first) and the
    API request that caused them must never wait for the receiver.
    """

    def __init__(self, timeout_s: float = 2.0) -> None:
        self.timeout_s = timeout_s
        self._queue: queue.Queue[_Delivery] = queue.Queue()
        self._log: list[dict[str, Any]] = []
        self._log_lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="calendar-notifier", daemon=True)
        self._thread.start()

    def enqueue(self, channel: Channel, state: str, number: int) -> None:
        self._queue.put(_Delivery(channel, state, number))

    def wait_idle(self, timeout_s: float = 5.0) -> bool:
        """Waits until every queued delivery was attempted (for tests and control routes)."""
        deadline = time.monotonic() + timeout_s
        while self._queue.unfinished_tasks:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.01)
        return True

    def log(self) -> list[dict[str, Any]]:
        with self._log_lock:
            return list(self._log)

    def clear_log(self) -> None:
        with self._log_lock:
            self._log.clear()

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            try:
                self._deliver(item)
            finally:
                self._queue.task_done()

    def _deliver(self, item: _Delivery) -> None:
        ch = item.channel
        headers = {
            "X-Goog-Channel-ID": ch.id,
            "X-Goog-Channel-Expiration": email.utils.formatdate(
                ch.expiration_ms / 1000, usegmt=True
            ),
            "X-Goog-Resource-ID": ch.resource_id,
            "X-Goog-Resource-URI": ch.resource_uri,
            "X-Goog-Resource-State": item.state,
            "X-Goog-Message-Number": str(item.number),
            "Content-Length": "0",
            "User-Agent": NOTIFY_USER_AGENT,
        }
        if ch.token is not None:
            headers["X-Goog-Channel-Token"] = ch.token
        entry: dict[str, Any] = {
            "channelId": ch.id,
            "resourceId": ch.resource_id,
            "state": item.state,
            "messageNumber": item.number,
            "address": ch.address,
            "status": None,
            "error": None,
        }
        try:
            parts = urlsplit(ch.address)
            conn_cls = (
                http.client.HTTPSConnection
                if parts.scheme == "https"
                else http.client.HTTPConnection
            )
            conn = conn_cls(parts.netloc, timeout=self.timeout_s)
            try:
                path = parts.path or "/"
                if parts.query:
                    path += "?" + parts.query
                conn.request("POST", path, body=b"", headers=headers)
                resp = conn.getresponse()
                resp.read()
                entry["status"] = resp.status
            finally:
                conn.close()
        except (OSError, http.client.HTTPException) as exc:
            entry["error"] = f"{type(exc).__name__}: {exc}"
        with self._log_lock:
            self._log.append(entry)


class CalendarStore:
    """Events, channels and sync state, with no HTTP in sight. One lock guards it all."""

    def __init__(self, notifier: Notifier, owner_email: str) -> None:
        self.notifier = notifier
        self.owner_email = owner_email
        self._lock = threading.RLock()
        self._events: dict[str, dict[str, _Record]] = {}
        self._channels: dict[str, Channel] = {}
        self._seq = 0
        self._epoch = 0
        self._order = itertools.count(1)
        self.conference = ConferenceSettings()
        self.invitations: list[dict[str, Any]] = []
        self._forbidden: set[tuple[str, str]] = set()
        self.quota = Quota()

    # -- controls ---------------------------------------------------------------------------
    def reset(self) -> None:
        with self._lock:
            self._events.clear()
            self._channels.clear()
            self._forbidden.clear()
            self._epoch += 1
            self.conference = ConferenceSettings()
            self.invitations.clear()
            self.quota.reset()
        self.notifier.wait_idle(1.0)
        self.notifier.clear_log()

    def expire_sync_tokens(self) -> None:
        with self._lock:
            self._epoch += 1

    def forbid(self, calendar_id: str, email: str) -> None:
        with self._lock:
            self._forbidden.add((calendar_id, email.lower()))

    def forbidden(self, calendar_id: str, email: str) -> bool:
        with self._lock:
            return bool({(calendar_id, ""), (calendar_id, email.lower())} & self._forbidden)

    def set_conference(self, pending_gets: int, status_code: str) -> None:
        with self._lock:
            self.conference = ConferenceSettings(pending_gets, status_code)

    def channels(self) -> list[dict[str, Any]]:
        with self._lock:
            self._drop_expired()
            return [
                {**c.resource(), "calendarId": c.calendar_id, "address": c.address}
                for c in self._channels.values()
            ]

    # -- events -----------------------------------------------------------------------------
    def insert_event(
        self,
        calendar_id: str,
        body: dict[str, Any],
        params: dict[str, Any],
        *,
        caller: Caller | None = None,
    ) -> dict[str, Any]:
        event_id = body.get("id")
        if event_id is not None:
            self._check_event_id(event_id)
        with self._lock:
            cal = self._events.setdefault(calendar_id, {})
            if event_id is None:
                event_id = uuid.uuid4().hex
                while event_id in cal:  # pragma: no cover - astronomically unlikely
                    event_id = uuid.uuid4().hex
            elif event_id in cal:
                raise CalendarError(409, "duplicate", "The requested identifier already exists.")
            now = now_utc()
            event: dict[str, Any] = {
                "kind": "calendar#event",
                "id": event_id,
                "status": "confirmed",
                "htmlLink": self._html_link(calendar_id, event_id),
                "created": rfc3339(now),
                "iCalUID": body.get("iCalUID") or f"{event_id}@google.com",
                "sequence": int(body.get("sequence", 0) or 0),
                "creator": {"email": self.calendar_email(calendar_id), "self": True},
                "organizer": {"email": self.calendar_email(calendar_id), "self": True},
                "reminders": {"useDefault": True},
                "eventType": "default",
            }
            record = _Record(calendar_id, event, next(self._order), 0, now, now)
            self._apply_writable(record, body, replace=True)
            self._apply_conference(record, body, params, replace=False)
            emails = self._admit_write(None, record, params, caller)
            self._commit(record, now)
            cal[event_id] = record
            self._log_emails(record, "insert", params, emails)
            self._notify(calendar_id)
            return self._render(record)

    def get_event(self, calendar_id: str, event_id: str) -> dict[str, Any]:
        with self._lock:
            record = self._find(calendar_id, event_id)
            if record.pending_gets is not None:
                if record.pending_gets > 0:
                    record.pending_gets -= 1
                else:
                    self._finish_conference(record)
                    self._commit(record, now_utc())
                    self._notify(calendar_id)
            return self._render(record)

    def modify_event(
        self,
        calendar_id: str,
        event_id: str,
        body: dict[str, Any],
        params: dict[str, Any],
        *,
        replace: bool,
        if_match: str | None = None,
        caller: Caller | None = None,
    ) -> dict[str, Any]:
        """events.patch (`replace=False`, merge) and events.update (`replace=True`)."""
        with self._lock:
            stored = self._find(calendar_id, event_id)
            self._check_if_match(stored, if_match)
            # work on a copy so a rejected change leaves the stored event untouched
            record = dataclasses.replace(stored, event=json.loads(json.dumps(stored.event)))
            old_start, old_end = record.start_at, record.end_at
            was_cancelled = record.event.get("status") == "cancelled"
            self._apply_writable(record, body, replace=replace)
            self._apply_conference(record, body, params, replace=replace)
            if (record.start_at, record.end_at) != (old_start, old_end):
                record.event["sequence"] = int(record.event.get("sequence", 0)) + 1
            emails = self._admit_write(stored.event, record, params, caller)
            self._commit(record, now_utc())
            self._events[calendar_id][event_id] = record
            cancelled = not was_cancelled and record.event.get("status") == "cancelled"
            self._log_emails(record, "cancel" if cancelled else "update", params, emails)
            self._notify(calendar_id)
            return self._render(record)

    def delete_event(
        self,
        calendar_id: str,
        event_id: str,
        params: dict[str, Any],
        *,
        if_match: str | None = None,
        caller: Caller | None = None,
    ) -> None:
        with self._lock:
            stored = self._find(calendar_id, event_id)
            self._check_if_match(stored, if_match)
            if stored.event["status"] == "cancelled":
                raise CalendarError(410, "deleted", "Resource has been deleted")
            record = dataclasses.replace(stored, event=json.loads(json.dumps(stored.event)))
            record.event["status"] = "cancelled"
            emails = self._admit_write(stored.event, record, params, caller)
            self._commit(record, now_utc())
            self._events[calendar_id][event_id] = record
            self._log_emails(record, "delete", params, emails)
            self._notify(calendar_id)

    def list_events(self, calendar_id: str, params: dict[str, Any]) -> dict[str, Any]:
        sync_token = params.get("syncToken")
        if sync_token is not None:
            for name in SYNC_FORBIDDEN:
                if name in params:
                    raise _bad(
                        f"The '{name}' parameter cannot be used together with a sync token.",
                        name,
                    )
        order_by = params.get("orderBy")
        if order_by == "startTime" and not params.get("singleEvents"):
            raise _bad(
                "The requested ordering is not available for the particular query.", "orderBy"
            )
        max_results = min(int(params.get("maxResults", DEFAULT_MAX_RESULTS)), MAX_RESULTS_CAP)
        time_min = parse_query_time(params["timeMin"], "timeMin") if "timeMin" in params else None
        time_max = parse_query_time(params["timeMax"], "timeMax") if "timeMax" in params else None
        if time_min and time_max and time_max <= time_min:
            raise CalendarError(
                400, "timeRangeEmpty", "The specified time range is empty.", location="timeMax"
            )
        updated_min = (
            parse_query_time(params["updatedMin"], "updatedMin") if "updatedMin" in params else None
        )
        filters = {
            "private": self._parse_props(
                params.get("privateExtendedProperty", []), "privateExtendedProperty"
            ),
            "shared": self._parse_props(
                params.get("sharedExtendedProperty", []), "sharedExtendedProperty"
            ),
        }
        terms = str(params.get("q", "")).lower().split()
        fingerprint = hashlib.sha256(
            json.dumps(
                sorted(
                    (k, v)
                    for k, v in params.items()
                    if k
                    not in (
                        "pageToken",
                        "maxResults",
                        "syncToken",
                        "alt",
                        "fields",
                        "prettyPrint",
                        "quotaUser",
                        "userIp",
                        "key",
                        "oauth_token",
                    )
                ),
                default=str,
            ).encode()
        ).hexdigest()[:16]
        cal_hash = _calendar_hash(calendar_id)

        with self._lock:
            since: int | None = None
            if sync_token is not None:
                since = self._decode_sync_token(sync_token, cal_hash)
            last_key: list[Any] | None = None
            snap = self._seq
            if "pageToken" in params:
                page = _decode_token("P", params["pageToken"])
                if not page or page.get("f") != fingerprint or page.get("c") != cal_hash:
                    raise _bad("Invalid page token value.", "pageToken")
                last_key, snap = page["k"], int(page["s"])
                if page.get("since") is not None:
                    if page.get("e") != self._epoch:
                        raise self._full_sync_required()
                    since = int(page["since"])

            def keep(rec: _Record) -> bool:
                ev = rec.event
                if since is not None:
                    return rec.change_seq > since
                updated_at = datetime.fromisoformat(ev["updated"])
                if updated_min is not None and updated_at < updated_min:
                    return False
                if ev["status"] == "cancelled" and not (params.get("showDeleted") or updated_min):
                    return False
                if time_min is not None and rec.end_at <= time_min:
                    return False
                if time_max is not None and rec.start_at >= time_max:
                    return False
                if "iCalUID" in params and ev.get("iCalUID") != params["iCalUID"]:
                    return False
                for scope, wanted in filters.items():
                    have = ev.get("extendedProperties", {}).get(scope, {})
                    if any(have.get(k) != v for k, v in wanted):
                        return False
                if terms:
                    haystack = " ".join(
                        [str(ev.get(f, "")) for f in ("summary", "description", "location")]
                        + [
                            str(a.get("email", "")) + " " + str(a.get("displayName", ""))
                            for a in ev.get("attendees", [])
                        ]
                        + [str(ev.get("organizer", {}).get("email", ""))]
                    ).lower()
                    if not all(t in haystack for t in terms):
                        return False
                return True

            def sort_key(rec: _Record) -> list[Any]:
                if order_by == "startTime":
                    return [rec.start_at.timestamp(), rec.order]
                if order_by == "updated":
                    return [rec.change_seq, rec.order]
                return [rec.order]

            matching = sorted(
                (r for r in self._events.get(calendar_id, {}).values() if keep(r)), key=sort_key
            )
            if last_key is not None:
                matching = [r for r in matching if sort_key(r) > last_key]
            page_items = matching[:max_results]
            out: dict[str, Any] = {
                "kind": "calendar#events",
                "etag": f'"p{snap:016d}"',
                "summary": self.calendar_email(calendar_id),
                "description": "",
                "updated": rfc3339(self._calendar_updated(calendar_id)),
                "timeZone": "UTC",
                "accessRole": "owner",
                "defaultReminders": [],
            }
            if len(matching) > max_results:
                out["nextPageToken"] = _encode_token(
                    "P",
                    {
                        "f": fingerprint,
                        "c": cal_hash,
                        "k": sort_key(page_items[-1]),
                        "s": snap,
                        "since": since,
                        "e": self._epoch,
                    },
                )
            else:
                out["nextSyncToken"] = _encode_token(
                    "S", {"e": self._epoch, "s": snap, "c": cal_hash}
                )
            out["items"] = [self._render(r) for r in page_items]
            return out

    # -- channels ---------------------------------------------------------------------------
    def watch(self, calendar_id: str, body: dict[str, Any], base_url: str) -> dict[str, Any]:
        channel_id = body.get("id")
        if not isinstance(channel_id, str) or not channel_id:
            raise CalendarError(400, "required", "Required", location="id")
        if len(channel_id) > 64 or not set(channel_id) <= CHANNEL_ID_CHARS:
            raise _bad(
                f"Invalid channel id {channel_id}. Channel ids must match "
                "[A-Za-z0-9\\-_\\+/=]+ and be at most 64 characters long.",
                "id",
            )
        if body.get("type") not in ("web_hook", "webhook"):
            raise _bad(f"Invalid type value: {body.get('type')}", "type")
        address = body.get("address")
        if not isinstance(address, str) or urlsplit(address).scheme not in ("http", "https"):
            raise _bad(f"Invalid address: {address}", "address")
        token = body.get("token")
        if token is not None and (not isinstance(token, str) or len(token) > 256):
            raise _bad("Channel token must be a string of at most 256 characters.", "token")
        ttl_raw = (body.get("params") or {}).get("ttl", DEFAULT_CHANNEL_TTL_S)
        try:
            ttl = int(ttl_raw)
        except (TypeError, ValueError):
            raise _bad(f"Invalid ttl value: {ttl_raw}", "params.ttl") from None
        if ttl <= 0:
            raise _bad(f"Invalid ttl value: {ttl_raw}", "params.ttl")
        now_ms = int(time.time() * 1000)
        expiration_ms = now_ms + ttl * 1000
        if body.get("expiration"):
            try:
                expiration_ms = min(expiration_ms, int(body["expiration"]))
            except (TypeError, ValueError):
                raise _bad(
                    f"Invalid expiration value: {body['expiration']}", "expiration"
                ) from None
        with self._lock:
            self._drop_expired()
            if channel_id in self._channels:
                raise _bad(f"Channel id {channel_id} not unique", "id", reason="channelIdNotUnique")
            resource_id = (
                base64.urlsafe_b64encode(
                    hashlib.sha256(("events:" + calendar_id).encode()).digest()[:20]
                )
                .decode()
                .rstrip("=")
            )
            channel = Channel(
                id=channel_id,
                resource_id=resource_id,
                resource_uri=f"{base_url}calendars/{quote(calendar_id, safe='@')}/events?alt=json",
                calendar_id=calendar_id,
                address=address,
                token=token,
                expiration_ms=expiration_ms,
                message_number=1,
            )
            self._channels[channel_id] = channel
            self.notifier.enqueue(channel, "sync", 1)
            return channel.resource()

    def stop_channel(self, body: dict[str, Any]) -> None:
        with self._lock:
            channel = self._channels.get(str(body.get("id")))
            if channel is None or channel.resource_id != body.get("resourceId"):
                raise CalendarError(
                    404,
                    "notFound",
                    f"Channel '{body.get('id')}' not found for project 'emulator'",
                )
            del self._channels[channel.id]

    # -- internals --------------------------------------------------------------------------
    @staticmethod
    def _check_event_id(event_id: Any) -> None:
        if (
            not isinstance(event_id, str)
            or not 5 <= len(event_id) <= 1024
            or not set(event_id) <= EVENT_ID_CHARS
        ):
            raise _bad("Invalid resource id value.", "id")

    def calendar_email(self, calendar_id: str) -> str:
        if calendar_id == "primary":
            return self.owner_email
        return calendar_id if "@" in calendar_id else f"{calendar_id}@group.calendar.google.com"

    def _html_link(self, calendar_id: str, event_id: str) -> str:
        eid = (
            base64.urlsafe_b64encode(f"{event_id} {self.calendar_email(calendar_id)}".encode())
            .decode()
            .rstrip("=")
        )
        return f"https://www.google.com/calendar/event?eid={eid}"

    def _find(self, calendar_id: str, event_id: str) -> _Record:
        record = self._events.get(calendar_id, {}).get(event_id)
        if record is None:
            raise CalendarError(404, "notFound", "Not Found")
        return record

    def _calendar_updated(self, calendar_id: str) -> datetime:
        records = self._events.get(calendar_id, {}).values()
        stamps = [datetime.fromisoformat(r.event["updated"]) for r in records]
        return max(stamps, default=now_utc())

    def _commit(self, record: _Record, now: datetime) -> None:
        """Stamps a change: new change sequence number, etag and `updated`."""
        self._seq += 1
        record.change_seq = self._seq
        record.event["updated"] = rfc3339(now)
        record.event["etag"] = f'"{int(now.timestamp() * 1000)}{self._seq:06d}"'

    def _notify(self, calendar_id: str) -> None:
        self._drop_expired()
        for channel in self._channels.values():
            if channel.calendar_id == calendar_id:
                channel.message_number += 1
                self.notifier.enqueue(channel, "exists", channel.message_number)

    def _drop_expired(self) -> None:
        now_ms = int(time.time() * 1000)
        for cid in [c.id for c in self._channels.values() if c.expiration_ms <= now_ms]:
            del self._channels[cid]

    def _full_sync_required(self) -> CalendarError:
        return CalendarError(
            410,
            "fullSyncRequired",
            "Sync token is no longer valid, a full sync is required.",
            location="syncToken",
        )

    def _decode_sync_token(self, token: str, cal_hash: str) -> int:
        data = _decode_token("S", token)
        if (
            not data
            or data.get("e") != self._epoch
            or data.get("c") != cal_hash
            or not isinstance(data.get("s"), int)
            or data["s"] > self._seq
        ):
            raise self._full_sync_required()
        return int(data["s"])

    @staticmethod
    def _parse_props(raw: Iterable[str], name: str) -> list[tuple[str, str]]:
        out = []
        for item in raw:
            key, sep, value = item.partition("=")
            if not sep or not key:
                raise _bad(f"Invalid value for: {name}", name)
            out.append((key, value))
        return out

    def _apply_writable(self, record: _Record, body: dict[str, Any], *, replace: bool) -> None:
        """Copies the client-writable fields; `replace` drops what the body leaves out."""
        ev = record.event
        writable = (
            "summary",
            "description",
            "location",
            "colorId",
            "transparency",
            "visibility",
            "attendees",
            "reminders",
            "extendedProperties",
            "recurrence",
            "source",
            "guestsCanInviteOthers",
            "guestsCanModify",
            "guestsCanSeeOtherGuests",
            "anyoneCanAddSelf",
            "attachments",
            "status",
            "start",
            "end",
        )
        if replace:
            for name in writable:
                if name not in ("start", "end", "status", "reminders"):
                    ev.pop(name, None)
            if "start" not in body or "end" not in body:
                raise CalendarError(
                    400,
                    "required",
                    "Missing start time." if "start" not in body else "Missing end time.",
                )
        for name in writable:
            if name not in body:
                continue
            value = body[name]
            if value is None:
                if name in ("start", "end"):
                    raise CalendarError(400, "required", f"Missing {name} time.")
                ev.pop(name, None)
            elif isinstance(value, dict) and isinstance(ev.get(name), dict) and not replace:
                merged = _merge(ev[name], value)
                if name in ("start", "end"):  # a new date kind replaces the other one
                    if "dateTime" in value:
                        merged.pop("date", None)
                    if "date" in value:
                        merged.pop("dateTime", None)
                ev[name] = merged
            else:
                ev[name] = value
        if ev.get("status") not in ("confirmed", "tentative", "cancelled"):
            raise _bad(f"Invalid status value: {ev.get('status')}", "status")
        ev["start"], record.start_at = normalize_when(ev.get("start"), "start")
        ev["end"], record.end_at = normalize_when(ev.get("end"), "end")
        if record.end_at < record.start_at:
            raise CalendarError(
                400, "timeRangeEmpty", "The specified time range is empty.", location="end.dateTime"
            )
        if "attendees" in ev:
            ev["attendees"] = self._normalize_attendees(ev["attendees"])
        props = ev.get("extendedProperties")
        if props is not None:
            if not isinstance(props, dict) or not all(
                isinstance(props.get(s, {}), dict) for s in ("private", "shared")
            ):
                raise _bad("Invalid extendedProperties value.", "extendedProperties")
            ev["extendedProperties"] = {
                s: {str(k): str(v) for k, v in props[s].items()}
                for s in ("private", "shared")
                if props.get(s)
            }

    def _normalize_attendees(self, raw: Any) -> list[dict[str, Any]]:
        if not isinstance(raw, list):
            raise _bad("Invalid attendees value.", "attendees")
        out = []
        for attendee in raw:
            if not isinstance(attendee, dict) or not attendee.get("email"):
                raise CalendarError(400, "required", "Missing attendee email.")
            out.append(
                {**attendee, "responseStatus": attendee.get("responseStatus", "needsAction")}
            )
        return out

    def _apply_conference(
        self, record: _Record, body: dict[str, Any], params: dict[str, Any], *, replace: bool
    ) -> None:
        """conferenceData is honoured only with conferenceDataVersion=1, as at Google."""
        if params.get("conferenceDataVersion", 0) != 1:
            return
        ev = record.event
        if "conferenceData" not in body:
            if replace:  # a full update without conferenceData drops the conference
                ev.pop("conferenceData", None)
                ev.pop("hangoutLink", None)
                record.pending_gets = None
            return
        data = body["conferenceData"]
        if not data:
            ev.pop("conferenceData", None)
            ev.pop("hangoutLink", None)
            record.pending_gets = None
            return
        if not isinstance(data, dict):
            raise _bad("Invalid conference data.", "conferenceData")
        create = data.get("createRequest")
        if create is None:  # copying an existing conference verbatim is allowed with v1
            ev["conferenceData"] = data
            record.pending_gets = None
            video = [e for e in data.get("entryPoints", []) if e.get("entryPointType") == "video"]
            if (
                video
                and data.get("conferenceSolution", {}).get("key", {}).get("type") == "hangoutsMeet"
            ):
                ev["hangoutLink"] = video[0].get("uri")
            else:
                ev.pop("hangoutLink", None)
            return
        request_id = create.get("requestId") if isinstance(create, dict) else None
        if not request_id:
            raise _bad(
                "Invalid conference create request: missing requestId.",
                "conferenceData.createRequest.requestId",
            )
        key_type = (create.get("conferenceSolutionKey") or {}).get("type", "hangoutsMeet")
        if key_type != "hangoutsMeet":
            raise _bad(
                "Invalid conference type value.",
                "conferenceData.createRequest.conferenceSolutionKey.type",
            )
        existing = ev.get("conferenceData", {}).get("createRequest", {})
        if existing.get("requestId") == request_id:
            return  # same request id: the conference already exists, nothing changes
        code = meet_code(request_id)
        ev["conferenceData"] = {
            "createRequest": {
                "requestId": request_id,
                "conferenceSolutionKey": {"type": "hangoutsMeet"},
                "status": {"statusCode": "pending"},
            },
            "conferenceSolution": {
                "key": {"type": "hangoutsMeet"},
                "name": "Google Meet",
                "iconUri": MEET_ICON,
            },
            "conferenceId": code,
        }
        ev.pop("hangoutLink", None)
        record.final_status = self.conference.status_code
        record.pending_gets = self.conference.pending_gets
        if record.pending_gets == 0:
            self._finish_conference(record)

    @staticmethod
    def _finish_conference(record: _Record) -> None:
        record.pending_gets = None
        data = record.event.get("conferenceData")
        if not data:
            return
        data["createRequest"]["status"] = {"statusCode": record.final_status}
        if record.final_status != "success":
            return
        code = data["conferenceId"]
        uri = f"https://meet.google.com/{code}"
        data["entryPoints"] = [
            {"entryPointType": "video", "uri": uri, "label": f"meet.google.com/{code}"},
        ]
        record.event["hangoutLink"] = uri

    @staticmethod
    def _check_if_match(record: _Record, if_match: str | None) -> None:
        """Conditional modification: 412 unless `If-Match` names the current etag."""
        if if_match is not None and not etag_listed(if_match, record.event["etag"], weak=False):
            raise _google(412, "conditionNotMet", location="If-Match", location_type="header")

    def _admit_write(
        self,
        before: dict[str, Any] | None,
        record: _Record,
        params: dict[str, Any],
        caller: Caller | None,
    ) -> list[dict[str, str]]:
        """Runs the checks a write passes before it commits; returns the emails it sends.

        A service account acting as itself may not add attendees (Google's Event reference:
        populating attendees needs domain-wide delegation), and the emails to external
        guests are charged to the calendar's usage limits.
        """
        if caller is not None and caller.undelegated_service_account:
            had = {a["email"].lower() for a in (before or {}).get("attendees", [])}
            if any(a["email"].lower() not in had for a in record.event.get("attendees", [])):
                self.quota.note_rejection("forbiddenForServiceAccounts")
                raise _google(403, "forbiddenForServiceAccounts")
        emails = self._emails(record.calendar_id, before, record.event, params)
        organizer = self.calendar_email(record.calendar_id)
        external = sum(1 for e in emails if self.quota.is_external(e["to"], organizer))
        self.quota.charge_emails(record.calendar_id, external)
        return emails

    def _emails(
        self,
        calendar_id: str,
        before: dict[str, Any] | None,
        after: dict[str, Any],
        params: dict[str, Any],
    ) -> list[dict[str, str]]:
        """Who a write emails, and what: the guests' view of the change, filtered by mode.

        A guest new to the event gets an invitation, one who stays gets an update when the
        event changed, one who leaves (removed, or the event cancelled) a cancellation.
        """
        mode = _send_mode(params)
        if mode == "none":
            return []
        organizer = self.calendar_email(calendar_id)

        def guests(event: dict[str, Any] | None) -> dict[str, str]:
            if event is None or event.get("status") == "cancelled":
                return {}
            return {
                a["email"].lower(): a["email"]
                for a in event.get("attendees", [])
                if not a.get("self")
                and not a.get("organizer")
                and a["email"].lower() != organizer.lower()
            }

        old, new = guests(before), guests(after)
        changed = before is not None and _content(before) != _content(after)
        emails = [
            {"to": email, "kind": "invitation" if key not in old else "update"}
            for key, email in new.items()
            if key not in old or changed
        ] + [{"to": email, "kind": "cancel"} for key, email in old.items() if key not in new]
        if mode == "externalOnly":
            emails = [e for e in emails if not self._uses_google_calendar(e["to"], organizer)]
        return emails

    @staticmethod
    def _uses_google_calendar(email: str, organizer: str) -> bool:
        """The emulator's guess: consumer Google accounts and the organizer's own domain."""
        domain = _domain(email)
        return domain in GOOGLE_CALENDAR_DOMAINS or domain == _domain(organizer)

    def _log_emails(
        self, record: _Record, action: str, params: dict[str, Any], emails: list[dict[str, str]]
    ) -> None:
        if not emails:
            return
        self.invitations.append(
            {
                "calendarId": record.calendar_id,
                "eventId": record.event["id"],
                "action": action,
                "sendUpdates": _send_mode(params),
                "recipients": [e["to"] for e in emails],
                "emails": emails,
                "guestsCanSeeOtherGuests": record.event.get("guestsCanSeeOtherGuests", True),
            }
        )

    @staticmethod
    def _render(record: _Record) -> dict[str, Any]:
        copied: dict[str, Any] = json.loads(json.dumps(record.event))
        return copied  # a deep copy: callers never share state with the store


def _send_mode(params: dict[str, Any]) -> str:
    """`sendUpdates`, or the deprecated boolean `sendNotifications`; Google's default: none."""
    return str(params.get("sendUpdates") or ("all" if params.get("sendNotifications") else "none"))


def _content(event: dict[str, Any]) -> dict[str, Any]:
    """The event minus the stamps every write changes: what guests could see change."""
    return {k: v for k, v in event.items() if k not in ("etag", "updated")}


def _merge(base: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """Patch semantics: objects merge recursively, null deletes, everything else replaces."""
    out = dict(base)
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        elif isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


# -- HTTP ---------------------------------------------------------------------------------

Handler = Callable[[dict[str, str], dict[str, Any], Caller], Response]


class CalendarEmulator:
    """The Calendar API emulator: `.app` is the EmulatorApp, `.store` the state behind it."""

    def __init__(
        self,
        check_access_token: Callable[[str], bool],
        *,
        token_email: Callable[[str], str | None] | None = None,
        owner_email: str = "owner@classes.local",
        notify_timeout_s: float = 2.0,
        discovery_document: str | None = None,
    ) -> None:
        self.check_access_token = check_access_token
        self.token_email = token_email
        self.app = EmulatorApp("calendar", error_body)
        self.notifier = Notifier(notify_timeout_s)
        self.store = CalendarStore(self.notifier, owner_email)
        self.methods, self.global_params = load_method_specs(discovery_document)
        self._handlers: dict[str, Handler] = {
            "calendar.events.insert": self._events_insert,
            "calendar.events.get": self._events_get,
            "calendar.events.list": self._events_list,
            "calendar.events.patch": self._events_patch,
            "calendar.events.update": self._events_update,
            "calendar.events.delete": self._events_delete,
            "calendar.events.watch": self._events_watch,
            "calendar.channels.stop": self._channels_stop,
            "calendar.calendars.get": self._calendars_get,
            "calendar.calendarList.get": self._calendars_get,
        }
        self._install_api_routes()
        self._install_control_routes()

    # -- routing ----------------------------------------------------------------------------
    def _install_api_routes(self) -> None:
        flask_app = self.app.app
        for spec in self.methods:
            flask_app.add_url_rule(
                spec.flask_rule,
                endpoint=spec.id,
                view_func=self._make_view(spec),
                methods=[spec.http_method],
            )

        @flask_app.route(
            API_PREFIX + "<path:rest>", methods=["GET", "POST", "PUT", "PATCH", "DELETE"]
        )
        def unknown_api_path(rest: str) -> Response:
            return self.app.error(404, "notFound", "Not Found")

    def _make_view(self, spec: MethodSpec) -> Callable[..., Response]:
        def view(**path_params: str) -> Response:
            try:
                self._authenticate(spec)
                caller = self._caller()
                self.store.quota.admit_request(caller.key)
                self._check_calendar_access(path_params.get("calendarId"), caller)
                params = validate_query(spec, self.global_params, request.args)
                handler = self._handlers.get(spec.id)
                if handler is None:
                    raise CalendarError(
                        501, "notImplemented", f"{spec.id} is not implemented by the emulator."
                    )
                return handler(path_params, params, caller)
            except CalendarError as exc:
                return exc.response()

        view.__name__ = spec.id.replace(".", "_")
        return view

    def _authenticate(self, spec: MethodSpec) -> None:
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if not header and spec.id in PUBLIC_READ_METHODS and request.args.get("key"):
            return
        if not header:
            raise CalendarError(
                401,
                "required",
                "Request is missing required authentication credential. Expected OAuth 2 "
                "access token, login cookie or other valid authentication credential.",
                location="Authorization",
                location_type="header",
            )
        if (
            scheme.lower() != "bearer"
            or not token.strip()
            or not self.check_access_token(token.strip())
        ):
            raise CalendarError(
                401,
                "authError",
                "Invalid Credentials",
                location="Authorization",
                location_type="header",
            )

    def _caller(self) -> Caller:
        """Who an authenticated call comes from: its account, else its token or its key."""
        _, _, token = request.headers.get("Authorization", "").partition(" ")
        token = token.strip()
        if not token:
            return Caller(key="apiKey")
        email = self.token_email(token) if self.token_email else None
        if email:
            return Caller(key=email.lower(), email=email)
        return Caller(key="token:" + hashlib.sha256(token.encode()).hexdigest()[:12])

    def _check_calendar_access(self, calendar_id: str | None, caller: Caller) -> None:
        """404 on a calendar forbidden to the account behind the bearer token."""
        if calendar_id is None or caller.key == "apiKey":
            return
        if self.store.forbidden(calendar_id, caller.email or ""):
            raise CalendarError(404, "notFound", "Not Found")

    @staticmethod
    def _body() -> dict[str, Any]:
        raw = request.get_data()
        if not raw:
            return {}
        try:
            body = json.loads(raw)
        except ValueError:
            raise CalendarError(400, "parseError", "Parse Error") from None
        if not isinstance(body, dict):
            raise CalendarError(400, "parseError", "Parse Error")
        return body

    # -- API handlers -----------------------------------------------------------------------
    def _events_insert(
        self, path: dict[str, str], params: dict[str, Any], caller: Caller
    ) -> Response:
        event = self.store.insert_event(path["calendarId"], self._body(), params, caller=caller)
        return json_response(event, headers={"ETag": event["etag"]})

    def _events_get(self, path: dict[str, str], params: dict[str, Any], caller: Caller) -> Response:
        if "timeZone" in params:
            _zone(params["timeZone"], "request")
        event = self.store.get_event(path["calendarId"], path["eventId"])
        # Conditional retrieval, judged after the read: a get may itself finish a conference.
        if_none_match = request.headers.get("If-None-Match")
        if if_none_match is not None and etag_listed(if_none_match, event["etag"], weak=True):
            return Response(status=304, headers={"ETag": event["etag"]})
        return json_response(event, headers={"ETag": event["etag"]})

    def _events_patch(
        self, path: dict[str, str], params: dict[str, Any], caller: Caller
    ) -> Response:
        return self._modify(path, params, caller, replace=False)

    def _events_update(
        self, path: dict[str, str], params: dict[str, Any], caller: Caller
    ) -> Response:
        return self._modify(path, params, caller, replace=True)

    def _modify(
        self, path: dict[str, str], params: dict[str, Any], caller: Caller, *, replace: bool
    ) -> Response:
        event = self.store.modify_event(
            path["calendarId"],
            path["eventId"],
            self._body(),
            params,
            replace=replace,
            if_match=request.headers.get("If-Match"),
            caller=caller,
        )
        return json_response(event, headers={"ETag": event["etag"]})

    def _events_delete(
        self, path: dict[str, str], params: dict[str, Any], caller: Caller
    ) -> Response:
        self.store.delete_event(
            path["calendarId"],
            path["eventId"],
            params,
            if_match=request.headers.get("If-Match"),
            caller=caller,
        )
        return Response(status=204)

    def _events_list(
        self, path: dict[str, str], params: dict[str, Any], caller: Caller
    ) -> Response:
        if "timeZone" in params:
            _zone(params["timeZone"], "request")
        return json_response(self.store.list_events(path["calendarId"], params))

    def _events_watch(
        self, path: dict[str, str], params: dict[str, Any], caller: Caller
    ) -> Response:
        base_url = request.host_url.rstrip("/") + API_PREFIX
        return json_response(self.store.watch(path["calendarId"], self._body(), base_url))

    def _channels_stop(
        self, path: dict[str, str], params: dict[str, Any], caller: Caller
    ) -> Response:
        self.store.stop_channel(self._body())
        return Response(status=204)

    def _calendars_get(
        self, path: dict[str, str], params: dict[str, Any], caller: Caller
    ) -> Response:
        cal_id = path["calendarId"]
        email_id = self.store.calendar_email(cal_id)
        return json_response(
            {
                "kind": "calendar#calendar"
                if "calendarList" not in request.path
                else "calendar#calendarListEntry",
                "etag": f'"{_calendar_hash(cal_id)}"',
                "id": email_id,
                "summary": email_id,
                "timeZone": "UTC",
                "accessRole": "owner",
                "conferenceProperties": {"allowedConferenceSolutionTypes": ["hangoutsMeet"]},
            }
        )

    # -- control routes ---------------------------------------------------------------------
    def _install_control_routes(self) -> None:
        flask_app = self.app.app
        prefix = "/_emulator/calendar"

        @flask_app.route(prefix + "/conference", methods=["GET", "POST"])
        def conference_knob() -> Response:
            if request.method == "POST":
                raw = request.get_json(force=True, silent=True) or {}
                status_code = str(raw.get("statusCode", "success"))
                if status_code not in ("success", "failure"):
                    return json_response({"error": "statusCode: success|failure"}, 400)
                self.store.set_conference(max(0, int(raw.get("pendingGets", 0))), status_code)
            conf = self.store.conference
            return json_response({"pendingGets": conf.pending_gets, "statusCode": conf.status_code})

        @flask_app.post(prefix + "/expire-sync-tokens")
        def expire_sync_tokens() -> Response:
            self.store.expire_sync_tokens()
            return json_response({})

        @flask_app.get(prefix + "/deliveries")
        def deliveries() -> Response:
            if request.args.get("wait"):
                self.notifier.wait_idle(5.0)
            return json_response(self.notifier.log())

        @flask_app.get(prefix + "/channels")
        def channels() -> Response:
            return json_response(self.store.channels())

        @flask_app.get(prefix + "/invitations")
        def invitations() -> Response:
            log = list(self.store.invitations)
            return json_response({"total": sum(len(i["recipients"]) for i in log), "log": log})

        @flask_app.post(prefix + "/forbid")
        def forbid() -> Response:
            raw = request.get_json(force=True, silent=True) or {}
            if not raw.get("calendarId"):
                return json_response({"error": "calendarId is required"}, 400)
            self.store.forbid(str(raw["calendarId"]), str(raw.get("email") or ""))
            return json_response({})

        @flask_app.route(prefix + "/quota", methods=["GET", "POST", "DELETE"])
        def quota() -> Response:
            if request.method == "POST":
                raw = request.get_json(force=True, silent=True)
                if not isinstance(raw, dict):
                    return json_response({"error": "a JSON object of quota settings"}, 400)
                try:
                    self.store.quota.configure(QuotaSettings.from_json(raw))
                except ValueError as exc:
                    return json_response({"error": str(exc)}, 400)
            elif request.method == "DELETE":
                self.store.quota.reset()
            return json_response(self.store.quota.snapshot())

        @flask_app.post(prefix + "/reset")
        def reset() -> Response:
            self.store.reset()
            return json_response({})


__all__ = [
    "CalendarEmulator",
    "CalendarError",
    "CalendarStore",
    "Caller",
    "Channel",
    "Notifier",
    "Quota",
    "QuotaSettings",
    "error_body",
    "etag_listed",
    "load_method_specs",
    "meet_code",
]
