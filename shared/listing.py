"""The admin listing of upcoming classes, and the public read feed of a public calendar.

Admin mode: one page of `events.list` on the platform's calendar, joined with the bookings
behind its events in one batched Firestore read (`get_all`), rendered as JSON or as an
iCalendar feed. Times are rendered in Buenos Aires time with their offset.

Filters on booking fields (`teacher`, `status`) apply after the join, to each Calendar page:
a page holds at most `limit` events and may hold fewer, even none, while `nextPageToken`
still says there is more (as Google's own `events.list` does with `q`). Filling pages up to
`limit` would cost several Calendar pages and Firestore reads per answer, with no bound.

Public mode: title, start and end of a calendar made public (`PUBLIC_CALENDAR_ID`), read
with a Google API key and no OAuth; nothing else of an event (attendees, Meet links,
bookings) reaches the answer. It is never the platform's own calendar: making that one
public would hand its attendees and Meet links to anyone asking Google directly, whatever
this answer leaves out; without a separate public calendar the feed answers 404.

Page tokens are ours: they wrap Google's token together with the window, so page two of a
default window ("from now") keeps the window of page one.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import icalendar

from shared import logs, store
from shared.bookings import BookingStatus, ClassEvent, Person
from shared.calendar import calendar_api
from shared.config import TIME_ZONE, get_settings
from shared.errors import InvalidRequest, NotFound, PermanentUpstreamError
from shared.secrets import read_secret
from shared.upstream import Deadline

__all__ = [
    "Listing",
    "Query",
    "Timings",
    "list_events",
    "parse_query",
    "render_ics",
    "require_public_enabled",
    "wants_public",
]

ZONE = ZoneInfo(TIME_ZONE)
DEFAULT_LIMIT = 50
MAX_LIMIT = 250
DEFAULT_WINDOW = timedelta(days=30)
FEED_PAGE_SIZE = 250
MAX_FEED_EVENTS = 2500
ADMIN_CACHE_CONTROL = "private, max-age=30"
# Public data, fetched with our API key's quota: let shared caches keep it a while.
PUBLIC_CACHE_CONTROL = "public, max-age=300"
BOOKING_FIELDS = ("status", "student", "teacher", "paymentStatus", "meetLink", "htmlLink")
PUBLIC_EVENT_FIELDS = "nextPageToken,items(id,iCalUID,updated,status,summary,start,end)"
ADMIN_PARAMS = frozenset({"from", "to", "limit", "pageToken", "teacher", "status", "format"})
PUBLIC_PARAMS = frozenset({"public", "from", "to", "limit", "pageToken", "format"})
FORMATS = ("json", "ics")
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(9999, 1, 1, tzinfo=UTC)
"""`from` and `to` lie in [EPOCH, LATEST): near year 1 or 9999 converting to Buenos Aires
time, adding the default window or rendering the feed's time zone overflows."""
MAX_PAGE_TOKEN_CHARS = 4096
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
# "+03:00" arrives as " 03:00" when a caller forgets to percent-encode the "+".
_UNENCODED_PLUS = re.compile(r"(.*\d) (\d{2}(?::?\d{2})?)")
_PARTSTAT = {
    "needsAction": "NEEDS-ACTION",
    "accepted": "ACCEPTED",
    "declined": "DECLINED",
    "tentative": "TENTATIVE",
}


@dataclass(frozen=True)
class Query:
    """A validated listing request."""

    public: bool
    time_min: datetime
    time_max: datetime
    limit: int
    google_page_token: str
    teacher: str
    status: BookingStatus | None
    ics: bool


@dataclass
class Timings:
    """Where a listing's time went, for the log line and `Server-Timing` (milliseconds)."""

    calendar: float = 0.0
    firestore: float = 0.0

    @contextmanager
    def measure(self, upstream: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            elapsed = (time.perf_counter() - started) * 1000
            setattr(self, upstream, getattr(self, upstream) + elapsed)


@dataclass(frozen=True)
class Listing:
    """The HTTP answer of a listing: 200 with a body, or 304 without one."""

    status: int
    body: bytes
    headers: dict[str, str]
    events: int
    timings: Timings


@dataclass(frozen=True)
class _Row:
    """One Calendar event and the booking document behind it (None: no booking)."""

    event: dict[str, Any]
    booking: dict[str, Any] | None


# -- parameters ---------------------------------------------------------------------------


def wants_public(args: Mapping[str, list[str]]) -> bool:
    """Whether the request asks for the public feed (`?public=1`); checked before any auth."""
    return "public" in args


_warned_unconfigured = False


def require_public_enabled() -> str:
    """The public calendar's id, or 404 if the feed is off or has no calendar of its own."""
    global _warned_unconfigured
    settings = get_settings()
    if not settings.public_events_enabled:
        raise NotFound("the public listing is not enabled")
    public_id = settings.public_calendar_id
    if not public_id or public_id == settings.calendar_id:
        if not _warned_unconfigured:
            _warned_unconfigured = True
            logs.warning(
                "public feed not configured: PUBLIC_CALENDAR_ID must name a public calendar "
                "other than CALENDAR_ID"
            )
        raise NotFound("public feed not configured")
    return public_id


def parse_query(args: Mapping[str, list[str]], now: datetime | None = None) -> Query:
    """Validate every parameter; anything wrong is a 400 that names the parameter."""
    public = wants_public(args)
    allowed = PUBLIC_PARAMS if public else ADMIN_PARAMS
    for name, values in args.items():
        if name not in allowed:
            mode = "the public listing" if public else "this listing"
            raise InvalidRequest(f"unknown parameter for {mode}: {name}", parameter=name)
        if len(values) != 1:
            raise InvalidRequest(f"{name} must be given once", parameter=name)
    value = {name: values[0] for name, values in args.items()}
    if public and value["public"] not in ("1", "true"):
        raise InvalidRequest("public must be 1 or true", parameter="public")
    output = value.get("format", "json")
    if output not in FORMATS:
        raise InvalidRequest("format must be json or ics", parameter="format")
    ics = output == "ics"
    if ics:
        for name in ("limit", "pageToken"):
            if name in value:
                raise InvalidRequest(f"{name} does not apply to format=ics", parameter=name)
    limit = _limit(value["limit"]) if "limit" in value else DEFAULT_LIMIT
    time_min = _parameter_time(value["from"], "from") if "from" in value else None
    time_max = _parameter_time(value["to"], "to") if "to" in value else None
    google_token = ""
    if "pageToken" in value:
        google_token, token_min, token_max = _unwrap_token(value["pageToken"], public)
        if (time_min and time_min != token_min) or (time_max and time_max != token_max):
            raise InvalidRequest(
                "pageToken belongs to another from/to window", parameter="pageToken"
            )
        time_min, time_max = token_min, token_max
    if time_min is None:
        # Whole minutes, so repeated default requests share an ETag for the cache's lifetime.
        time_min = (now or datetime.now(UTC)).astimezone(ZONE).replace(second=0, microsecond=0)
    if time_max is None:
        time_max = time_min + DEFAULT_WINDOW
    if time_max <= time_min:
        raise InvalidRequest("to must be later than from", parameter="to")
    teacher = value.get("teacher", "").strip().lower()
    if "teacher" in value and (len(teacher) > 254 or not _EMAIL.fullmatch(teacher)):
        raise InvalidRequest("teacher must be an email address", parameter="teacher")
    status = None
    if "status" in value:
        try:
            status = BookingStatus(value["status"])
        except ValueError:
            names = ", ".join(s.value for s in BookingStatus)
            raise InvalidRequest(f"status must be one of {names}", parameter="status") from None
    return Query(public, time_min, time_max, limit, google_token, teacher, status, ics)


def _limit(raw: str) -> int:
    # Length first: int() refuses thousands of digits with a ValueError.
    if not raw.isascii() or not raw.isdigit() or len(raw) > 9 or not 1 <= int(raw) <= MAX_LIMIT:
        raise InvalidRequest(f"limit must be an integer from 1 to {MAX_LIMIT}", parameter="limit")
    return int(raw)


def _parameter_time(raw: str, name: str) -> datetime:
    text = raw.strip()
    if match := _UNENCODED_PLUS.fullmatch(text):
        text = f"{match[1]}+{match[2]}"
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        value = None
    if value is None or value.tzinfo is None or "T" not in text.upper():
        raise InvalidRequest(
            f"{name} must be an ISO 8601 date and time with an offset, "
            "e.g. 2026-12-01T18:00:00-03:00",
            parameter=name,
        )
    try:
        return _local(value)
    except ValueError:
        raise InvalidRequest(
            f"{name} must lie between 1970-01-01 and 9999-01-01", parameter=name
        ) from None


def _local(value: datetime) -> datetime:
    """An aware instant in Buenos Aires time; ValueError outside [EPOCH, LATEST)."""
    if value.tzinfo is None or not EPOCH <= value < LATEST:
        raise ValueError("instant out of range")
    return value.astimezone(ZONE)


def _wrap_token(google_token: str, query: Query) -> str:
    raw = {
        "m": "public" if query.public else "admin",
        "f": query.time_min.isoformat(),
        "t": query.time_max.isoformat(),
        "g": google_token,
    }
    encoded = base64.urlsafe_b64encode(json.dumps(raw, separators=(",", ":")).encode())
    return encoded.decode().rstrip("=")


def _unwrap_token(token: str, public: bool) -> tuple[str, datetime, datetime]:
    try:
        if len(token) > MAX_PAGE_TOKEN_CHARS:
            raise ValueError("longer than any token of ours")
        raw = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        if raw["m"] != ("public" if public else "admin"):
            raise ValueError("a token of the other listing")
        return (
            str(raw["g"]),
            _local(datetime.fromisoformat(raw["f"])),
            _local(datetime.fromisoformat(raw["t"])),
        )
    # RecursionError: a crafted token of deeply nested JSON arrays.
    except (ValueError, TypeError, KeyError, binascii.Error, UnicodeError, RecursionError):
        raise InvalidRequest(
            "pageToken is not a token of this listing", parameter="pageToken"
        ) from None


# -- reading ------------------------------------------------------------------------------


def list_events(query: Query, if_none_match: str, deadline: Deadline) -> Listing:
    """The answer to a validated query: a page (JSON) or the whole window (ICS)."""
    timings = Timings()
    if query.ics:
        rows: list[_Row] = []
        token = ""
        while True:
            page, token = _read_page(query, FEED_PAGE_SIZE, token, deadline, timings)
            rows.extend(page)
            if not token:
                break
            if len(rows) >= MAX_FEED_EVENTS:
                raise InvalidRequest(
                    f"the window holds more than {MAX_FEED_EVENTS} events; choose an earlier to",
                    parameter="to",
                )
        body = render_ics(rows, query)
        content_type = "text/calendar; charset=utf-8"
    else:
        rows, token = _read_page(query, query.limit, query.google_page_token, deadline, timings)
        body = render_json(rows, query, _wrap_token(token, query) if token else None)
        content_type = "application/json"
    etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
    headers = {
        "ETag": etag,
        "Cache-Control": PUBLIC_CACHE_CONTROL if query.public else ADMIN_CACHE_CONTROL,
    }
    if not query.public:
        headers["Vary"] = "Authorization, X-API-Key"
        headers["Server-Timing"] = (
            f"calendar;dur={timings.calendar:.1f}, firestore;dur={timings.firestore:.1f}"
        )
    if etag_matches(if_none_match, etag):
        return Listing(304, b"", headers, len(rows), timings)
    return Listing(200, body, {**headers, "Content-Type": content_type}, len(rows), timings)


def etag_matches(if_none_match: str, etag: str) -> bool:
    """If-None-Match uses the weak comparison: `W/` prefixes do not matter, `*` matches."""
    candidates = [tag.strip() for tag in if_none_match.split(",") if tag.strip()]
    return any(tag == "*" or tag.removeprefix("W/") == etag for tag in candidates)


def _read_page(
    query: Query, size: int, google_token: str, deadline: Deadline, timings: Timings
) -> tuple[list[_Row], str]:
    """One Calendar page, joined with its bookings (admin) and filtered; and Google's token."""
    params: dict[str, Any] = {
        "timeMin": query.time_min.isoformat(),
        "timeMax": query.time_max.isoformat(),
        "singleEvents": True,
        "orderBy": "startTime",
        "maxResults": size,
    }
    if google_token:
        params["pageToken"] = google_token
    api = calendar_api()
    try:
        with timings.measure("calendar"):
            if query.public:
                settings = get_settings()
                page = api.list_public_events(
                    require_public_enabled(),
                    read_secret(settings.secrets.public_api_key, deadline),
                    {**params, "fields": PUBLIC_EVENT_FIELDS},
                    deadline,
                )
            else:
                page = api.list_events(params, deadline)
    except PermanentUpstreamError as exc:
        if google_token and exc.details.get("status") in (400, 410):  # a token Google forgot
            raise InvalidRequest(
                "pageToken has expired; start again", parameter="pageToken"
            ) from exc
        raise
    events: list[dict[str, Any]] = page.get("items") or []
    next_token = str(page.get("nextPageToken") or "")
    if query.public:
        return [_Row(event, None) for event in events], next_token
    with timings.measure("firestore"):
        found = read_bookings((booking_id_of(event) for event in events), deadline)
    rows = [_Row(event, found.get(booking_id_of(event))) for event in events]
    return [row for row in rows if _wanted(row, query)], next_token


def booking_id_of(event: dict[str, Any]) -> str:
    """The booking an event names, if it is a usable Firestore document id."""
    booking_id = ClassEvent.from_event(event).booking_id
    return booking_id if store.is_booking_id(booking_id) else ""


def read_bookings(booking_ids: Iterable[str], deadline: Deadline) -> dict[str, dict[str, Any]]:
    """The named bookings, in one batched read (one round trip), only the listed fields."""
    refs = [store.booking_ref(b) for b in sorted({b for b in booking_ids if b})]
    snapshots = store.get_many(refs, deadline, "read the bookings of a page", list(BOOKING_FIELDS))
    return {snap.id: snap.to_dict() or {} for snap in snapshots.values() if snap.exists}


def _wanted(row: _Row, query: Query) -> bool:
    if not query.teacher and query.status is None:
        return True
    if row.booking is None:
        return False
    if query.teacher and Person.from_document(row.booking.get("teacher")).email.lower() != (
        query.teacher
    ):
        return False
    return query.status is None or row.booking.get("status") == query.status.value


# -- rendering ----------------------------------------------------------------------------


def local_time(when: dict[str, Any]) -> datetime | date | None:
    """An EventDateTime as Buenos Aires time (all-day events stay dates)."""
    if when.get("dateTime"):
        return datetime.fromisoformat(str(when["dateTime"])).astimezone(ZONE)
    if when.get("date"):
        return date.fromisoformat(str(when["date"]))
    return None


def _iso(when: dict[str, Any]) -> str | None:
    value = local_time(when)
    return value.isoformat() if value is not None else None


def _person(raw: Any) -> dict[str, str] | None:
    if not isinstance(raw, dict):
        return None
    person = Person.from_document(raw)
    return {"name": person.name, "email": person.email}


def admin_item(row: _Row) -> dict[str, Any]:
    """Event + booking -> the JSON an admin sees (mapper; no I/O)."""
    event, booking = row.event, row.booking or {}
    link = ClassEvent.from_event(event)
    return {
        "id": link.event_id,
        "summary": str(event.get("summary") or ""),
        "start": _iso(event.get("start") or {}),
        "end": _iso(event.get("end") or {}),
        "eventStatus": link.status,
        "htmlLink": link.html_link or booking.get("htmlLink") or None,
        "meetLink": link.meet_link or booking.get("meetLink") or None,
        "attendees": [
            {
                "email": attendee.get("email"),
                "displayName": attendee.get("displayName"),
                "responseStatus": attendee.get("responseStatus", "needsAction"),
            }
            for attendee in event.get("attendees") or []
        ],
        "bookingId": link.booking_id or None,
        "hasBooking": row.booking is not None,
        "status": booking.get("status"),
        "student": _person(booking.get("student")),
        "teacher": _person(booking.get("teacher")),
        "paymentStatus": booking.get("paymentStatus"),
    }


def public_item(event: dict[str, Any]) -> dict[str, Any]:
    """Title, start and end: all a public calendar's reader gets."""
    return {
        "summary": str(event.get("summary") or ""),
        "start": _iso(event.get("start") or {}),
        "end": _iso(event.get("end") or {}),
    }


def render_json(rows: list[_Row], query: Query, next_token: str | None) -> bytes:
    items = [public_item(r.event) if query.public else admin_item(r) for r in rows]
    body = {
        "from": query.time_min.isoformat(),
        "to": query.time_max.isoformat(),
        "timeZone": TIME_ZONE,
        "events": items,
        "nextPageToken": next_token,
    }
    return json.dumps(body, ensure_ascii=False).encode()


def render_ics(rows: list[_Row], query: Query) -> bytes:
    """The window as an iCalendar feed that calendar apps can subscribe to."""
    feed = icalendar.Calendar()
    feed.add("prodid", "-//Clases virtuales//Calendario//ES")
    feed.add("version", "2.0")
    feed.add("calscale", "GREGORIAN")
    feed.add("method", "PUBLISH")
    feed.add("x-wr-calname", "Clases" if query.public else "Clases (administración)")
    feed.add("x-wr-timezone", TIME_ZONE)
    for row in rows:
        feed.add_component(_ics_event(row, query.public))
    feed.add_missing_timezones(
        first_date=query.time_min.date() - timedelta(days=1),
        last_date=query.time_max.date() + timedelta(days=2),
    )
    body: bytes = feed.to_ical()
    return body


def _ics_event(row: _Row, public: bool) -> icalendar.Event:
    event = row.event
    entry = icalendar.Event()
    entry.add("uid", str(event.get("iCalUID") or f"{event.get('id')}@google.com"))
    # DTSTAMP from the event, not the clock, so an unchanged window keeps its ETag.
    updated = event.get("updated")
    entry.add("dtstamp", datetime.fromisoformat(updated) if updated else EPOCH)
    entry.add("summary", str(event.get("summary") or ""))
    for name in ("start", "end"):
        value = local_time(event.get(name) or {})
        if value is not None:
            entry.add(f"dt{name}", value)
    if public:
        return entry
    item = admin_item(row)
    entry.add("status", "TENTATIVE" if item["eventStatus"] == "tentative" else "CONFIRMED")
    if item["htmlLink"]:
        entry.add("url", item["htmlLink"])
    if item["meetLink"]:
        entry.add("location", item["meetLink"])
    entry.add("description", _ics_description(item))
    for attendee in item["attendees"]:
        if not attendee["email"]:
            continue
        address = icalendar.vCalAddress(f"mailto:{attendee['email']}")
        if attendee["displayName"]:
            address.params["CN"] = attendee["displayName"]
        address.params["PARTSTAT"] = _PARTSTAT.get(attendee["responseStatus"], "NEEDS-ACTION")
        entry.add("attendee", address)
    return entry


def _ics_description(item: dict[str, Any]) -> str:
    if not item["hasBooking"]:
        return "Sin reserva"
    lines = [
        f"Reserva: {item['bookingId']} ({item['status'] or 'sin estado'})",
        f"Docente: {_who(item['teacher'])}",
        f"Estudiante: {_who(item['student'])}",
        f"Pago: {item['paymentStatus'] or 'sin pago'}",
    ]
    if item["meetLink"]:
        lines.append(f"Meet: {item['meetLink']}")
    return "\n".join(lines)


def _who(person: dict[str, str] | None) -> str:
    if not person:
        return "-"
    return f"{person['name']} <{person['email']}>" if person["name"] else person["email"]
