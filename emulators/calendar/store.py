"""Events, channels and sync state, with no HTTP in sight: what the routes read and change.

Why one store behind one lock: etags, change sequence numbers, sync and page tokens, the
emails a write sends and the usage limits it is charged against must all agree on one
order of writes, as they do at Google.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import itertools
import json
import threading
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote, urlsplit

from emulators.calendar.common import (
    CalendarError,
    bad_request,
    calendar_hash,
    email_domain,
    etag_listed,
    google_error,
    now_utc,
    parse_query_time,
    rfc3339,
    time_zone,
)
from emulators.calendar.push import Channel, Notifier
from emulators.calendar.quota import Caller, Quota

DEFAULT_CHANNEL_TTL_S = 604800
DEFAULT_MAX_RESULTS = 250
MAX_RESULTS_CAP = 2500
EVENT_ID_CHARS = frozenset("abcdefghijklmnopqrstuv0123456789")
CHANNEL_ID_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_+/=")
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
# Guests at these domains use Google Calendar: `sendUpdates=externalOnly` skips them.
GOOGLE_CALENDAR_DOMAINS = frozenset({"gmail.com", "googlemail.com", "google.com"})
# freebusy.query limits: the FreeBusyRequest schema's documented maxima, and the longest range
# Google answers (about 90 days; Cal.com splits longer ranges because Google refuses them).
FREEBUSY_MAX_CALENDARS = 50
FREEBUSY_MAX_GROUP = 100
FREEBUSY_MAX_RANGE = timedelta(days=90)


def normalize_when(raw: Any, which: str) -> tuple[dict[str, Any], datetime]:
    """Validates an EventDateTime; returns it as Google would echo it, plus its instant.

    A dateTime is rendered in its timeZone when one is given (Google does the same); a
    naive dateTime needs a timeZone. All-day `date` values count from midnight UTC.
    """
    if not isinstance(raw, dict):
        raise CalendarError(400, "required", f"Missing {which} time.")
    out = {k: v for k, v in raw.items() if k in ("date", "dateTime", "timeZone")}
    tz_name = raw.get("timeZone")
    tz = time_zone(tz_name, which) if tz_name else None
    if raw.get("dateTime"):
        try:
            dt = datetime.fromisoformat(str(raw["dateTime"]))
        except ValueError:
            raise bad_request(f"Invalid {which} time.", f"{which}.dateTime") from None
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
            raise bad_request(f"Invalid {which} time.", f"{which}.date") from None
        out.pop("dateTime", None)
        return out, day
    raise CalendarError(400, "required", f"Missing {which} time.")


def _encode_token(prefix: str, payload: dict[str, Any]) -> str:
    """A sync ("S") or page ("P") token: the prefix and unpadded urlsafe base64 JSON."""
    raw = json.dumps(payload, separators=(",", ":")).encode()
    return prefix + base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_token(prefix: str, token: str) -> dict[str, Any] | None:
    """The payload of a token made by `_encode_token`, None when it is not one."""
    if not token.startswith(prefix):
        return None
    body = token[len(prefix) :]
    try:
        data = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    except (ValueError, TypeError):
        return None
    return data if isinstance(data, dict) else None


def meet_code(seed: str) -> str:
    """A deterministic xxx-xxxx-xxx Meet code derived from the conference request id."""
    digest = hashlib.sha256(seed.encode()).digest()
    letters = "".join(chr(ord("a") + b % 26) for b in digest[:10])
    return f"{letters[:3]}-{letters[3:7]}-{letters[7:10]}"


@dataclass(frozen=True)
class FreeBusyQuery:
    """A validated `freebusy.query` body: the range and the calendar ids, in request order."""

    time_min: datetime
    time_max: datetime
    calendar_ids: tuple[str, ...]


def _expansion_max(body: dict[str, Any], name: str, maximum: int) -> int | None:
    """calendarExpansionMax/groupExpansionMax: an int32 (a JSON number or a numeric string,
    as Google's JSON mapping takes both) from 1 to the documented maximum.

    Our reading: a value past the maximum is refused, as the discovery bounds of query
    parameters are, rather than silently lowered; Google does not say which it does.
    """
    raw = body.get(name)
    if raw is None:
        return None
    value: int | None = None
    if isinstance(raw, int) and not isinstance(raw, bool):
        value = raw
    elif isinstance(raw, str) and raw.lstrip("-").isdigit():
        value = int(raw)
    if value is None or not 1 <= value <= maximum:
        raise bad_request(f"Invalid value for: {name}. Values must be from 1 to {maximum}.", name)
    return value


def parse_freebusy_request(body: dict[str, Any]) -> FreeBusyQuery:
    """Checks a FreeBusyRequest as Google does before computing anything.

    Refused with a 400: a missing or unparseable timeMin/timeMax, an empty range
    (`timeRangeEmpty`, as events.list), a range over 90 days (`invalid`, "The requested time
    range is too long."; Google's reason for it is not documented, this is our reading), an
    unknown timeZone, and more items than calendarExpansionMax (at most 50) allows
    (`tooManyCalendarsRequested`).
    """
    times: dict[str, datetime] = {}
    for name in ("timeMin", "timeMax"):
        raw = body.get(name)
        if raw is None:
            raise CalendarError(400, "required", f"Missing {name} parameter.", location=name)
        if not isinstance(raw, str):
            raise bad_request("Bad Request", name, reason="badRequest")
        times[name] = parse_query_time(raw, name)
    time_min, time_max = times["timeMin"], times["timeMax"]
    if time_max <= time_min:
        raise CalendarError(
            400, "timeRangeEmpty", "The specified time range is empty.", location="timeMax"
        )
    if time_max - time_min > FREEBUSY_MAX_RANGE:
        raise bad_request("The requested time range is too long.", "timeMax")
    tz_name = body.get("timeZone")
    if tz_name is not None:
        if not isinstance(tz_name, str):
            raise bad_request("Invalid time zone definition for request time.", "timeZone")
        time_zone(tz_name, "request")
    limit = _expansion_max(body, "calendarExpansionMax", FREEBUSY_MAX_CALENDARS)
    _expansion_max(body, "groupExpansionMax", FREEBUSY_MAX_GROUP)
    items = body.get("items", [])
    if not isinstance(items, list):
        raise bad_request("Invalid value for: items", "items")
    ids: list[str] = []
    for item in items:
        cal_id = item.get("id") if isinstance(item, dict) else None
        if not isinstance(cal_id, str) or not cal_id:
            raise CalendarError(400, "required", "Required", location="items.id")
        if cal_id not in ids:
            ids.append(cal_id)
    if len(items) > (limit or FREEBUSY_MAX_CALENDARS):
        raise CalendarError(
            400,
            "tooManyCalendarsRequested",
            "The number of calendars requested is too large for a single query.",
            location="items",
        )
    return FreeBusyQuery(time_min, time_max, tuple(ids))


def busy_periods(
    intervals: Iterable[tuple[datetime, datetime]], time_min: datetime, time_max: datetime
) -> list[tuple[datetime, datetime]]:
    """Clips intervals to [time_min, time_max), then sorts and merges them.

    Intervals that overlap or touch become one, so back-to-back events read as one busy
    block; what is left after clipping with no length (an instant event, one that ends
    exactly at time_min) is no busy time at all.
    """
    clipped = sorted(
        (max(start, time_min), min(end, time_max))
        for start, end in intervals
        if max(start, time_min) < min(end, time_max)
    )
    merged: list[tuple[datetime, datetime]] = []
    for start, end in clipped:
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def _busy_time(dt: datetime) -> str:
    """A busy bound as Google writes it: UTC with `Z`, seconds (fractions only when present)."""
    utc = dt.astimezone(UTC)
    if utc.microsecond:
        return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"
    return utc.strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class _FreeBusyFault:
    """An injected per-calendar free/busy error: its reason, and how many queries it hits."""

    reason: str
    count: int | None = None  # None: until cleared


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
class ConferenceSettings:
    """How Meet links come out: pending for `pending_gets` gets, then `status_code`."""

    pending_gets: int = 0
    status_code: str = "success"


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
        self._known: set[str] = set()
        self._freebusy_faults: dict[str, _FreeBusyFault] = {}
        self.quota = Quota()

    # -- controls ---------------------------------------------------------------------------
    def reset(self) -> None:
        with self._lock:
            self._events.clear()
            self._channels.clear()
            self._forbidden.clear()
            self._known.clear()
            self._freebusy_faults.clear()
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

    def note_calendar(self, calendar_id: str) -> None:
        """Records that an API call named `calendar_id`: the calendar exists from now on.

        Why: calendars spring into existence on first use, but free/busy of an id nobody
        ever used answers `notFound`, as Google answers for a calendar it does not have.
        """
        with self._lock:
            self._known.add(calendar_id)

    def has_calendar(self, calendar_id: str, caller: Caller | None = None) -> bool:
        """`primary`, the owner's and the caller's own calendars, and any calendar used so far."""
        with self._lock:
            return (
                calendar_id in ("primary", self.owner_email)
                or (caller is not None and calendar_id.lower() == (caller.email or "").lower())
                or calendar_id in self._known
                or calendar_id in self._events
            )

    def inject_freebusy_error(
        self, calendar_id: str, reason: str = "internalError", count: int | None = None
    ) -> None:
        """From now on free/busy of `calendar_id` answers `errors: [{reason}]` and no busy
        time, for `count` queries (None: until cleared). Replaces an earlier injection."""
        with self._lock:
            self._freebusy_faults[calendar_id] = _FreeBusyFault(reason, count)

    def clear_freebusy_errors(self) -> None:
        with self._lock:
            self._freebusy_faults.clear()

    def freebusy_errors(self) -> dict[str, dict[str, Any]]:
        with self._lock:
            return {
                cal: {"reason": f.reason, "count": f.count}
                for cal, f in self._freebusy_faults.items()
            }

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
                    raise bad_request(
                        f"The '{name}' parameter cannot be used together with a sync token.",
                        name,
                    )
        order_by = params.get("orderBy")
        if order_by == "startTime" and not params.get("singleEvents"):
            raise bad_request(
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
        cal_hash = calendar_hash(calendar_id)

        with self._lock:
            since: int | None = None
            if sync_token is not None:
                since = self._decode_sync_token(sync_token, cal_hash)
            last_key: list[Any] | None = None
            snap = self._seq
            if "pageToken" in params:
                page = _decode_token("P", params["pageToken"])
                if not page or page.get("f") != fingerprint or page.get("c") != cal_hash:
                    raise bad_request("Invalid page token value.", "pageToken")
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

    # -- free/busy --------------------------------------------------------------------------
    def free_busy(self, body: dict[str, Any], caller: Caller | None = None) -> dict[str, Any]:
        """freebusy.query: the busy blocks of each requested calendar in [timeMin, timeMax].

        Busy time comes from events that are not cancelled and not `transparent` (tentative
        ones count, as at Google), clipped to the range and merged, always in UTC: the
        request's `timeZone` is checked but not applied (keeping `Z` is the safe reading;
        clients parse offsets anyway). A calendar the caller may not see (one nobody used,
        or one forbidden to the caller) gets `errors: [{"domain": "global", "reason":
        "notFound"}]` and no busy time; an injected error wins over both. Recurring events
        count by their first instance only: the store does not expand recurrences.
        """
        query = parse_freebusy_request(body)
        calendars: dict[str, dict[str, Any]] = {}
        with self._lock:
            for cal_id in query.calendar_ids:
                reason = self._freebusy_error(cal_id, caller)
                if reason is not None:
                    calendars[cal_id] = {
                        "errors": [{"domain": "global", "reason": reason}],
                        "busy": [],
                    }
                    continue
                intervals = [
                    (rec.start_at, rec.end_at)
                    for rec in self._events.get(cal_id, {}).values()
                    if rec.event.get("status") != "cancelled"
                    and rec.event.get("transparency") != "transparent"
                ]
                calendars[cal_id] = {
                    "busy": [
                        {"start": _busy_time(start), "end": _busy_time(end)}
                        for start, end in busy_periods(intervals, query.time_min, query.time_max)
                    ]
                }
        return {
            "kind": "calendar#freeBusy",
            "timeMin": rfc3339(query.time_min),
            "timeMax": rfc3339(query.time_max),
            "calendars": calendars,
        }

    def _freebusy_error(self, calendar_id: str, caller: Caller | None) -> str | None:
        """The per-calendar error reason free/busy answers for `calendar_id`, if any."""
        fault = self._freebusy_faults.get(calendar_id)
        if fault is not None:
            if fault.count is not None:
                fault.count -= 1
                if fault.count <= 0:
                    del self._freebusy_faults[calendar_id]
            return fault.reason
        email = (caller.email or "") if caller is not None else ""
        if not self.has_calendar(calendar_id, caller) or self.forbidden(calendar_id, email):
            return "notFound"
        return None

    # -- channels ---------------------------------------------------------------------------
    def watch(self, calendar_id: str, body: dict[str, Any], base_url: str) -> dict[str, Any]:
        channel_id = body.get("id")
        if not isinstance(channel_id, str) or not channel_id:
            raise CalendarError(400, "required", "Required", location="id")
        if len(channel_id) > 64 or not set(channel_id) <= CHANNEL_ID_CHARS:
            raise bad_request(
                f"Invalid channel id {channel_id}. Channel ids must match "
                "[A-Za-z0-9\\-_\\+/=]+ and be at most 64 characters long.",
                "id",
            )
        if body.get("type") not in ("web_hook", "webhook"):
            raise bad_request(f"Invalid type value: {body.get('type')}", "type")
        address = body.get("address")
        if not isinstance(address, str) or urlsplit(address).scheme not in ("http", "https"):
            raise bad_request(f"Invalid address: {address}", "address")
        token = body.get("token")
        if token is not None and (not isinstance(token, str) or len(token) > 256):
            raise bad_request("Channel token must be a string of at most 256 characters.", "token")
        ttl_raw = (body.get("params") or {}).get("ttl", DEFAULT_CHANNEL_TTL_S)
        try:
            ttl = int(ttl_raw)
        except (TypeError, ValueError):
            raise bad_request(f"Invalid ttl value: {ttl_raw}", "params.ttl") from None
        if ttl <= 0:
            raise bad_request(f"Invalid ttl value: {ttl_raw}", "params.ttl")
        now_ms = int(time.time() * 1000)
        expiration_ms = now_ms + ttl * 1000
        if body.get("expiration"):
            try:
                expiration_ms = min(expiration_ms, int(body["expiration"]))
            except (TypeError, ValueError):
                raise bad_request(
                    f"Invalid expiration value: {body['expiration']}", "expiration"
                ) from None
        with self._lock:
            self._drop_expired()
            if channel_id in self._channels:
                raise bad_request(
                    f"Channel id {channel_id} not unique", "id", reason="channelIdNotUnique"
                )
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
            raise bad_request("Invalid resource id value.", "id")

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
                raise bad_request(f"Invalid value for: {name}", name)
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
            raise bad_request(f"Invalid status value: {ev.get('status')}", "status")
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
                raise bad_request("Invalid extendedProperties value.", "extendedProperties")
            ev["extendedProperties"] = {
                s: {str(k): str(v) for k, v in props[s].items()}
                for s in ("private", "shared")
                if props.get(s)
            }

    def _normalize_attendees(self, raw: Any) -> list[dict[str, Any]]:
        if not isinstance(raw, list):
            raise bad_request("Invalid attendees value.", "attendees")
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
            raise bad_request("Invalid conference data.", "conferenceData")
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
            raise bad_request(
                "Invalid conference create request: missing requestId.",
                "conferenceData.createRequest.requestId",
            )
        key_type = (create.get("conferenceSolutionKey") or {}).get("type", "hangoutsMeet")
        if key_type != "hangoutsMeet":
            raise bad_request(
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
            raise google_error(412, "conditionNotMet", location="If-Match", location_type="header")

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
                raise google_error(403, "forbiddenForServiceAccounts")
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
        domain = email_domain(email)
        return domain in GOOGLE_CALENDAR_DOMAINS or domain == email_domain(organizer)

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


__all__ = [
    "FREEBUSY_MAX_CALENDARS",
    "FREEBUSY_MAX_GROUP",
    "FREEBUSY_MAX_RANGE",
    "CalendarStore",
    "ConferenceSettings",
    "FreeBusyQuery",
    "busy_periods",
    "meet_code",
    "normalize_when",
    "parse_freebusy_request",
]
