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
- `GET /_emulator/calendar/invitations`: invitations "sent" because of `sendUpdates`
  {"total": n, "log": [{"calendarId", "eventId", "action", "sendUpdates", "recipients"}]}.
- `POST /_emulator/calendar/forbid` {"calendarId", "email"}: the account `email` (every
  account when empty) can no longer see the calendar: its bearer calls on it answer 404
  `notFound`, as Google answers for a calendar not shared with the account. Needs the
  `token_email` lookup (the OAuth emulator's) to know whose token a call carries.
- `POST /_emulator/calendar/reset`: drops every event, channel, delivery, invitation and
  forbidden calendar, restores the conference setting and expires every sync token.
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
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import googleapiclient
from flask import Response, request
from werkzeug.datastructures import MultiDict

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
    "backendError": "Backend Error",
    "internalError": "Internal Error",
    "notFound": "Not Found",
    "forbidden": "Forbidden",
}
_USAGE_LIMIT_REASONS = frozenset(
    {"rateLimitExceeded", "userRateLimitExceeded", "quotaExceeded", "dailyLimitExceeded"}
)
_CALENDAR_REASONS = frozenset({"timeRangeEmpty", "fullSyncRequired", "requiredAccessLevel"})


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


def _calendar_hash(calendar_id: str) -> str:
    return hashlib.sha256(calendar_id.encode()).hexdigest()[:12]


def meet_code(seed: str) -> str:
    """A deterministic xxx-xxxx-xxx Meet code derived from the conference request id."""
    digest = hashlib.sha256(seed.encode()).digest()
    letters = "".join(chr(ord("a") + b % 26) for b in digest[:10])
    return f"{letters[:3]}-{letters[3:7]}-{letters[7:10]}"


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

    # -- controls ---------------------------------------------------------------------------
    def reset(self) -> None:
        with self._lock:
            self._events.clear()
            self._channels.clear()
            self._forbidden.clear()
            self._epoch += 1
            self.conference = ConferenceSettings()
            self.invitations.clear()
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
        self, calendar_id: str, body: dict[str, Any], params: dict[str, Any]
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
            self._commit(record, now)
            cal[event_id] = record
            self._invite(record, "insert", params)
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
    ) -> dict[str, Any]:
        """events.patch (`replace=False`, merge) and events.update (`replace=True`)."""
        with self._lock:
            stored = self._find(calendar_id, event_id)
            # work on a copy so a rejected change leaves the stored event untouched
            record = dataclasses.replace(stored, event=json.loads(json.dumps(stored.event)))
            old_start, old_end = record.start_at, record.end_at
            was_cancelled = record.event.get("status") == "cancelled"
            self._apply_writable(record, body, replace=replace)
            self._apply_conference(record, body, params, replace=replace)
            if (record.start_at, record.end_at) != (old_start, old_end):
                record.event["sequence"] = int(record.event.get("sequence", 0)) + 1
            self._commit(record, now_utc())
            self._events[calendar_id][event_id] = record
            cancelled = not was_cancelled and record.event.get("status") == "cancelled"
            self._invite(record, "cancel" if cancelled else "update", params)
            self._notify(calendar_id)
            return self._render(record)

    def delete_event(self, calendar_id: str, event_id: str, params: dict[str, Any]) -> None:
        with self._lock:
            record = self._find(calendar_id, event_id)
            if record.event["status"] == "cancelled":
                raise CalendarError(410, "deleted", "Resource has been deleted")
            record.event["status"] = "cancelled"
            self._commit(record, now_utc())
            self._invite(record, "delete", params)
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

    def _invite(self, record: _Record, action: str, params: dict[str, Any]) -> None:
        mode = params.get("sendUpdates") or ("all" if params.get("sendNotifications") else "none")
        if mode == "none":
            return
        recipients = [
            a["email"]
            for a in record.event.get("attendees", [])
            if not a.get("self")
            and not a.get("organizer")
            and (mode == "all" or not a["email"].lower().endswith(("@gmail.com", "@google.com")))
        ]
        if recipients:
            self.invitations.append(
                {
                    "calendarId": record.calendar_id,
                    "eventId": record.event["id"],
                    "action": action,
                    "sendUpdates": mode,
                    "recipients": recipients,
                }
            )

    @staticmethod
    def _render(record: _Record) -> dict[str, Any]:
        copied: dict[str, Any] = json.loads(json.dumps(record.event))
        return copied  # a deep copy: callers never share state with the store


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

Handler = Callable[[dict[str, str], dict[str, Any]], Response]


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
                self._check_calendar_access(path_params.get("calendarId"))
                params = validate_query(spec, self.global_params, request.args)
                handler = self._handlers.get(spec.id)
                if handler is None:
                    raise CalendarError(
                        501, "notImplemented", f"{spec.id} is not implemented by the emulator."
                    )
                return handler(path_params, params)
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

    def _check_calendar_access(self, calendar_id: str | None) -> None:
        """404 on a calendar forbidden to the account behind the bearer token."""
        _, _, token = request.headers.get("Authorization", "").partition(" ")
        if calendar_id is None or not token.strip():
            return
        email = self.token_email(token.strip()) if self.token_email else None
        if self.store.forbidden(calendar_id, email or ""):
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
    def _events_insert(self, path: dict[str, str], params: dict[str, Any]) -> Response:
        return json_response(self.store.insert_event(path["calendarId"], self._body(), params))

    def _events_get(self, path: dict[str, str], params: dict[str, Any]) -> Response:
        if "timeZone" in params:
            _zone(params["timeZone"], "request")
        return json_response(self.store.get_event(path["calendarId"], path["eventId"]))

    def _events_patch(self, path: dict[str, str], params: dict[str, Any]) -> Response:
        event = self.store.modify_event(
            path["calendarId"], path["eventId"], self._body(), params, replace=False
        )
        return json_response(event)

    def _events_update(self, path: dict[str, str], params: dict[str, Any]) -> Response:
        event = self.store.modify_event(
            path["calendarId"], path["eventId"], self._body(), params, replace=True
        )
        return json_response(event)

    def _events_delete(self, path: dict[str, str], params: dict[str, Any]) -> Response:
        self.store.delete_event(path["calendarId"], path["eventId"], params)
        return Response(status=204)

    def _events_list(self, path: dict[str, str], params: dict[str, Any]) -> Response:
        if "timeZone" in params:
            _zone(params["timeZone"], "request")
        return json_response(self.store.list_events(path["calendarId"], params))

    def _events_watch(self, path: dict[str, str], params: dict[str, Any]) -> Response:
        base_url = request.host_url.rstrip("/") + API_PREFIX
        return json_response(self.store.watch(path["calendarId"], self._body(), base_url))

    def _channels_stop(self, path: dict[str, str], params: dict[str, Any]) -> Response:
        self.store.stop_channel(self._body())
        return Response(status=204)

    def _calendars_get(self, path: dict[str, str], params: dict[str, Any]) -> Response:
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

        @flask_app.post(prefix + "/reset")
        def reset() -> Response:
            self.store.reset()
            return json_response({})


__all__ = [
    "CalendarEmulator",
    "CalendarError",
    "CalendarStore",
    "Channel",
    "Notifier",
    "error_body",
    "load_method_specs",
    "meet_code",
]
